"""The doctor's TFLite side: candidates from the exporter's own code paths, diagnosis with LiteRT's
``tf.lite.experimental.QuantizationDebugger``.

The model is calibrated once per calibration set (the converter's calibrate-only mode, as the debugger does) and
quantized as often as the ladder needs: with ``denylisted_nodes`` for layers kept in float, with NumericVerify
ops for the debugger. Plain candidates go through ``TFLiteExporter.convert`` itself, so every candidate is the
file ``edgekit export`` writes for the same options.
"""
from __future__ import annotations

import contextlib
import csv
import io
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..exporters import tflite as T
from ..exporters._float_layers import keras_layer_names, layers_in, nodes_for
from ..exporters.base import EXPORTERS
from ..specs.export import ExportOptions
from .stats import (LayerStat, Op, channel_ratio, channel_sums, median_channel_sqnr, primary_layer, quant_range,
                    sqnr)


class TFLiteBackend:
    fmt = "tflite"
    suffix = ".tflite"
    calibration_methods = ("minmax",)
    int16x8 = True
    qat = True

    def __init__(self, kmodel, *, io: str, workdir: Path, progress):
        self.kmodel, self.io, self.dir, self.progress = kmodel, io, workdir, progress
        self.known = keras_layer_names(kmodel)
        self._calibrated: dict[tuple, bytes] = {}

    def spec(self, cfg, *, io: str | None = None, qat: bool = False) -> ExportOptions:
        """The export options ``edgekit export`` would be given for ``cfg`` (validated by the exporter's rules)."""
        opts = ExportOptions(quantize=cfg.quantize, formats=("tflite",), io=io or self.io, opset=None,
                             float_layers=tuple(cfg.float_layers), calibration_method=cfg.calibration_method)
        return opts.with_derived(qat=True) if qat else opts

    # -- candidates ----------------------------------------------------------------------------------------------
    def calibrated(self, cfg, calib_x: np.ndarray) -> bytes:
        key = (len(calib_x), cfg.calibration_method)
        if key not in self._calibrated:
            # the converter set up exactly as the exporter sets it up for this spec
            self._calibrated[key] = T.calibrate(self.kmodel, self.spec(cfg), calib_x, self.progress)
        return self._calibrated[key]

    def build(self, cfg, calib_x: np.ndarray | None, dest: Path, model=None) -> dict[str, Any]:
        """Write the candidate for ``cfg`` to ``dest`` (``model``: a QAT model instead of the float one)."""
        if model is not None:
            return EXPORTERS.get("tflite").convert(model, self.spec(cfg, qat=True), None, dest, self.progress)
        if not cfg.float_layers:
            return EXPORTERS.get("tflite").convert(self.kmodel, self.spec(cfg), calib_x, dest, self.progress)
        cal = self.calibrated(cfg, calib_x)
        nodes = nodes_for(cfg.float_layers, self.quantizable(cal), "tflite")
        dest.write_bytes(T.quantize_calibrated(cal, self.spec(cfg), [n for ns in nodes.values() for n in ns]))
        return {"float_layer_nodes": nodes}

    def quantizable(self, calibrated: bytes) -> dict[str, list[str]]:
        return T.quantizable_nodes(calibrated, self.known)

    # -- graph ---------------------------------------------------------------------------------------------------
    def graph(self, cfg, calib_x: np.ndarray) -> tuple[list[Op], dict[str, str], dict[str, list[str]]]:
        """The calibrated graph's ops, ``{op name: unit}`` and ``{unit: [layers to keep float]}``: one unit per op
        (LiteRT fuses conv + batch norm + activation into one op, named after the conv layer)."""
        from tensorflow.lite.tools import flatbuffer_utils

        cal = self.calibrated(cfg, calib_x)
        model = flatbuffer_utils.convert_bytearray_to_object(bytearray(cal))
        g = model.subgraphs[0]

        def name(i: int) -> str:
            n = g.tensors[i].name
            return n.decode() if isinstance(n, bytes) else str(n)

        ops, unit_of = [], {}
        keep = self.quantizable(cal)
        for op in g.operators:
            outs = [name(i) for i in op.outputs if i >= 0]
            if not outs:
                continue
            op_layers = layers_in(outs[0], self.known)
            ops.append(Op(outs[0], [name(i) for i in op.inputs if i >= 0], outs, op_layers))
            if outs[0] in keep:
                unit_of[outs[0]] = primary_layer(keep[outs[0]], self.kmodel)
        return ops, unit_of, {u: [u] for u in unit_of.values()}

    # -- diagnosis -----------------------------------------------------------------------------------------------
    def diagnose(self, cfg, calib_x: np.ndarray, x_debug: np.ndarray) -> list[LayerStat]:
        """Per-op error of the int8 model for ``cfg`` (its layers kept in float are not measured) on ``x_debug``."""
        from .._keras import quiet_native_logs, tf

        cal = self.calibrated(cfg, calib_x)
        keep = self.quantizable(cal)
        deny = []
        if cfg.float_layers:
            deny = [n for ns in nodes_for(cfg.float_layers, keep, "tflite").values() for n in ns]
        debug_model = T.quantize_calibrated(cal, self.spec(cfg, io="float"), deny, numeric_verify=True)
        n = len(x_debug)

        def dataset():
            for i in range(n):
                self.progress("diagnosing tflite (QuantizationDebugger)", i + 1, n)
                yield [x_debug[i:i + 1].astype(np.float32)]

        options = tf.lite.experimental.QuantizationDebugOptions(layer_direct_compare_metrics=_METRICS)
        with T._converter_errors("LiteRT's QuantizationDebugger failed", hint="rerun with --debug for the details"), \
                warnings.catch_warnings(), quiet_native_logs(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
            dbg = tf.lite.experimental.QuantizationDebugger(quant_debug_model_content=debug_model,
                                                            debug_dataset=dataset, debug_options=options)
            dbg.run()
            buf = io.StringIO()
            dbg.layer_statistics_dump(buf)
        buf.seek(0)
        floatable = {layer for owners in keep.values() for layer in owners}
        stats = []
        for row in csv.DictReader(buf):
            scale, zp = float(row["scale"]), int(float(row["zero_point"]))
            layers = layers_in(row["tensor_name"], self.known) or _output_layers(self.kmodel, row["tensor_name"])
            if not layers:
                continue
            num = {k: _num(row.get(k)) for k in _METRICS}
            lo, hi = quant_range(scale, zp)
            width = hi - lo
            bulk = (num["ek_p_hi"] - num["ek_p_lo"]) / width if width > 0 and math.isfinite(num["ek_p_hi"]) else None
            layer = primary_layer(layers, self.kmodel)
            ch = num["ek_channel_sqnr"]
            stats.append(LayerStat(layer, row["op_name"], row["tensor_name"], layers,
                                   sqnr(num["ek_signal"], num["ek_noise"]), ch if math.isfinite(ch) else None,
                                   math.sqrt(max(num["ek_noise"], 0.0)) / scale if scale > 0 else 0.0, lo, hi, bulk,
                                   num["ek_clipped"] if math.isfinite(num["ek_clipped"]) else 0.0,
                                   num["ek_channel_ratio"] if math.isfinite(num["ek_channel_ratio"]) else None,
                                   None, layer in floatable))
        return stats


def _output_layers(kmodel, tensor_name: str) -> list[str]:
    """The converter names the model's output tensor after the signature (``StatefulPartitionedCall:0``): map it
    back to the output layer."""
    if tensor_name.startswith("StatefulPartitionedCall") and kmodel.output_names:
        return [kmodel.output_names[0]]
    return []


def _num(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _deq(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return (q.astype(np.int32) - zero_point).astype(np.float64) * scale


def _clipped(f, q, scale, zp) -> float:
    lo, hi = quant_range(scale, zp)
    return float(np.mean((f < lo - scale / 2) | (f > hi + scale / 2)))


def _ratio(f, q, scale, zp) -> float:
    return channel_ratio(f) if f.ndim >= 3 else float("nan")  # feature maps only, not (batch, classes)


def _channel_sqnr(f, q, scale, zp) -> float:
    return median_channel_sqnr(*channel_sums(f, _deq(q, scale, zp))) if f.ndim >= 3 else float("nan")


#: layer_direct_compare_metrics (float value, quantized value, scale, zero point) -> one number per sample; the
#: debugger averages them over the samples (equal sizes: the mean of the per-sample means is the overall mean)
_METRICS = {
    "ek_signal": lambda f, q, s, z: float(np.mean(np.square(f, dtype=np.float64))),
    "ek_noise": lambda f, q, s, z: float(np.mean(np.square(f.astype(np.float64) - _deq(q, s, z)))),
    "ek_p_lo": lambda f, q, s, z: float(np.percentile(f, 0.1)),
    "ek_p_hi": lambda f, q, s, z: float(np.percentile(f, 99.9)),
    "ek_clipped": _clipped,
    "ek_channel_ratio": _ratio,
    "ek_channel_sqnr": _channel_sqnr,
}

