"""Lazy choices for spec fields: registries and tables are imported when a spec is built, not when it is declared
(``import edgekit`` stays light and free of import cycles)."""
from __future__ import annotations

import importlib
from typing import Any, Callable


def lazy(module: str, attr: str) -> Callable[[], Any]:
    """A zero-argument callable returning ``module.attr``: a Registry or a sequence of names, or a function computing
    one (called each time, so what it derives from a registry follows later registrations)."""

    def get() -> Any:
        value = getattr(importlib.import_module(module), attr)
        return value() if callable(value) and not hasattr(value, "resolve") else value

    get.__qualname__ = f"lazy({module}.{attr})"
    return get


PRECISIONS = lazy("edgekit.specs.formats", "PRECISIONS")
EXPORTERS = lazy("edgekit.specs.formats", "FORMATS")
IO_TYPES = lazy("edgekit.specs.formats", "io_types")
CALIBRATION_METHODS = lazy("edgekit.specs.formats", "calibration_methods")
PREPROCESS_MODES = lazy("edgekit.data", "PREPROCESS_MODES")
OPTIMIZERS = lazy("edgekit.compression.train", "OPTIMIZERS")
