"""ONNX export with tf2onnx (opset 17 by default), quantized with ``onnxruntime.quantization``.

float32: tf2onnx as is. fp16: ``onnxruntime.transformers.float16.convert_float_to_float16`` with float32 I/O
kept. dynamic: ``quantize_dynamic`` (int8 weights). int8: QDQ, per-channel weights (per-tensor with
``per_tensor``), static ``quantize_static`` calibrated by a ``CalibrationDataReader`` fed the same samples as the
TFLite converter, after ``quant_pre_process`` (ONNX shape inference and graph optimisation). ``calibration_method``
picks onnxruntime's MinMax (default), Entropy or Percentile calibration (:data:`HISTOGRAM_OPTIONS`); ``float_layers``
become ``nodes_to_exclude``.
"""
from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ExportError, MissingDependency, map_errors
from ._float_layers import keras_layer_names, layers_in, nodes_for
from .base import FORMATS, Exporter, ExportSpec, register_exporter
from .calibration import input_names
from .. import _keras3
from ..runtimes import import_onnxruntime


def _require():
    try:
        import onnx  # noqa: F401
        import tf2onnx  # noqa: F401

        import_onnxruntime()  # the first import, with telemetry off (onnxruntime.quantization imports it too)
    except ImportError as exc:
        raise MissingDependency(getattr(exc, "name", None) or "tf2onnx", "onnx", purpose="to export ONNX") from exc


def _foreign_errors(message: str, hint: str | None = None):
    """Errors raised by tf2onnx, onnx, onnxruntime(.quantization) or TF while converting, as ExportError; the same
    types raised by edgekit's own code are bugs and are not translated."""
    import onnx
    from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

    mapping = {t: ExportError for t in (ValueError, RuntimeError, NotImplementedError, AssertionError, KeyError,
                                        onnx.checker.ValidationError, onnx.shape_inference.InferenceError,
                                        ort_errors.Fail, ort_errors.InvalidArgument, ort_errors.InvalidGraph,
                                        ort_errors.RuntimeException, ort_errors.NotImplemented)}
    return map_errors(mapping, message, hint=hint, origin=("tf2onnx", "onnx", "onnxruntime", "tensorflow", "tf_keras", "keras"))


class OnnxExporter(Exporter):
    # the format's data: its row of the format table (edgekit.specs.formats)
    name = "onnx"
    _row = FORMATS.get(name)
    suffix, runtime, precisions, io_types = _row.suffix, _row.runtime, _row.precisions, _row.io_types
    per_tensor, qat, calibration_methods = _row.per_tensor, _row.qat, _row.calibration_methods

    def convert(self, model, spec: ExportSpec, calib_xs, dest: Path, progress) -> dict[str, Any]:
        _require()
        import onnx

        label = spec.precision.name
        progress(f"converting onnx {label}", 0, None)
        proto = to_onnx(model, spec.opset_or_default)

        how = ("keras 3 ExportArchive -> tf2onnx.convert.from_graph_def" if _keras3.is_model(model)
               else "tf2onnx.convert.from_keras")
        facts: dict[str, Any] = {"converter": how, "opset": spec.opset_or_default}
        q = spec.precision.name
        if q == "float32":
            onnx.save(proto, str(dest))
        elif q == "float16":
            from onnxruntime.transformers.float16 import convert_float_to_float16

            with _foreign_errors("float16 ONNX conversion failed"):
                half = convert_float_to_float16(proto, keep_io_types=True)
                _toposort(half.graph)
                onnx.checker.check_model(half)
                onnx.save(half, str(dest))
            facts["quantizer"] = "onnxruntime.transformers.float16.convert_float_to_float16(keep_io_types=True)"
        else:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            with tempfile.TemporaryDirectory(prefix="edgekit-onnx-") as tmp:
                pre = prepare(proto, Path(tmp))
                if q == "dynamic":
                    with _foreign_errors(f"onnxruntime quantization failed ({label})"), _quiet_root_logger():
                        quantize_dynamic(str(pre), str(dest), weight_type=QuantType.QInt8)
                    facts["quantizer"] = "onnxruntime.quantization.quantize_dynamic(weight_type=QInt8)"
                else:
                    reader = _Reader(input_names(model), calib_xs, progress)
                    facts.update(quantize_int8(pre, spec, dest, Path(tmp) / "ranges.json", reader,
                                               known_layers=keras_layer_names(model)))
        progress(f"converting onnx {label}", 1, 1)
        return facts


def prepare(proto, folder: Path) -> Path:
    """Save the float model in ``folder`` and run ``quant_pre_process`` (shape inference, graph optimisation)."""
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    raw, pre = folder / "float.onnx", folder / "pre.onnx"
    onnx.save(proto, str(raw))
    with _foreign_errors("onnxruntime quantization pre-processing failed"), _quiet_root_logger():
        quant_pre_process(str(raw), str(pre), skip_symbolic_shape=True)
    return pre


def quantizable_nodes(pre: Path, known_layers) -> dict[str, list[str]]:
    """``{node name: [Keras layers]}`` of every node of the pre-processed float model that names a Keras layer."""
    import onnx

    known = set(known_layers)
    return {n.name: layers_in(n.name, known) for n in onnx.load(str(pre)).graph.node if layers_in(n.name, known)}


def quantize_int8(pre: Path, spec: ExportSpec, dest: Path, ranges: Path, reader=None, *,
                  known_layers=()) -> dict[str, Any]:
    """QDQ int8 of the pre-processed model ``pre`` into ``dest``; returns the manifest facts.

    Activation ranges come from ``ranges`` (onnxruntime's calibration cache) when that file exists, else from
    calibrating on ``reader`` with ``spec.calibration_method`` (the cache is then written, so later calls with other
    ``float_layers`` reuse the same ranges). ``spec.float_layers`` become ``nodes_to_exclude``.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[spec.calibration_method]
    # BatchNormalization that tf2onnx could not fold into a Conv has no integer kernel in onnxruntime: keep its
    # parameters float instead of int8-quantizing mean/variance
    unfolded = [n.name for n in onnx.load(str(pre)).graph.node if n.op_type == "BatchNormalization"]
    layer_nodes = nodes_for(spec.float_layers, quantizable_nodes(pre, known_layers), "onnx") if spec.float_layers \
        else {}
    exclude = unfolded + [n for ns in layer_nodes.values() for n in ns if n not in unfolded]
    if spec.calibration_method != "minmax" and not ranges.is_file():
        _calibrate_histogram(pre, spec.calibration_method, reader, ranges)
    with _foreign_errors(f"onnxruntime quantization failed ({spec.precision.name})"), \
            _quiet_root_logger(), contextlib.redirect_stdout(io.StringIO()):  # entropy calibration print()s
        quantize_static(str(pre), str(dest), None if ranges.is_file() else reader, quant_format=QuantFormat.QDQ,
                        per_channel=not spec.per_tensor, activation_type=QuantType.QInt8,
                        weight_type=QuantType.QInt8, nodes_to_exclude=exclude, calibrate_method=method,
                        calibration_cache_path=str(ranges))
    facts: dict[str, Any] = {"float_nodes": exclude,
                             "quantizer": ("onnxruntime.quantization.quantize_static(QDQ, QInt8/QInt8, "
                                           f"per_channel={not spec.per_tensor}, {method.name})")}
    if layer_nodes:
        facts["float_layer_nodes"] = layer_nodes
    return facts


#: histogram calibration settings. onnxruntime's Entropy default (128 bins for 128 quantized bins) leaves one
#: candidate threshold, the max: MinMax in disguise. TensorRT's 2048 bins make the KL search real; ranges stay
#: asymmetric (ReLU outputs would lose half the int8 levels to a symmetric range).
HISTOGRAM_OPTIONS = {"entropy": {"num_bins": 2048, "num_quantized_bins": 128, "symmetric": False},
                     "percentile": {"num_bins": 2048, "percentile": 99.999, "symmetric": False}}


def _calibrate_histogram(pre: Path, method: str, reader, ranges: Path) -> None:
    """Entropy/Percentile activation ranges of ``pre`` into onnxruntime's calibration cache ``ranges``."""
    from onnxruntime.quantization import CalibrationMethod, create_calibrator
    from onnxruntime.quantization.calibrate import save_tensors_data
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    with _foreign_errors(f"onnxruntime {method} calibration failed"), _quiet_root_logger(), \
            contextlib.redirect_stdout(io.StringIO()), tempfile.TemporaryDirectory(prefix="edgekit-calib-") as tmp:
        calibrator = create_calibrator(pre, sorted(set(QLinearOpsRegistry) | set(QDQRegistry)),
                                       augmented_model_path=str(Path(tmp) / "augmented.onnx"),
                                       calibrate_method={"entropy": CalibrationMethod.Entropy,
                                                         "percentile": CalibrationMethod.Percentile}[method],
                                       extra_options=dict(HISTOGRAM_OPTIONS[method]))
        calibrator.collect_data(reader)
        save_tensors_data(calibrator.compute_data(), ranges)


@contextlib.contextmanager
def _quiet_root_logger(threshold: int = logging.ERROR):
    """onnxruntime.quantization logs advice and per-weight notes on the root logger; keep it to errors meanwhile."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(threshold)
    try:
        yield
    finally:
        root.setLevel(level)


def _toposort(graph) -> None:
    """Sort ``graph.node`` topologically in place (the float16 converter appends its I/O casts at the end)."""
    known = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [n for n in pending if all(i in known for i in n.input)]
        if not ready:
            raise ExportError("float16 ONNX graph has a cycle or a dangling input")
        for n in ready:
            known.update(n.output)
        ordered.extend(ready)
        pending = [n for n in pending if not any(n is r for r in ready)]
    del graph.node[:]
    graph.node.extend(ordered)


def to_onnx(model, opset: int):
    """A keras.Model -> float32 ONNX ModelProto (dynamic batch)."""
    _require()
    import tf2onnx

    from .._keras import tf

    if _keras3.is_model(model):
        proto = _keras3_to_onnx(model, opset)
        fold_reshaped_batchnorm(proto.graph)
        return proto
    sig = tuple(tf.TensorSpec((None, *t.shape[1:]), tf.float32, name=name)
                for t, name in zip(model.inputs, input_names(model)))  # ONNX inputs named like the Keras inputs
    with _foreign_errors(f"tf2onnx failed (opset {opset})", hint="try another --opset, or the tflite format"):
        proto, _ = tf2onnx.convert.from_keras(model, input_signature=sig, opset=opset)
    fold_reshaped_batchnorm(proto.graph)
    return proto


def _keras3_to_onnx(model, opset: int):
    """A Keras 3 model -> ONNX through the SavedModel of its own export path; I/O named like the Keras model."""
    import tf2onnx
    from tf2onnx import tf_loader

    with tempfile.TemporaryDirectory(prefix="edgekit-keras3-") as tmp, \
            _foreign_errors(f"tf2onnx failed (opset {opset})", hint="try another --opset, or the tflite format"):
        saved = _keras3.export_saved_model(model, str(Path(tmp) / "saved_model"))
        graph_def, inputs, outputs, renames = tf_loader.from_saved_model(
            saved, None, None, "serve", ["serving_default"], return_tensors_to_rename=True)
        proto, _ = tf2onnx.convert.from_graph_def(graph_def, name=model.name, input_names=inputs,
                                                  output_names=outputs, opset=opset, tensors_to_rename=renames)
    return proto


def fold_reshaped_batchnorm(graph) -> int:
    """Fold ``BatchNormalization(Reshape(Conv(x), [-1, C, 1, 1]))`` into the Conv; returns how many were folded.

    tf2onnx emits this pattern for BatchNormalization on 1x1 feature maps (MobileNet's last blocks at small
    resolutions) and leaves the BN unfused; onnxruntime has no integer BN kernel, so it would stay float in int8.
    """
    from onnx import numpy_helper

    init = {t.name: t for t in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    uses: dict[str, int] = {}
    for n in graph.node:
        for i in n.input:
            uses[i] = uses.get(i, 0) + 1
    graph_outputs = {o.name for o in graph.output}
    folded, dead = 0, []
    for bn in list(graph.node):
        if bn.op_type != "BatchNormalization" or len(bn.output) != 1 or len(bn.input) != 5:
            continue
        rs = producer.get(bn.input[0])
        conv = producer.get(rs.input[0]) if rs is not None and rs.op_type == "Reshape" else None
        if conv is None or conv.op_type != "Conv" or uses.get(conv.output[0]) != 1 or uses.get(rs.output[0]) != 1:
            continue
        if not all(i in init for i in list(bn.input[1:]) + [rs.input[1], conv.input[1]] + list(conv.input[2:])):
            continue
        shape = numpy_helper.to_array(init[rs.input[1]])
        w = numpy_helper.to_array(init[conv.input[1]]).astype(np.float64)
        gamma, beta, mean, var = (numpy_helper.to_array(init[i]).astype(np.float64) for i in bn.input[1:])
        c = w.shape[0]
        if shape.ndim != 1 or len(shape) < 2 or int(shape[1]) != c or any(int(d) != 1 for d in shape[2:]) \
                or gamma.shape != (c,):
            continue
        eps = next((a.f for a in bn.attribute if a.name == "epsilon"), 1e-5)
        k = gamma / np.sqrt(var + eps)
        b = numpy_helper.to_array(init[conv.input[2]]).astype(np.float64) if len(conv.input) > 2 else np.zeros(c)
        w_name, b_name = f"{conv.name}/folded_bn/W", f"{conv.name}/folded_bn/B"
        graph.initializer.extend([
            numpy_helper.from_array((w * k.reshape(-1, *[1] * (w.ndim - 1))).astype(np.float32), w_name),
            numpy_helper.from_array(((b - mean) * k + beta).astype(np.float32), b_name)])
        del conv.input[1:]
        conv.input.extend([w_name, b_name])
        if bn.output[0] in graph_outputs:  # keep the graph output's name on the Reshape
            rs.output[0] = bn.output[0]
        else:
            for n in graph.node:
                for j, i in enumerate(n.input):
                    if i == bn.output[0]:
                        n.input[j] = rs.output[0]
        dead.append(bn)
        folded += 1
    for bn in dead:
        graph.node.remove(bn)
    used = {i for n in graph.node for i in n.input}
    keep = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    return folded


def _Reader(input_names, xs, progress):
    """A CalibrationDataReader feeding the calibration samples one at a time (batch 1, like TFLite's), every
    input by its name. ``input_names``/``xs``: a name and an array, or one of each per model input."""
    from onnxruntime.quantization import CalibrationDataReader

    names = [input_names] if isinstance(input_names, str) else list(input_names)
    arrays = [xs] if isinstance(xs, np.ndarray) else list(xs)
    n = len(arrays[0])

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.i = 0

        def get_next(self):
            if self.i >= n:
                return None
            self.i += 1
            progress("calibrating onnx", self.i, n)
            return {name: x[self.i - 1:self.i].astype(np.float32) for name, x in zip(names, arrays)}

        def rewind(self):
            self.i = 0

    return Reader()


register_exporter(OnnxExporter)
