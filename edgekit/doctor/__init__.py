"""The int8 doctor: find the layers that break int8 and fix them within an accuracy budget.

``edgekit.doctor(model, calib_data=..., eval_data=..., max_drop=1.0)`` (the package is callable: it is
:func:`doctor`) measures float vs plain int8 accuracy, ranks every quantized op by the error it adds (LiteRT's
QuantizationDebugger for TFLite, onnxruntime's QDQ debugging for ONNX), then walks the ladder
(:mod:`edgekit.doctor.ladder`) to the first rung within ``max_drop`` and exports it.
"""
from __future__ import annotations

import sys
import types
from typing import Any

from ._api import DoctorResult, doctor, export, export_within
from .ladder import Config, Rung
from .stats import LayerStat

__all__ = ["doctor", "export", "export_within", "DoctorResult", "Rung", "Config", "LayerStat"]


class _CallableModule(types.ModuleType):
    """``edgekit.doctor(...)`` is :func:`doctor`: the package and its one verb share the name."""

    def __call__(self, *args: Any, **kwargs: Any) -> DoctorResult:
        return doctor(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
