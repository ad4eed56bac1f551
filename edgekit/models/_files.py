"""User model files: ``.h5``, ``.keras`` (tf-keras or Keras 3) and SavedModel directories.

The format is told by the content, not the suffix (as the Keras loaders themselves do). The stored configuration
is read as JSON and checked (:mod:`._safety`) before Keras deserialises anything; Keras 3 files are loaded with
Keras 3 (:mod:`edgekit._keras3`), everything else with tf-keras. ``input_shape`` rebuilds a model whose inputs have
free dimensions with those dimensions fixed (same weights).
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from .._layers import TFMOT_WRAPPERS
from ..errors import InvalidArgument, ModelLoadError
from ._safety import check_no_code
from .. import _keras3

#: file suffixes taken as a user model file rather than a zoo name
MODEL_FILE_SUFFIXES = (".keras", ".h5", ".hdf5")


@dataclass
class StoredModel:
    """What a model file holds before anything is deserialised."""

    path: Path
    format: str                 # "h5", "keras" (zip), "keras-dir", "savedmodel"
    keras_version: str = ""     # of the Keras that saved it ("" when the file does not say)
    configs: list[Any] = field(default_factory=list)   # the JSON configs Keras would deserialise

    @property
    def keras3(self) -> bool:
        """Saved by Keras 3 (its version, or, when the file does not say, its class modules ``keras.src.*``)."""
        major = self.keras_version.split(".")[0]
        if major.isdigit():
            return int(major) >= 3
        top = self.configs[0] if self.configs and isinstance(self.configs[0], dict) else {}
        return str(top.get("module", "")).startswith("keras.src")


def _where(path: Any) -> str:
    return str(path)


def _json(text: Any, what: str, where: str) -> Any:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    try:
        return json.loads(text)
    except (TypeError, ValueError) as exc:
        raise ModelLoadError(f"model file {where!r} has an unreadable {what}: {exc}",
                             hint="the file is corrupt or not a Keras model") from exc


def read_stored(path: Any) -> StoredModel:
    """Identify ``path`` by content and read its stored configs (no Keras, no code)."""
    p = Path(path).expanduser()
    where = _where(path)
    if not p.exists():
        raise ModelLoadError(f"model file {where!r} does not exist",
                             hint="pass a .keras/.h5 file or SavedModel directory, or a zoo name (edgekit models)")
    if p.is_dir():
        if (p / "saved_model.pb").is_file() or (p / "saved_model.pbtxt").is_file():
            from .._keras import saved_model_keras_metadata

            try:
                texts = saved_model_keras_metadata(str(p))
            except Exception as exc:  # noqa: BLE001 - protobuf/TF parse errors of a corrupt directory
                raise ModelLoadError(f"cannot read SavedModel {where!r}: {str(exc).strip()[:200]}",
                                     hint="the SavedModel is corrupt") from exc
            if not texts:
                raise ModelLoadError(f"SavedModel {where!r} holds no Keras model (no Keras metadata: saved with "
                                     "tf.saved_model.save or Keras 3's model.export?)",
                                     hint="pass the Keras model file (.keras/.h5) it was exported from")
            return StoredModel(p, "savedmodel", "", [_json(t, "Keras metadata", where) for t in texts])
        if (p / "config.json").is_file():
            meta = _json((p / "metadata.json").read_bytes(), "metadata.json", where) \
                if (p / "metadata.json").is_file() else {}
            return StoredModel(p, "keras-dir", str(meta.get("keras_version", "")),
                               [_json((p / "config.json").read_bytes(), "config.json", where)])
        raise ModelLoadError(f"{where!r} is a directory without saved_model.pb",
                             hint="pass a .keras/.h5 file or a SavedModel directory")
    if zipfile.is_zipfile(p):
        return _read_zip(p, where)
    try:
        import h5py

        is_h5 = h5py.is_hdf5(str(p))
    except Exception:  # noqa: BLE001 - unreadable file: reported below
        is_h5 = False
    if not is_h5:
        raise ModelLoadError(f"cannot load model {where!r}: neither a .keras archive, an HDF5 file nor a SavedModel",
                             hint="is it a Keras model saved with model.save()? (.keras, .h5 or SavedModel dir)")
    return _read_h5(p, where)


def _read_zip(p: Path, where: str) -> StoredModel:
    try:
        with zipfile.ZipFile(p) as z:
            names = z.namelist()
            if names.count("config.json") != 1:
                raise ModelLoadError(f"model file {where!r} holds {names.count('config.json')} config.json entries "
                                     "(a .keras archive has exactly one)", hint="the file is corrupt or tampered with")
            config = _json(z.read("config.json"), "config.json", where)
            meta = _json(z.read("metadata.json"), "metadata.json", where) if "metadata.json" in names else {}
    except (zipfile.BadZipFile, OSError, KeyError) as exc:
        raise ModelLoadError(f"cannot read {where!r} as a .keras archive: {exc}",
                             hint="the file is corrupt or not a Keras model") from exc
    version = str(meta.get("keras_version", "")) if isinstance(meta, dict) else ""
    return StoredModel(p, "keras", version, [config])


def _read_h5(p: Path, where: str) -> StoredModel:
    try:
        import h5py

        with h5py.File(p, "r") as f:
            config = f.attrs.get("model_config")
            version = f.attrs.get("keras_version", "")
    except Exception as exc:  # noqa: BLE001
        raise ModelLoadError(f"cannot read {where!r} as HDF5: {str(exc).splitlines()[0][:200]}",
                             hint="the file is corrupt or not a Keras .h5 model") from exc
    if config is None:
        raise ModelLoadError(f"{where!r} holds weights only, no architecture",
                             hint="pass it as --weights with the zoo model it belongs to, e.g. "
                                  "create('mobilenet_v1', weights=PATH)")
    version = version.decode() if isinstance(version, bytes) else str(version)
    return StoredModel(p, "h5", version, [_json(config, "model_config", where)])


def check_model_file(path: Any, *, trust_model_code: bool = False) -> StoredModel:
    """Read ``path``'s stored config and, unless ``trust_model_code``, refuse it (UntrustedModelCode) when loading it
    would run code; nothing is deserialised. Returns what was read."""
    if not isinstance(trust_model_code, bool):
        raise InvalidArgument(f"trust_model_code must be true or false; received {trust_model_code!r}")
    stored = read_stored(path)
    if not trust_model_code:
        check_no_code(stored.configs, _where(path))
    return stored


def load_model_file(path: Any, *, trust_model_code: bool = False, input_shape: Any = None) -> Any:
    """Load a user's ``.keras``/``.h5``/SavedModel (``compile=False``).

    The stored config is checked first: layers that would run Python code (Lambda & co, see
    :mod:`edgekit.models._safety`) raise UntrustedModelCode unless ``trust_model_code``. Keras 3 files load as
    Keras 3 models. ``input_shape`` fixes free input dimensions (see :func:`with_input_shape`). Failures raise
    ModelLoadError.
    """
    stored = check_model_file(path, trust_model_code=trust_model_code)
    if stored.keras3:
        with _loadable(stored) as p:
            model = _keras3.load(p, safe_mode=not trust_model_code)
    else:
        with _loadable(stored) as p:
            model = _load_tf_keras(p, _where(path), safe_mode=not trust_model_code,
                                   tfmot_scopes=_uses_tfmot(stored.configs))
    if input_shape is not None:
        model = with_input_shape(model, input_shape)
    return model


@contextlib.contextmanager
def _loadable(stored: StoredModel) -> Iterator[str]:
    """The path to hand to Keras. The loaders pick the format by suffix (a zip must end in .keras; Keras 3 wants
    .h5 for HDF5), so a file of the other name is passed through a symlink with the right one."""
    suffix = stored.path.suffix.lower()
    need = None
    if stored.format == "keras" and suffix != ".keras":
        need = ".keras"
    elif stored.format == "h5" and stored.keras3 and suffix not in (".h5", ".hdf5"):
        need = ".h5"
    if need is None:
        yield str(stored.path)
        return
    with tempfile.TemporaryDirectory(prefix="edgekit-model-") as tmp:
        link = Path(tmp) / f"model{need}"
        link.symlink_to(stored.path.resolve())
        yield str(link)


def _uses_tfmot(configs: list[Any]) -> bool:
    """True when a stored config holds tfmot wrappers (a pruning/clustering/QAT model saved before stripping)."""
    text = json.dumps(configs)
    return "tensorflow_model_optimization" in text or any(f'"{cls}"' in text for cls in TFMOT_WRAPPERS)


def _load_tf_keras(p: str, where: str, *, safe_mode: bool, tfmot_scopes: bool = False) -> Any:
    """tf-keras' load_model (inside tfmot's deserialisation scopes when the file holds its wrappers)."""
    from .._keras import keras, tfmot

    kwargs = {"safe_mode": safe_mode} if p.lower().endswith(".keras") else {}
    try:
        with contextlib.ExitStack() as scopes:
            if tfmot_scopes:
                mot = tfmot()
                for scope in (mot.quantization.keras.quantize_scope(), mot.sparsity.keras.prune_scope(),
                              mot.clustering.keras.cluster_scope()):
                    scopes.enter_context(scope)
            return keras.models.load_model(p, compile=False, **kwargs)
    except Exception as exc:  # noqa: BLE001 - many foreign error types; translated here
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        hint = "is it a Keras model saved with model.save()? (.keras, .h5 or SavedModel dir)"
        if tfmot_scopes:
            hint = ("it holds tfmot wrappers (pruning/clustering/QAT) that did not load: strip them before saving, "
                    "or save a QAT model as .h5 (tfmot cannot reload QAT layers from .keras)")
        raise ModelLoadError(f"cannot load model {where!r}: {detail}", hint=hint) from exc


# -- input_shape ---------------------------------------------------------------------------------------------------
def parse_input_shape(value: Any) -> list[tuple[str | None, tuple[int, ...]]]:
    """``input_shape`` as [(input name or None, dims without the batch)].

    Accepts ``"224,224,3"`` (one input), ``"224,224,3;16"`` (inputs in order), ``"image=224,224,3;mask=16"``
    (by name), and in Python a tuple of ints, a list of such tuples or a {name: tuple} mapping.
    """
    bad = InvalidArgument(f"input_shape must be dims without the batch, e.g. 224,224,3 (several inputs: "
                          f"224,224,3;16 or image=224,224,3;mask=16); received {value!r}",
                          hint="write --input-shape 224,224,3 (the batch dimension stays free)")
    if isinstance(value, str):
        items: list[tuple[str | None, Any]] = []
        for part in [s.strip() for s in value.split(";") if s.strip()]:
            name, _, dims = part.rpartition("=")
            items.append((name.strip() or None, re.split(r"[,x ]+", dims.strip().strip("()[]"))))
    elif isinstance(value, Mapping):
        items = [(str(k), v) for k, v in value.items()]
    elif isinstance(value, Sequence) and value and all(isinstance(v, Sequence) and not isinstance(v, str)
                                                        for v in value):
        items = [(None, v) for v in value]
    elif isinstance(value, Sequence):
        items = [(None, value)]
    else:
        raise bad
    out = []
    for name, dims in items:
        try:
            shape = tuple(int(d) for d in dims if str(d).strip() != "")
        except (TypeError, ValueError):
            raise bad from None
        if not shape or any(d < 1 for d in shape) or any(isinstance(d, bool) for d in dims):
            raise bad
        out.append((name, shape))
    if not out:
        raise bad
    return out


def _input_layer_configs(config: dict) -> list[dict]:
    """The InputLayer configs of a Functional/Sequential config, in model input order."""
    layers = config.get("layers", [])
    by_name = {(lay.get("config", {}).get("name") or lay.get("name")): lay for lay in layers}
    order = config.get("input_layers")
    if order:
        order = [order] if isinstance(order[0], str) else order
        return [by_name[item[0]]["config"] for item in order]
    first = layers[0]["config"] if layers else {}
    return [first]


def with_input_shape(model: Any, input_shape: Any) -> Any:
    """``model`` rebuilt with its free input dimensions fixed to ``input_shape`` (same layers and weights).

    Each given shape must have the input's rank and agree with its fixed dimensions. A model whose inputs already
    have exactly that shape is returned as is.
    """
    shapes = parse_input_shape(input_shape)
    current = [tuple(t.shape[1:]) for t in model.inputs]
    names = [str(getattr(t, "_keras_history", [None])[0].name) if hasattr(t, "_keras_history") else "" for t in
             model.inputs]
    if len(shapes) != len(current):
        raise InvalidArgument(f"input_shape gives {len(shapes)} shape(s); model {model.name!r} has {len(current)} "
                              f"input(s) ({', '.join(f'{n} {s}' for n, s in zip(names, current))})",
                              hint="give one shape per input, separated by ';'")
    wanted: list[tuple[int, ...]] = [()] * len(current)
    for i, (name, shape) in enumerate(shapes):
        j = i if name is None else (names.index(name) if name in names else -1)
        if j < 0:
            raise InvalidArgument(f"input_shape names input {name!r}; model {model.name!r} has inputs "
                                  f"{', '.join(names)}", hint="use the model's input names, or give shapes in order")
        have = current[j]
        if len(shape) != len(have) or any(h is not None and h != s for h, s in zip(have, shape)):
            raise InvalidArgument(f"input_shape {shape} does not fit input {names[j]!r} of shape {have} (None = free)",
                                  hint=f"keep the rank ({len(have)} dims without the batch) and the fixed dims; "
                                       "only free (None) dims can be set")
        wanted[j] = shape
    if all(tuple(w) == tuple(c) for w, c in zip(wanted, current)):
        return model
    config = model.get_config()
    if not isinstance(config, dict) or "layers" not in config:
        raise InvalidArgument(f"cannot rebuild model {model.name!r} with a new input shape: it is a subclassed model",
                              hint="save it with a fixed input shape, e.g. Input(shape=(224, 224, 3))")
    for layer_cfg, shape in zip(_input_layer_configs(config), wanted):
        key = "batch_shape" if "batch_shape" in layer_cfg else "batch_input_shape"
        layer_cfg[key] = [None, *shape]
    if config.get("build_input_shape") is not None and len(wanted) == 1:   # Sequential
        config["build_input_shape"] = [None, *wanted[0]]
    try:
        rebuilt = type(model).from_config(config)
        rebuilt.set_weights(model.get_weights())
    except Exception as exc:  # noqa: BLE001 - Keras raises many types for a graph that cannot take the shape
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise InvalidArgument(f"model {model.name!r} cannot be rebuilt with input shape "
                              f"{'; '.join(map(str, wanted))}: {detail}",
                              hint="check the shape against what the model's layers accept") from exc
    return rebuilt
