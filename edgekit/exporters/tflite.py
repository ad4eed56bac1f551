"""TFLite export with the TF converter (``tf.lite.TFLiteConverter.from_keras_model``).

float32; float16 weights; dynamic range (int8 weights); full integer int8 (representative dataset,
``TFLITE_BUILTINS_INT8``, float/int8/uint8 I/O); int16x8 (``EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_
WEIGHTS_INT8``). ``per_tensor`` sets the converter's ``_experimental_disable_per_channel``. QAT-annotated models
(tfmot ``quantize_apply``) convert with ``Optimize.DEFAULT``: their ranges come from training. ``float_layers``
(int8) calibrates once in the converter's calibrate-only mode, then quantizes with the MLIR quantizer's
``denylisted_nodes`` (what ``tf.lite.experimental.QuantizationDebugger`` does) so those layers' ops stay float.
"""
from __future__ import annotations

import contextlib
import shutil
import tempfile
import warnings
import weakref
from pathlib import Path
from typing import Any

import numpy as np

from .. import _keras3
from ..errors import ExportError, map_errors
from ._float_layers import keras_layer_names, layers_in, nodes_for
from .base import FORMATS, Exporter, ExportSpec, register_exporter
from .calibration import input_names


class TFLiteExporter(Exporter):
    # the format's data: its row of the format table (edgekit.specs.formats)
    name = "tflite"
    _row = FORMATS.get(name)
    suffix, runtime, precisions, io_types = _row.suffix, _row.runtime, _row.precisions, _row.io_types
    per_tensor, qat, calibration_methods = _row.per_tensor, _row.qat, _row.calibration_methods

    def convert(self, model, spec: ExportSpec, calib_xs, dest: Path, progress) -> dict[str, Any]:
        progress(f"converting tflite {spec.precision.name}", 0, None)
        facts: dict[str, Any] = {}
        conv = _converter(model, spec, calib_xs, progress)
        if spec.float_layers:
            conv._experimental_calibrate_only = True
            calibrated = _run(conv, spec, ", calibration")
            nodes = nodes_for(spec.float_layers, quantizable_nodes(calibrated, keras_layer_names(model)), "tflite")
            facts["float_nodes"] = [n for ns in nodes.values() for n in ns]
            facts["float_layer_nodes"] = nodes
            data = quantize_calibrated(calibrated, spec, facts["float_nodes"])
            facts["quantizer"] = "calibrate-only conversion + mlir_quantize(denylisted_nodes)"
        else:
            data = _run(conv, spec)
        dest.write_bytes(data)
        progress(f"converting tflite {spec.precision.name}", 1, 1)
        return {"converter": _SOURCES[_keras3.is_model(model)],
                "supported_ops": [str(o).split(".")[-1] for o in conv.target_spec.supported_ops], **facts}


def _io_dtype(spec: ExportSpec):
    from .._keras import tf

    return {"float": tf.float32, "int8": tf.int8, "uint8": tf.uint8, "int16": tf.int16}[spec.io]


def _converter(model, spec: ExportSpec, calib_xs, progress):
    """The TF converter set up for ``spec`` (not run yet); ``calib_xs``: one array per model input (or one array)."""
    from .._keras import tf

    conv = _source(model, spec.batch or 1)
    q = spec.precision.name
    if q != "float32":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    if q == "float16":
        conv.target_spec.supported_types = [tf.float16]
    if calib_xs is not None and q in ("int8", "int16x8"):
        conv.representative_dataset = _representative(calib_xs, input_names(model), progress)
    if q == "int8" and not spec.qat:
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if q == "int16x8":
        conv.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    if spec.io != "float":
        conv.inference_input_type = _io_dtype(spec)
        conv.inference_output_type = _io_dtype(spec)
    if spec.per_tensor:
        conv._experimental_disable_per_channel = True  # documented private switch of the TF converter
    return conv


#: how the converter reads a tf-keras (False) / Keras 3 (True) model
_SOURCES = {False: "tf.function (fixed batch) -> tf.lite.TFLiteConverter.from_concrete_functions",
            True: "keras 3 ExportArchive -> tf.lite.TFLiteConverter.from_saved_model"}


def _source(model, batch: int = 1):
    """A bare converter for a model whose inputs take ``batch`` samples (a fixed batch: no SHAPE/STRIDED_SLICE/PACK
    ops computing it at run time, and static shapes for GPU/NPU delegates). A tf-keras model is traced as a
    ``tf.function`` taking its inputs by their Keras names and returning its outputs keyed by their Keras names (the
    SignatureDef names ``from_keras_model`` gives); a Keras 3 model goes through its own export path (a SavedModel
    written by ``edgekit._keras3.export_saved_model``, removed with the converter)."""
    from .._keras import tf

    if not _keras3.is_model(model):
        specs = [tf.TensorSpec((batch, *t.shape[1:]), t.dtype, name=n)
                 for t, n in zip(model.inputs, input_names(model))]
        out_names = [str(n) for n in getattr(model, "output_names", None) or [t.name for t in model.outputs]]

        def serve(*xs):
            ys = model(list(xs) if len(xs) > 1 else xs[0], training=False)
            ys = ys if isinstance(ys, (list, tuple)) else [ys]
            return dict(zip(out_names, ys))

        fn = tf.function(serve, input_signature=specs).get_concrete_function()
        return tf.lite.TFLiteConverter.from_concrete_functions([fn], _variables_holder(tf, model, fn))
    tmp = tempfile.mkdtemp(prefix="edgekit-keras3-")
    conv = tf.lite.TFLiteConverter.from_saved_model(
        _keras3.export_saved_model(model, str(Path(tmp) / "saved_model"), batch=batch))
    weakref.finalize(conv, shutil.rmtree, tmp, True)
    return conv


def _variables_holder(tf, model, fn):
    """What the converter saves as an intermediate SavedModel with ``fn`` as its signature: a bare ``tf.Module``
    holding the model's variables when they are all ``fn`` captures (the converted bytes are the same), else the
    Keras model itself. Saving a tf-keras model serialises every layer's traced calls: 15-25 s of a MobileNet's
    export, against 1-2 s for the holder."""
    variables = list(model.variables)
    handles = {id(v.handle) for v in variables}
    if not all(id(t) in handles for t in fn.captured_inputs):   # a lookup table, a custom op's resource, ...
        return model
    holder = tf.Module(name="edgekit_variables")
    holder.model_variables = variables
    return holder


@contextlib.contextmanager
def _converter_errors(message: str, hint: str):
    """The converter's own failures (and TF's errors while it traces and calibrates the model) as ExportError;
    the same types raised by edgekit's code (e.g. the representative dataset) are bugs and surface as such."""
    from tensorflow.lite.python.convert_phase import ConverterError

    from .._keras import tf

    with map_errors({ConverterError: ExportError, tf.errors.OpError: ExportError}, message, hint=hint), \
            map_errors({ValueError: ExportError, RuntimeError: ExportError, NotImplementedError: ExportError},
                       message, hint=hint, origin=("tensorflow", "tf_keras", "keras")):
        yield


def _run(conv, spec: ExportSpec, what: str = "") -> bytes:
    from .._keras import quiet_native_logs

    with _converter_errors(f"the TFLite converter failed ({spec.precision.name}{what})",
                           hint="rerun with --debug (or EDGEKIT_TF_LOGS=1) for the converter's log; unsupported "
                                "layers need a different precision or model"):
        with warnings.catch_warnings(), quiet_native_logs():  # MLIR's C++ log lines go to fd 2 directly
            warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
            return conv.convert()


def calibrate(model, spec: ExportSpec, calib_xs, progress) -> bytes:
    """The float model with calibration statistics (the converter's calibrate-only mode): quantize it with
    :func:`quantize_calibrated` as often as needed without calibrating again."""
    conv = _converter(model, spec, calib_xs, progress)
    conv._experimental_calibrate_only = True  # the switch QuantizationDebugger uses
    return _run(conv, spec, ", calibration")


def quantize_calibrated(calibrated: bytes, spec: ExportSpec, denylisted_nodes=(), *,
                        numeric_verify: bool = False) -> bytes:
    """Full-integer int8 from a calibrated model, the ops whose output tensors are ``denylisted_nodes`` kept float.

    The converter's own int8 path (MLIR quantizer, then read-only buffer de-duplication); ``numeric_verify`` adds
    the NumericVerify ops ``tf.lite.experimental.QuantizationDebugger`` reads.
    """
    from .._keras import quiet_native_logs
    from tensorflow.lite.python import convert, lite

    with _converter_errors("the TFLite quantizer failed (int8 with float layers)",
                           hint="rerun with --debug (or EDGEKIT_TF_LOGS=1) for the quantizer's log"):
        with warnings.catch_warnings(), quiet_native_logs():
            warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
            data = convert.mlir_quantize(calibrated, disable_per_channel=spec.per_tensor,
                                         input_data_type=_io_dtype(spec), output_data_type=_io_dtype(spec),
                                         enable_numeric_verify=numeric_verify,
                                         denylisted_nodes=list(denylisted_nodes) or None)
            return data if numeric_verify else lite._deduplicate_readonly_buffers(data)


def quantizable_nodes(calibrated: bytes, known_layers) -> dict[str, list[str]]:
    """``{output tensor name: [Keras layers]}`` of every op of a calibrated model that computes float values."""
    from tensorflow.lite.tools import flatbuffer_utils

    known = set(known_layers)
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(calibrated))
    graph = model.subgraphs[0]
    out: dict[str, list[str]] = {}
    for op in graph.operators:
        for i in op.outputs:
            t = graph.tensors[i]
            name = t.name.decode() if isinstance(t.name, bytes) else str(t.name)
            if t.type == 0 and layers_in(name, known):  # TensorType.FLOAT32
                out[name] = layers_in(name, known)
    return out


def _representative(xs, names: list[str], progress):
    """Calibration samples one at a time. Several inputs go by name: the converted model orders its inputs by
    SignatureDef name (sorted), not in Keras order, and the calibrator matches a dict by those names."""
    xs = [xs] if isinstance(xs, np.ndarray) else list(xs)
    n = len(xs[0])

    def gen():
        for i in range(n):
            progress("calibrating tflite", i + 1, n)
            batch = [x[i:i + 1].astype(np.float32) for x in xs]
            yield batch if len(batch) == 1 else dict(zip(names, batch))

    return gen


register_exporter(TFLiteExporter, aliases=("tfl", "litert"))
