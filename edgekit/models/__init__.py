"""The model zoo: a registry of Keras CNNs with their papers' knobs, plus user model files.

``create(name, **options)`` builds a zoo model (``list()`` shows the names, ``info(name)`` what each takes) or loads
a user's ``.keras``/``.h5``/SavedModel file. Zoo models get a canonical name that encodes their knobs
(``mobilenet_v1_0.25_128``); exported artifacts are named after it.
"""
from __future__ import annotations

import builtins
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._jsonable import JsonMixin
from ..errors import InvalidArgument, ModelLoadError
from ._builder import COMMON_OPTIONS, MODELS, BuildConfig, Imagenet, make_config, register_model

#: file suffixes taken as a user model file rather than a zoo name
MODEL_FILE_SUFFIXES = (".keras", ".h5", ".hdf5")


@dataclass
class ModelInfo(JsonMixin):
    """What ``create(name)`` builds by default and which options it takes."""

    name: str
    family: str
    paper: str
    paper_url: str
    aliases: tuple[str, ...]
    input_shape: tuple[int, int, int]
    min_resolution: int
    preprocess: str
    has_imagenet: bool
    imagenet_resolutions: tuple[int, ...]
    options: tuple[str, ...]
    description: str = ""


def list(pattern: str | None = None) -> builtins.list[str]:  # noqa: A001 - timm-style public name
    """Canonical zoo names matching the fnmatch ``pattern`` (aliases match too)."""
    return MODELS.list(pattern)


def info(name: str) -> ModelInfo:
    """Metadata of a zoo model (``name`` may be an alias). Unknown names raise UnknownNameError."""
    e = MODELS.entry(name)
    m = e.meta
    imagenet: Imagenet | None = m["imagenet"]
    return ModelInfo(name=e.name, family=m["family"], paper=m["paper"], paper_url=m["arxiv"], aliases=e.aliases,
                     input_shape=(m["resolution"], m["resolution"], 3), min_resolution=m["min_resolution"],
                     preprocess=m["preprocess"], has_imagenet=imagenet is not None,
                     imagenet_resolutions=imagenet.resolutions if imagenet else (), options=m["options"],
                     description=m["description"])


def is_model_file(name_or_path: Any) -> bool:
    """True if ``name_or_path`` names a file or directory rather than a zoo model."""
    if isinstance(name_or_path, os.PathLike):
        return True
    text = str(name_or_path)
    if text.lower() in MODELS:
        return False
    return ("/" in text or os.sep in text or text.lower().endswith(MODEL_FILE_SUFFIXES) or os.path.exists(text))


def create(name_or_path: Any, *, weights: Any = None, **options: Any) -> Any:
    """Build a zoo model or load a user model file.

    Args:
        name_or_path: a zoo name or alias (see :func:`list`), or a ``.keras``/``.h5``/SavedModel path.
        weights: ``None`` = the family default (``"imagenet"`` where tf-keras has ImageNet weights, else random
            init), ``"imagenet"``, ``"none"`` (random init), or the path of a weights file (.h5/.weights.h5, TF
            checkpoint) or of a whole model file (.keras/.h5/SavedModel) with exactly this architecture.
        **options: ``alpha``, ``rho``, ``resolution``, ``depth_multiplier``, ``dropout``, ``classes``,
            ``input_channels``, ``include_top`` (``info(name).options`` says which a model takes). ``None`` values
            mean the default.

    Raises:
        UnknownNameError, InvalidArgument (bad option), WeightsUnavailable (offline), ModelLoadError (bad file).
    """
    if is_model_file(name_or_path):
        set_options = sorted(k for k, v in options.items() if v is not None)
        if set_options or weights is not None:
            extra = set_options + (["weights"] if weights is not None else [])
            raise InvalidArgument(f"options {', '.join(extra)} apply to zoo models, not to a model file",
                                  hint="a model file is used as saved; rebuild it to change its shape")
        return load_model_file(name_or_path)
    entry = MODELS.entry(str(name_or_path))
    cfg = make_config(entry.name, entry.meta, weights, dict(options))
    return entry.obj(cfg)


def load_model_file(path: Any) -> Any:
    """Load a user's ``.keras``/``.h5``/SavedModel (``compile=False``); failures raise ModelLoadError."""
    p = Path(path).expanduser()
    if not p.exists():
        raise ModelLoadError(f"model file {str(path)!r} does not exist",
                             hint=f"pass a .keras/.h5 file or SavedModel directory, or a zoo name "
                                  f"(edgekit models)")
    if p.is_dir() and not (p / "saved_model.pb").is_file() and not (p / "saved_model.pbtxt").is_file():
        raise ModelLoadError(f"{str(path)!r} is a directory without saved_model.pb",
                             hint="pass a .keras/.h5 file or a SavedModel directory")
    if p.is_file() and p.suffix.lower() in (".h5", ".hdf5"):
        _check_h5_is_model(p)
    from .._keras import keras

    try:
        return keras.models.load_model(str(p), compile=False)
    except Exception as exc:  # noqa: BLE001 - many foreign error types; translated here
        if "Unknown" in str(exc):
            model = _load_with_tfmot_scopes(p)
            if model is not None:
                return model
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise ModelLoadError(f"cannot load model {str(path)!r}: {detail}",
                             hint="is it a Keras model saved with model.save()? (.keras, .h5 or SavedModel dir)"
                             ) from exc


def _check_h5_is_model(p: Path) -> None:
    try:
        import h5py

        with h5py.File(p, "r") as f:
            is_model = "model_config" in f.attrs
    except Exception as exc:  # noqa: BLE001
        raise ModelLoadError(f"cannot read {str(p)!r} as HDF5: {str(exc).splitlines()[0][:200]}",
                             hint="the file is corrupt or not a Keras .h5 model") from exc
    if not is_model:
        raise ModelLoadError(f"{str(p)!r} holds weights only, no architecture",
                             hint="pass it as --weights with the zoo model it belongs to, e.g. "
                                  "create('mobilenet_v1', weights=PATH)")


def _load_with_tfmot_scopes(p: Path) -> Any:
    """Retry loading a model saved with tfmot wrappers (pruning, QAT, clustering) inside their scopes."""
    from .._keras import keras, tfmot

    try:
        mot = tfmot()
        with mot.quantization.keras.quantize_scope(), mot.sparsity.keras.prune_scope(), \
                mot.clustering.keras.cluster_scope():
            return keras.models.load_model(str(p), compile=False)
    except Exception:  # noqa: BLE001 - the caller reports the original error
        return None


def resolve(model: Any, **options: Any) -> Any:
    """A keras.Model as given (options are refused: build it with them), else :func:`create` of a zoo name or model
    file with ``options``. Export, training and compression all take their model through here."""
    from .._keras import keras

    if isinstance(model, keras.Model):
        if options:
            raise InvalidArgument(f"model options ({', '.join(sorted(options))}) apply to zoo names and model files, "
                                  "not to a keras.Model object", hint="build the model with those options first")
        return model
    if not isinstance(model, (str, os.PathLike)):
        raise InvalidArgument(f"model must be a zoo name, a model file or a keras.Model; received {type(model).__name__}")
    return create(str(model), **options)


def preprocess_mode(model_or_name: Any) -> str:
    """Input preprocessing a model expects (one of ``edgekit.data.PREPROCESS_MODES``).

    Zoo names, and models whose name is a zoo canonical name (including zoo models saved to a file), get their
    family's mode; any other model or file gets ``"unit"`` (pixels scaled to [0, 1]).
    """
    if isinstance(model_or_name, (str, os.PathLike)) and not is_model_file(model_or_name):
        return MODELS.entry(str(model_or_name)).meta["preprocess"]
    if isinstance(model_or_name, (str, os.PathLike)):
        model_or_name = load_model_file(model_or_name)
    name = str(getattr(model_or_name, "name", "")).lower()
    entry = zoo_entry_for(name)
    return entry.meta["preprocess"] if entry else "unit"


def zoo_entry_for(model_name: str) -> Any:
    """The registry entry whose canonical name prefixes ``model_name`` (longest match), or None."""
    best = None
    for e in MODELS.entries():
        if model_name == e.name or model_name.startswith(e.name + "_"):
            if best is None or len(e.name) > len(best.name):
                best = e
    return best


from ._summary import ZooEntry, stats_cache_path, summary  # noqa: E402
from . import (  # noqa: E402,F401 - registers the families
    alexnet, densenet, efficientnet, googlenet, mobilenet_v1, mobilenet_v2, mobilenet_v3, resnet, shufflenet,
    squeezenet, vgg, xception,
)

__all__ = ["MODELS", "ModelInfo", "BuildConfig", "COMMON_OPTIONS", "create", "list", "info", "preprocess_mode",
           "load_model_file", "is_model_file", "register_model", "summary", "ZooEntry", "stats_cache_path"]
