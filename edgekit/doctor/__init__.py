"""The int8 doctor: find the layers that break int8 and fix them within an accuracy budget.

``edgekit.doctor.run(model, calib_data=..., eval_data=..., max_drop=1.0)`` (:func:`run`) measures float vs plain
int8 accuracy, ranks every quantized op by the error it adds (LiteRT's QuantizationDebugger for TFLite,
onnxruntime's QDQ debugging for ONNX), then walks the ladder (:mod:`edgekit.doctor.ladder`) to the first rung within
``max_drop`` and exports it.
"""
from __future__ import annotations

from ._api import DoctorResult, export, export_within, run
from .ladder import Config, Rung
from .stats import LayerStat

#: the public names: what edgekit/__init__.py and the CLI use (the others are importable, not public API)
__all__ = ["run", "DoctorResult", "export"]
