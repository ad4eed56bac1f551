"""The model zoo: a registry of Keras CNNs with their papers' knobs, plus user model files.

``create(name, **options)`` builds a zoo model (``list()`` shows the names, ``info(name)`` what each takes) or loads
a user's ``.keras``/``.h5``/SavedModel file. Zoo models get a canonical name that encodes their knobs
(``mobilenet_v1_0.25_128``); exported artifacts are named after it.
"""
from __future__ import annotations

import builtins
import os
from dataclasses import dataclass
from typing import Any

from .._jsonable import JsonMixin
from ..errors import InvalidArgument
from ._builder import COMMON_OPTIONS, MODELS, BuildConfig, Imagenet, make_config, register_model
from ._files import MODEL_FILE_SUFFIXES, check_model_file, load_model_file, parse_input_shape, read_stored, with_input_shape
from ._safety import UntrustedModelCode
from .. import _keras3


@dataclass
class ModelInfo(JsonMixin):
    """What ``create(name)`` builds by default and which options it takes; ``params``/``mult_adds`` at that default
    input are filled in by :func:`edgekit.zoo.summary` (None here: counting them means building the model)."""

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
    params: int | None = None
    mult_adds: int | None = None


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


def create(name_or_path: Any, *, weights: Any = None, trust_model_code: bool = False, input_shape: Any = None,
           **options: Any) -> Any:
    """Build a zoo model or load a user model file.

    Args:
        name_or_path: a zoo name or alias (see :func:`list`), or a ``.keras``/``.h5``/SavedModel path (Keras 3
            ``.keras`` files load as Keras 3 models).
        weights: ``None`` = the family default (``"imagenet"`` where tf-keras has ImageNet weights, else random
            init), ``"imagenet"``, ``"none"`` (random init), or the path of a weights file (.h5/.weights.h5, TF
            checkpoint) or of a whole model file (.keras/.h5/SavedModel) with exactly this architecture.
        trust_model_code: load model files whose layers run Python code stored in them (Lambda & co); refused
            otherwise (UntrustedModelCode), since loading such a file runs whatever its author put there.
        input_shape: model files only: fix free input dimensions, e.g. ``(224, 224, 3)`` (see
            :func:`with_input_shape`).
        **options: ``alpha``, ``rho``, ``resolution``, ``depth_multiplier``, ``dropout``, ``classes``,
            ``input_channels``, ``include_top`` (``info(name).options`` says which a model takes). ``None`` values
            mean the default.

    Raises:
        UnknownNameError, InvalidArgument (bad option), WeightsUnavailable (offline), ModelLoadError (bad file),
        UntrustedModelCode.
    """
    if is_model_file(name_or_path):
        set_options = sorted(k for k, v in options.items() if v is not None)
        if set_options or weights is not None:
            extra = set_options + (["weights"] if weights is not None else [])
            raise InvalidArgument(f"options {', '.join(extra)} apply to zoo models, not to a model file",
                                  hint="a model file is used as saved (--input-shape fixes free input dimensions); "
                                       "rebuild it to change anything else")
        return load_model_file(name_or_path, trust_model_code=trust_model_code, input_shape=input_shape)
    if input_shape is not None:
        raise InvalidArgument("input_shape applies to model files; zoo models take resolution and input_channels",
                              hint="use --resolution N (and --input-channels C) for a zoo model")
    entry = MODELS.entry(str(name_or_path))
    cfg = make_config(entry.name, entry.meta, weights, dict(options))
    cfg.trust_model_code = bool(trust_model_code)
    return entry.obj(cfg)


def resolve(model: Any, *, tf_keras: bool = False, trust_model_code: bool = False, input_shape: Any = None,
            **options: Any) -> Any:
    """A model object as given, else :func:`create` of a zoo name or model file with ``options``. Export, training,
    profiling and compression all take their model through here.

    A keras.Model (tf-keras or Keras 3) takes no build options (build it with them), but ``input_shape`` fixes its
    free input dimensions. ``tf_keras=True`` (the training and compression stages) translates a Keras 3 model into
    an equivalent tf-keras one (``edgekit._keras3.to_tf_keras``, checked numerically).
    """
    from .._keras import keras

    options = {k: v for k, v in options.items() if v is not None}
    if isinstance(model, keras.Model) or _keras3.is_model(model):
        if options:
            raise InvalidArgument(f"model options ({', '.join(sorted(options))}) apply to zoo names and model files, "
                                  "not to a keras.Model object", hint="build the model with those options first")
        built = model if input_shape is None else with_input_shape(model, input_shape)
    elif isinstance(model, (str, os.PathLike)):
        built = create(str(model) if not isinstance(model, os.PathLike) else model, trust_model_code=trust_model_code,
                       input_shape=input_shape, **options)
    else:
        raise InvalidArgument(f"model must be a zoo name, a model file or a keras.Model; received {type(model).__name__}")
    if tf_keras and _keras3.is_model(built):
        built = _keras3.to_tf_keras(built)
    return built


def preprocess_mode(model_or_name: Any) -> str:
    """Input preprocessing a model expects (one of ``edgekit.data.PREPROCESS_MODES``).

    Zoo names, and models whose name is a zoo canonical name (including zoo models saved to a file), get their
    family's mode; any other model or file gets ``"unit"`` (pixels scaled to [0, 1]).
    """
    if isinstance(model_or_name, (str, os.PathLike)) and not is_model_file(model_or_name):
        return MODELS.entry(str(model_or_name)).meta["preprocess"]
    if isinstance(model_or_name, (str, os.PathLike)):   # the stored name, without loading (or trusting) the file
        top = read_stored(model_or_name).configs[0]
        name = str((top.get("config") or {}).get("name", "") if isinstance(top, dict) else "").lower()
    else:
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


from . import (  # noqa: E402,F401 - registers the families
    alexnet, densenet, efficientnet, googlenet, mobilenet_v1, mobilenet_v2, mobilenet_v3, resnet, shufflenet,
    squeezenet, vgg, xception,
)

#: the public names: what edgekit/__init__.py and the CLI use (the others are importable, not public API)
__all__ = ["create", "list"]
