"""The int8 doctor: find the layers that break int8 and fix them within an accuracy budget.

``doctor(model, calib_data=..., eval_data=..., max_drop=1.0)`` measures float vs plain int8 accuracy, ranks every
quantized op by the error it adds (LiteRT's QuantizationDebugger for TFLite, onnxruntime's QDQ debugging for
ONNX), then walks the ladder (:mod:`edgekit.doctor.ladder`) to the first rung within ``max_drop`` and exports it.
"""
from ._api import DoctorResult, doctor, export_within
from .ladder import Config, Rung
from .stats import LayerStat

__all__ = ["doctor", "export_within", "DoctorResult", "Rung", "Config", "LayerStat"]
