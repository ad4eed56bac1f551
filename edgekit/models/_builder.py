"""Machinery shared by the model families: the registry decorator, option checks, canonical names, weights.

Private: families use :func:`register_model` and :class:`BuildConfig`; users call ``edgekit.models.create``.
"""
from __future__ import annotations

import collections
import contextlib
import io
import numbers
import os
import re
import socket
import sys
import urllib.error
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from ..errors import InvalidArgument, ModelLoadError, WeightsUnavailable
from ..registry import Registry
from ._files import load_model_file

MODELS: Registry[Callable[["BuildConfig"], Any]] = Registry("model")

#: options every zoo model takes
COMMON_OPTIONS = ("classes", "input_channels", "include_top", "resolution", "rho")
#: seconds a weights download may stall before it fails (tf-keras' get_file has no timeout of its own)
DOWNLOAD_TIMEOUT = 20.0
#: largest input side accepted (guards against typos that would allocate gigabytes)
MAX_RESOLUTION = 4096
#: the width multiplier's valid range (alpha in (0, 1.5]) for every family that takes it
ALPHA_RANGE = (0.0, 1.5)


@dataclass(frozen=True)
class Imagenet:
    """Which ImageNet weights tf-keras publishes for a model: the input resolutions (and widths) they exist for."""

    resolutions: tuple[int, ...] = (224,)
    alphas: tuple[float, ...] = ()


def register_model(name: str, *, family: str, paper: str, arxiv: str, resolution: int, preprocess: str,
                   min_resolution: int, options: tuple[str, ...] = (), imagenet: Imagenet | None = None,
                   aliases: tuple[str, ...] = (), description: str = "") -> Callable:
    """Register a model entrypoint ``fn(cfg: BuildConfig) -> keras.Model`` (timm's ``@register_model``)."""
    meta = dict(family=family, paper=paper, arxiv=arxiv, resolution=resolution, preprocess=preprocess,
                min_resolution=min_resolution, options=tuple(COMMON_OPTIONS) + tuple(options), imagenet=imagenet,
                description=description)
    return MODELS.register(name, aliases=aliases, **meta)


@dataclass
class BuildConfig:
    """The resolved, validated options of one ``create`` call, handed to the family's entrypoint."""

    model: str                      # canonical registry name, e.g. "mobilenet_v1"
    resolution: int
    input_channels: int = 3
    classes: int = 1000
    include_top: bool = True
    weights: str | None = None      # "imagenet", None (random init) or a path to a weights file
    extra: dict[str, Any] = field(default_factory=dict)   # family options (alpha, dropout, ...)
    trust_model_code: bool = False  # a whole model file given as weights may run code (see models._safety)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.resolution, self.resolution, self.input_channels)

    def get(self, key: str, default: Any) -> Any:
        value = self.extra.get(key)
        return default if value is None else value

    def canonical_name(self, stem: str) -> str:
        """``stem`` plus the knobs that change the graph: e.g. ``mobilenet_v1_0.25_32_1ch_10cls``."""
        name = stem
        if self.input_channels != 3:
            name += f"_{self.input_channels}ch"
        if not self.include_top:
            name += "_notop"
        elif self.classes != 1000:
            name += f"_{self.classes}cls"
        return name


#: what a hint suggests for a knob, besides its valid range
_EXAMPLES = {"alpha": " (the paper's widths: 0.25, 0.5, 0.75, 1.0)", "rho": " (e.g. 0.571 for 128 px at 224)"}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _one_value_hint(name: str, kind: str, example: Any) -> str:
    return (f"give one {kind}, e.g. {_flag(name)} {example} ({name}: {example} in a recipe); to compare several "
            "values, run once per value")


def _as_int(name: str, value: Any, example: Any = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or int(value) != value:
        raise InvalidArgument(f"{name} must be an integer; received {name}={value!r}",
                              hint=_one_value_hint(name, "integer", example))
    return int(value)


def _as_float(name: str, value: Any, example: Any = 0.5) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidArgument(f"{name} must be a number; received {name}={value!r}",
                              hint=_one_value_hint(name, "number", example))
    return float(value)


def check_range(name: str, value: Any, low: float, high: float, *, low_open: bool = True) -> float:
    """``value`` as float within (low, high] (or [low, high] with ``low_open=False``), else InvalidArgument whose
    hint names the valid range."""
    interval = f"{'(' if low_open else '['}{low:g}, {high:g}]"
    v = _as_float(name, value, example=min(high, 1.0) if low < 1.0 else high)
    ok = (v > low if low_open else v >= low) and v <= high
    if not ok:
        raise InvalidArgument(f"{name} must be in {interval}; received {name}={value!r}",
                              hint=f"use {_flag(name)} in {interval}{_EXAMPLES.get(name, '')}")
    return v


def make_config(model: str, meta: dict[str, Any], weights: Any, options: dict[str, Any]) -> BuildConfig:
    """Validate ``options`` against the entry's metadata and resolve resolution/rho and weights."""
    options = {k: v for k, v in options.items() if v is not None}   # None = family default (timm convention)
    accepted = meta["options"]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise InvalidArgument(f"{model} does not take option(s) {', '.join(unknown)}",
                              hint=f"{model} takes: {', '.join(accepted)}")
    default_res, min_res = meta["resolution"], meta["min_resolution"]
    if "rho" in options and "resolution" in options:
        raise InvalidArgument("pass either rho or resolution, not both",
                              hint=f"resolution = round({default_res} * rho)")
    if "rho" in options:
        rho = check_range("rho", options.pop("rho"), 0.0, 1.0)
        resolution = int(round(default_res * rho))
        via = f" (rho={rho:g} -> {resolution} px)"
    else:
        resolution = _as_int("resolution", options.pop("resolution", default_res), example=default_res)
        via = ""
    if resolution < min_res:
        raise InvalidArgument(f"{model} needs an input of at least {min_res}x{min_res} pixels; "
                              f"received {resolution}{via}", hint=f"use --resolution {min_res} or more")
    if resolution > MAX_RESOLUTION:
        raise InvalidArgument(f"resolution {resolution} is above edgekit's limit of {MAX_RESOLUTION} pixels",
                              hint=f"use --resolution between {min_res} and {MAX_RESOLUTION} ({model}'s default is "
                                   f"{default_res}), or --rho in (0, 1]")
    classes = _as_int("classes", options.pop("classes", 1000), example=10)
    if classes < 1:
        raise InvalidArgument(f"classes must be >= 1; received classes={classes}", hint="use --classes 1 or more")
    channels = _as_int("input_channels", options.pop("input_channels", 3), example=3)
    if channels < 1:
        raise InvalidArgument(f"input_channels must be >= 1; received input_channels={channels}",
                              hint="use --input-channels 1 (grayscale) or 3 (RGB)")
    include_top = options.pop("include_top", True)
    if not isinstance(include_top, bool):
        raise InvalidArgument(f"include_top must be true or false; received {include_top!r}")
    if "alpha" in options:  # the knob's range first: "alpha 0" is the problem, not that no weights exist for it
        check_range("alpha", options["alpha"], *ALPHA_RANGE)
    cfg = BuildConfig(model, resolution, channels, classes, include_top, None, options)
    cfg.weights = _resolve_weights(model, meta, weights, cfg)
    return cfg


def _resolve_weights(model: str, meta: dict[str, Any], weights: Any, cfg: BuildConfig) -> str | None:
    imagenet: Imagenet | None = meta["imagenet"]
    if weights is None:
        weights = "imagenet" if imagenet else "none"
    if isinstance(weights, os.PathLike):
        weights = os.fspath(weights)
    if not isinstance(weights, str):
        raise InvalidArgument(f"weights must be 'imagenet', 'none' or a file path; received {weights!r}")
    key = weights.strip().lower()
    if key in ("none", "random", ""):
        return None
    if key == "imagenet":
        if imagenet is None:
            raise InvalidArgument(f"{model} has no ImageNet weights in tf-keras",
                                  hint="use --weights none (random init) or --weights PATH to a weights file")
        problems = []
        if cfg.input_channels != 3:
            problems.append(f"input_channels={cfg.input_channels} (ImageNet weights need 3)")
        if cfg.include_top and cfg.classes != 1000:
            problems.append(f"classes={cfg.classes} with the classifier (ImageNet weights need 1000; "
                            "or drop the head with include_top=False)")
        if cfg.include_top and cfg.resolution not in imagenet.resolutions:
            problems.append(f"resolution={cfg.resolution} with the classifier (ImageNet weights exist for "
                            f"{', '.join(map(str, imagenet.resolutions))}; without the head, include_top=False, "
                            f"any resolution works)")
        alpha = cfg.extra.get("alpha")
        if imagenet.alphas and alpha is not None and float(alpha) not in imagenet.alphas:
            problems.append(f"alpha={alpha} (ImageNet weights exist for {', '.join(map(str, imagenet.alphas))})")
        if cfg.extra.get("depth_multiplier", 1) != 1:
            problems.append(f"depth_multiplier={cfg.extra['depth_multiplier']} (ImageNet weights need 1)")
        if problems:
            raise InvalidArgument(f"ImageNet weights for {model} do not fit {'; '.join(problems)}",
                                  hint="use --weights none for random initialisation, or change the options")
        return "imagenet"
    path = Path(weights).expanduser()
    if not path.exists() and not Path(str(path) + ".index").exists():
        raise InvalidArgument(f"weights file {weights!r} does not exist",
                              hint="pass imagenet, none, or the path of a .h5/.weights.h5 weights file")
    return str(path)


def is_full_model_file(path: str) -> bool:
    """A .keras file, SavedModel directory or .h5 holding a whole model (not only weights)."""
    p = Path(path)
    return p.is_dir() or (p.suffix == ".keras" and not p.name.endswith(".weights.keras")) or _is_full_h5_model(p)


def _is_full_h5_model(path: Path) -> bool:
    if path.suffix not in (".h5", ".hdf5") or not path.is_file():
        return False
    try:
        import h5py

        with h5py.File(path, "r") as f:
            return "model_config" in f.attrs
    except Exception:  # noqa: BLE001 - unreadable files are reported when loading
        return False


def load_weights(model: Any, path: str, *, trust_model_code: bool = False) -> None:
    """Load a weights file, or the weights of a whole model file, into a freshly built zoo model.

    A whole model file (e.g. a model trained and saved by edgekit) must have exactly this architecture; its
    weights are copied in order. Mismatches raise ModelLoadError.
    """
    if is_full_model_file(path):
        saved = load_model_file(path, trust_model_code=trust_model_code)
        ours, theirs = model.get_weights(), saved.get_weights()
        mismatch = len(ours) != len(theirs) or any(a.shape != b.shape for a, b in zip(ours, theirs))
        if mismatch:
            raise ModelLoadError(f"model file {path!r} ({saved.name}) does not have the architecture of {model.name}",
                                 hint=f"pass it as the MODEL itself, or the options it was built with")
        model.set_weights(theirs)
        return
    try:
        model.load_weights(path)
    except Exception as exc:  # noqa: BLE001 - h5py/TF raise many types; translate at the boundary
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[-1]
        raise ModelLoadError(f"cannot load weights {path!r} into {model.name}: {detail}",
                             hint="the file must hold weights of exactly this architecture and options") from exc


@contextlib.contextmanager
def imagenet_download(model: str) -> Iterator[None]:
    """Guard around tf-keras' ``get_file``: short socket timeout, download failures -> WeightsUnavailable."""
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT)
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # get_file prints "Downloading data from ..."
            yield
    except Exception as exc:  # noqa: BLE001
        text = str(exc)
        cache = Path("~/.keras/models").expanduser()
        network = (ConnectionError, TimeoutError, socket.timeout, urllib.error.URLError)
        if "URL fetch failure" not in text and not isinstance(exc, network):
            if isinstance(exc, OSError):   # h5py could not read a cached file
                raise WeightsUnavailable(f"cannot read the cached ImageNet weights for {model}: {text[:160]}",
                                         hint=f"delete the broken file from {cache} and retry, or use --weights none"
                                         ) from exc
            raise
        url = re.search(r" on (\S+?): ", text)
        fname = url.group(1).rsplit("/", 1)[-1] if url else "the weights file"
        reason = text.split(" -- ", 1)[-1] if " -- " in text else text
        raise WeightsUnavailable(
            f"ImageNet weights for {model} are not in the Keras cache ({cache}) and could not be downloaded "
            f"({reason[:120]}; no network?)",
            hint=f"use --weights none for random initialisation, --weights PATH for a local weights file, "
                 f"or copy {fname} into {cache}") from exc
    finally:
        socket.setdefaulttimeout(old)


@contextlib.contextmanager
def fresh_names() -> Iterator[None]:
    """Build with Keras' auto-name counters reset, so auto-named layers get the same names on every build.

    The session's counters are restored afterwards (max of both), so later layers still get unique names.
    """
    from .._keras import keras

    backend = sys.modules[keras.__name__ + ".src.backend"]
    # two counter maps matter: the Keras graph's (Input layers, get_uid) and the default graph's (layer names)
    maps = [backend.get_default_graph_uid_map()]
    graph = backend.get_graph()
    if graph not in backend.PER_GRAPH_OBJECT_NAME_UIDS:
        backend.PER_GRAPH_OBJECT_NAME_UIDS[graph] = collections.defaultdict(int)
    maps.append(backend.PER_GRAPH_OBJECT_NAME_UIDS[graph])
    saved = [dict(m) for m in maps]
    saved_observed = set(backend.OBSERVED_NAMES)
    for m in maps:
        m.clear()
    backend.OBSERVED_NAMES.clear()   # TF-op layers avoid every name seen so far
    try:
        yield
    finally:
        for m, old in zip(maps, saved):
            for k, v in old.items():
                m[k] = max(m.get(k, 0), v)
        backend.OBSERVED_NAMES.update(saved_observed)


def finish(model: Any, name: str) -> Any:
    """Give a built model its canonical name."""
    model._name = name
    return model


def finish_built_here(model: Any, cfg: BuildConfig, stem: str) -> Any:
    """Name a model built by edgekit (no ImageNet weights) and load the weights file, if one was given."""
    finish(model, cfg.canonical_name(stem))
    if cfg.weights:
        load_weights(model, cfg.weights, trust_model_code=cfg.trust_model_code)
    return model
