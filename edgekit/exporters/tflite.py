"""TFLite export with the TF converter (``tf.lite.TFLiteConverter.from_keras_model``).

float32; float16 weights; dynamic range (int8 weights); full integer int8 (representative dataset,
``TFLITE_BUILTINS_INT8``, float/int8/uint8 I/O); int16x8 (``EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_
WEIGHTS_INT8``). ``per_tensor`` sets the converter's ``_experimental_disable_per_channel``. QAT-annotated models
(tfmot ``quantize_apply``) convert with ``Optimize.DEFAULT``: their ranges come from training.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ExportError, map_errors
from .base import Exporter, ExportSpec, register_exporter


class TFLiteExporter(Exporter):
    name = "tflite"
    suffix = ".tflite"
    runtime = "litert"
    precisions = ("none", "fp16", "dynamic", "int8", "int16x8")
    io_types = {"int8": ("float", "int8", "uint8"), "int16x8": ("float", "int16")}
    per_tensor = ("int8", "int16x8")
    qat = True

    def convert(self, model, spec: ExportSpec, calib_x, dest: Path, progress) -> dict[str, Any]:
        from .._keras import quiet_native_logs, tf

        conv = tf.lite.TFLiteConverter.from_keras_model(model)
        q = spec.quantize
        io_dtype = {"float": tf.float32, "int8": tf.int8, "uint8": tf.uint8, "int16": tf.int16}[spec.io]
        if q != "none":
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
        if q == "fp16":
            conv.target_spec.supported_types = [tf.float16]
        if calib_x is not None and q in ("int8", "int16x8"):
            conv.representative_dataset = _representative(calib_x, progress)
        if q == "int8" and not spec.qat:
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if q == "int16x8":
            conv.target_spec.supported_ops = [
                tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
        if spec.io != "float":
            conv.inference_input_type = io_dtype
            conv.inference_output_type = io_dtype
        if spec.per_tensor:
            conv._experimental_disable_per_channel = True  # documented private switch of the TF converter
        progress(f"converting tflite {spec.precision.label}", 0, None)
        with map_errors({Exception: ExportError}, f"the TFLite converter failed ({spec.precision.label})",
                        hint="rerun with --debug (or EDGEKIT_TF_LOGS=1) for the converter's log; unsupported layers need a "
                             "different precision or model"):
            with warnings.catch_warnings(), quiet_native_logs():  # MLIR's C++ log lines go to fd 2 directly
                warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
                data = conv.convert()
        dest.write_bytes(data)
        progress(f"converting tflite {spec.precision.label}", 1, 1)
        return {"converter": "tf.lite.TFLiteConverter.from_keras_model",
                "supported_ops": [str(o).split(".")[-1] for o in conv.target_spec.supported_ops]}


def _representative(x: np.ndarray, progress):
    n = len(x)

    def gen():
        for i in range(n):
            progress("calibrating tflite", i + 1, n)
            yield [x[i:i + 1].astype(np.float32)]

    return gen


register_exporter(TFLiteExporter, aliases=("tfl", "litert"))
