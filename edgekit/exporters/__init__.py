"""Export: Keras model -> TFLite / ONNX artifacts in every precision, calibrated on real data, verified against
Keras, each described by a JSON manifest; and ``inspect`` for any .tflite/.onnx file.

``EXPORTERS`` is the format registry (``tflite``, ``onnx``); ``PRECISIONS`` the ``quantize=`` values.
Importing this package does not import TensorFlow; converting does.
"""
from __future__ import annotations

from . import tflite as _tflite  # noqa: F401 - registers the tflite exporter (first: the primary format)
from . import onnx as _onnx  # noqa: F401 - registers the onnx exporter
from ._api import Artifact, ExportResult, export
from .base import (EXPORTERS, PRECISIONS, Exporter, ExportSpec, Precision, calibration_methods, format_of,
                   io_types, precision_tokens, suffixes)
from .calibration import CalibrationInfo
from .inspection import InspectReport, IOTensor, inspect
from ..verification import TOLERANCES, OutputCheck, Tolerance, Verification

#: derived from the formats registered here (spec choices call io_types()/calibration_methods(), which follow
#: later registrations too)
IO_TYPES = io_types()
CALIBRATION_METHODS = calibration_methods()

#: the public names: what edgekit/__init__.py and the CLI use (the others are importable, not public API)
__all__ = ["ExportResult", "inspect"]
