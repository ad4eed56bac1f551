"""The zoo as a table: each registered model's :class:`~edgekit.models.ModelInfo` with its exact params and
mult-adds at the default input (what ``edgekit models`` shows).

It sits above both the registry (:mod:`edgekit.models`) and the counter (:mod:`edgekit.profiling`): the counts come
from the table shipped with the package, else from a per-version user cache, else by profiling each model once.
"""
from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from ._progress import Progress, no_progress
from .models import ModelInfo, info, list as list_models
from . import __version__
from ._io import write_text_atomic
from .profiling import profile


def stats_cache_path() -> Path:
    """``$XDG_CACHE_HOME/edgekit/zoo-stats.json`` (``~/.cache`` by default); ``EDGEKIT_CACHE`` overrides the folder."""
    base = os.environ.get("EDGEKIT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "edgekit")
    return Path(base) / "zoo-stats.json"


def _cache_key() -> str:
    from importlib.metadata import PackageNotFoundError, version

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
    try:
        write_text_atomic(path, json.dumps({"key": key, "models": models}, indent=1, sort_keys=True))
    except OSError:  # a cache: never fail the command for it
        pass


#: params/mult-adds of every zoo model at its default input, shipped so `edgekit models` is instant on a fresh
#: install; regenerate with `python -c "from edgekit.models._summary import _write_packaged as w; w()"`
#: (tests check it against live builds)
PACKAGED_STATS = Path(__file__).with_name("zoo_stats.json")


def _packaged() -> dict[str, Any]:
    try:
        data = json.loads(PACKAGED_STATS.read_text())
    except (OSError, ValueError):
        return {}
    return data.get("models", {}) if data.get("edgekit") == __version__ else {}


def compute_stats(name: str) -> dict[str, int]:
    """Exact params and mult-adds of zoo model ``name`` at its default input (builds it with random weights)."""
    import gc

    rep = profile(name)
    stats = {"params": rep.total_params, "mult_adds": rep.total_mult_adds}
    del rep
    gc.collect()   # free the model's variables before the next one (VGG-19 is 0.6 GB)
    return stats


def summary(pattern: str | None = None, *, stats: bool = True, progress: Progress = no_progress,
            use_cache: bool = True) -> list[ModelInfo]:
    """:func:`edgekit.models.info` of the zoo models matching ``pattern``; ``stats`` fills in exact params and
    mult-adds at the default input.

    Stats come from the table shipped with the package, else from the user cache (:func:`stats_cache_path`, per
    edgekit/TensorFlow version), else by building each model once with random weights (then cached).
    """
    rows = [info(n) for n in list_models(pattern)]
    if not stats or not rows:
        return rows
    key = _cache_key()
    path = stats_cache_path()
    cache = {**_packaged(), **_read_cache(path, key)} if use_cache else {}
    missing = [r for r in rows if r.name not in cache]
    if missing:
        for done, r in enumerate(missing):
            progress("computing params and mult-adds", done, len(missing))
            cache[r.name] = compute_stats(r.name)
        progress("computing params and mult-adds", len(missing), len(missing))
        if use_cache:
            _write_cache(path, key, {**_read_cache(path, key), **{r.name: cache[r.name] for r in missing}})
    return [replace(r, params=cache[r.name]["params"], mult_adds=cache[r.name]["mult_adds"]) for r in rows]


def _write_packaged() -> None:  # pragma: no cover - maintenance script

    table = {n: compute_stats(n) for n in list_models()}
    write_text_atomic(PACKAGED_STATS, json.dumps({"edgekit": __version__, "models": table}, indent=1,
                                                 sort_keys=True) + "\n")
