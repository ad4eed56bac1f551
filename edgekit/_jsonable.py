"""JSON serialisation for edgekit's result dataclasses (ExportResult, BenchResult, reports)."""
from __future__ import annotations

import dataclasses
import enum
import json
import math
from pathlib import Path
from typing import Any


def to_jsonable(obj: Any) -> Any:
    """Convert dataclasses, paths, numpy scalars/arrays, enums and sets into plain JSON types. A dataclass field
    whose metadata has ``"json"`` (a function) is written as that function's value (e.g. a keras.Model as its
    name)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(f.metadata["json"](getattr(obj, f.name)) if "json" in f.metadata
                                    else getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if hasattr(obj, "tolist") and callable(obj.tolist):  # numpy scalar or array
        return to_jsonable(obj.tolist())
    return obj


def model_name(model: Any) -> str | None:
    """A model in JSON: its name (a keras.Model is not data)."""
    return None if model is None else str(getattr(model, "name", None) or type(model).__name__)


class JsonMixin:
    """Adds ``to_dict`` and ``to_json`` to a dataclass."""

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable(self)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)
