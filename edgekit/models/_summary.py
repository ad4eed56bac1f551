"""The zoo as rows (name, family, default input, params, mult-adds), with params/mult-adds cached per version."""
from __future__ import annotations

import builtins
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._jsonable import JsonMixin
from .._progress import Progress, no_progress


@dataclass
class ZooEntry(JsonMixin):
    name: str
    family: str
    aliases: tuple[str, ...]
    input_shape: tuple[int, int, int]
    preprocess: str
    has_imagenet: bool
    params: int | None = None
    mult_adds: int | None = None
    paper_url: str = ""


def stats_cache_path() -> Path:
    """``$XDG_CACHE_HOME/edgekit/zoo-stats.json`` (``~/.cache`` by default); ``EDGEKIT_CACHE`` overrides the folder."""
    base = os.environ.get("EDGEKIT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "edgekit")
    return Path(base) / "zoo-stats.json"


def _cache_key() -> str:
    from importlib.metadata import PackageNotFoundError, version

    from .. import __version__

    def v(dist: str) -> str:
        try:
            return version(dist)
        except PackageNotFoundError:
            return "?"

    return f"edgekit {__version__}, tensorflow {v('tensorflow')}, tf-keras {v('tf-keras')}"


def _read_cache(path: Path, key: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data.get("models", {}) if data.get("key") == key else {}


def _write_cache(path: Path, key: str, models: dict[str, Any]) -> None:
    from .._io import write_text_atomic

    try:
        write_text_atomic(path, json.dumps({"key": key, "models": models}, indent=1, sort_keys=True))
    except OSError:  # a cache: never fail the command for it
        pass


def summary(pattern: str | None = None, *, stats: bool = True, progress: Progress = no_progress,
            use_cache: bool = True) -> builtins.list[ZooEntry]:
    """Rows for the zoo models matching ``pattern``; ``stats`` adds exact params and mult-adds at the default input.

    Stats need each model built once (random weights); they are cached in :func:`stats_cache_path` per
    edgekit/TensorFlow version.
    """
    from . import info, list as list_models

    names = list_models(pattern)
    rows = []
    for n in names:
        i = info(n)
        rows.append(ZooEntry(n, i.family, i.aliases, i.input_shape, i.preprocess, i.has_imagenet,
                             paper_url=i.paper_url))
    if not stats or not rows:
        return rows
    key = _cache_key()
    path = stats_cache_path()
    cache = _read_cache(path, key) if use_cache else {}
    missing = [r for r in rows if r.name not in cache]
    if missing:
        import gc

        from ..profiling import profile

        for done, r in enumerate(missing):
            progress("computing params and mult-adds", done, len(missing))
            rep = profile(r.name)
            cache[r.name] = {"params": rep.total_params, "mult_adds": rep.total_mult_adds}
            del rep
            gc.collect()   # free the model's variables before the next one (VGG-19 is 0.6 GB)
        progress("computing params and mult-adds", len(missing), len(missing))
        if use_cache:
            _write_cache(path, key, {**_read_cache(path, key), **cache})
    for r in rows:
        r.params, r.mult_adds = cache[r.name]["params"], cache[r.name]["mult_adds"]
    return rows
