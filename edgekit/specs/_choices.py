"""Lazy choices for spec fields: registries and tables are imported when a spec is built, not when it is declared
(``import edgekit`` stays light and free of import cycles)."""
from __future__ import annotations

import importlib
from typing import Any, Callable


def lazy(module: str, attr: str) -> Callable[[], Any]:
    """A zero-argument callable returning ``module.attr`` (a Registry or a sequence of names)."""

    def get() -> Any:
        return getattr(importlib.import_module(module), attr)

    get.__qualname__ = f"lazy({module}.{attr})"
    return get


PRECISIONS = lazy("edgekit.exporters.base", "PRECISIONS")
EXPORTERS = lazy("edgekit.exporters", "EXPORTERS")
IO_TYPES = lazy("edgekit.exporters.base", "IO_TYPES")
CALIBRATION_METHODS = lazy("edgekit.exporters.base", "CALIBRATION_METHODS")
PREPROCESS_MODES = lazy("edgekit.data", "PREPROCESS_MODES")
OPTIMIZERS = lazy("edgekit.compression.train", "OPTIMIZERS")
