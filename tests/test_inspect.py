"""inspect(): op histogram, dtypes, I/O quantization, weights vs graph size, and float-op warnings."""
from __future__ import annotations

import numpy as np
import pytest

from edgekit.errors import InvalidArgument, ModelLoadError


def net():
    from edgekit._keras import keras, layers

    inp = keras.Input((16, 16, 1), name="image")
    x = layers.Conv2D(32, 3, padding="same", name="c1")(inp)
    x = layers.ReLU(6.0)(x)
    x = layers.Conv2D(48, 3, strides=2, padding="same", name="c2")(x)
    x = layers.ReLU(6.0)(x)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, layers.Dense(5, activation="softmax", name="fc")(x), name="inspnet")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """float32 / dynamic / int8 .tflite and float32 / int8 / Conv-only-int8 .onnx of one small net."""
    from onnxruntime.quantization import QuantFormat, quantize_static

    from edgekit._keras import tf
    from edgekit.exporters.onnx import _Reader, to_onnx

    d = tmp_path_factory.mktemp("inspect")
    m = net()
    x = np.random.default_rng(0).random((16, 16, 16, 1), dtype=np.float32)
    out = {}
    for prec in ("none", "dynamic", "int8"):
        conv = tf.lite.TFLiteConverter.from_keras_model(m)
        if prec != "none":
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
        if prec == "int8":
            conv.representative_dataset = lambda: ([x[i:i + 1]] for i in range(len(x)))
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            conv.inference_input_type = conv.inference_output_type = tf.int8
        out[f"tflite_{prec}"] = d / f"{prec}.tflite"
        out[f"tflite_{prec}"].write_bytes(conv.convert())
    import onnx

    out["onnx_none"] = d / "float.onnx"
    onnx.save(to_onnx(m, 17), str(out["onnx_none"]))
    for name, kw in (("onnx_int8", {}), ("onnx_convonly", {"op_types_to_quantize": ["Conv"]})):
        out[name] = d / f"{name}.onnx"
        quantize_static(str(out["onnx_none"]), str(out[name]), _Reader("image", x, lambda *a: None),
                        quant_format=QuantFormat.QDQ, per_channel=True, **kw)
    return out


@pytest.mark.slow
def test_float_tflite(files):
    from edgekit.exporters import inspect

    rep = inspect(files["tflite_none"])
    assert rep.format == "tflite" and rep.precision == "float32"
    assert rep.ops["CONV_2D"] == 2 and rep.ops["FULLY_CONNECTED"] == 1
    assert rep.weights_bytes + rep.graph_bytes == rep.size_bytes == files["tflite_none"].stat().st_size
    params = 3 * 3 * 32 + 32 + 3 * 3 * 32 * 48 + 48 + 48 * 5 + 5
    # float32 weights (the converter drops the all-zero Dense bias) + an int32 shape constant
    assert (params - 5) * 4 <= rep.weights_bytes < params * 4 + 64
    assert rep.weight_dtypes["float32"] == (params - 5) * 4 and rep.weight_dtypes["int32"] == 8
    assert rep.inputs[0].dtype == "float32" and rep.inputs[0].scale is None
    assert not rep.warnings and not rep.float_ops


@pytest.mark.slow
def test_int8_tflite_reports_quantization_and_no_float_ops(files):
    from edgekit.exporters import inspect

    rep = inspect(files["tflite_int8"])
    assert rep.precision == "int8" and not rep.warnings and not rep.float_ops
    assert rep.inputs[0].dtype == "int8" and rep.inputs[0].scale > 0 and -128 <= rep.inputs[0].zero_point <= 127
    assert rep.outputs[0].dtype == "int8" and rep.outputs[0].scale == pytest.approx(1 / 256)
    assert "float32" not in rep.weight_dtypes
    assert rep.weights_bytes < inspect(files["tflite_none"]).weights_bytes / 3


@pytest.mark.slow
def test_dynamic_range_tflite_warns_about_float_ops(files):
    from edgekit.exporters import inspect

    rep = inspect(files["tflite_dynamic"])
    assert rep.precision == "dynamic"
    assert rep.float_ops and any("still run in float" in w for w in rep.warnings)


@pytest.mark.slow
def test_onnx_reports(files):
    from edgekit.exporters import inspect

    f = inspect(files["onnx_none"])
    q = inspect(files["onnx_int8"])
    assert f.format == q.format == "onnx" and f.precision == "float32" and q.precision == "int8"
    assert f.ops["Conv"] == 2 and "QuantizeLinear" in q.ops and "DequantizeLinear" in q.ops
    assert q.weight_dtypes.get("int8", 0) > 0 and not q.warnings
    # the input's QuantizeLinear sits behind tf2onnx's NHWC->NCHW Transpose: its scale is still the input's
    assert q.inputs[0].dtype == "float32" and q.inputs[0].via == "quantize" and q.inputs[0].scale > 0
    assert q.outputs[0].via == "dequantize" and q.outputs[0].scale > 0
    assert f.inputs[0].name == "image" and f.inputs[0].shape[1:] == [16, 16, 1]
    assert f.weights_bytes + f.graph_bytes == f.size_bytes


@pytest.mark.slow
def test_int8_onnx_with_float_matmul_warns(files):
    from edgekit.exporters import inspect

    rep = inspect(files["onnx_convonly"])
    assert rep.float_ops == {"MatMul": 1}
    assert any("still run in float" in w and "MatMul" in w for w in rep.warnings)


@pytest.mark.parametrize("suffix,content", [(".tflite", b"not a flatbuffer at all"), (".tflite", b""),
                                            (".onnx", b"\x08\x07garbage"), (".onnx", b"")])
def test_corrupt_files_raise_model_load_error(tmp_path, suffix, content):
    from edgekit.exporters import inspect

    bad = tmp_path / f"bad{suffix}"
    bad.write_bytes(content)
    with pytest.raises(ModelLoadError) as info:
        inspect(bad)
    assert info.value.exit_code == 2


def test_missing_or_unknown_files(tmp_path):
    from edgekit.exporters import inspect

    with pytest.raises(InvalidArgument, match="not a file"):
        inspect(tmp_path / "nope.tflite")
    (tmp_path / "model.pb").write_bytes(b"x")
    with pytest.raises(InvalidArgument, match="unknown file type"):
        inspect(tmp_path / "model.pb")


# ------------------------------------------------------------------------------ files the local runtime cannot run
def test_custom_op_file_is_read_from_its_flatbuffer(tmp_path):
    """MediaPipe-style file (custom ops LiteRT lacks): inspect used to crash loading it into an interpreter."""
    from tflite_files import mediapipe_like

    from edgekit.exporters import inspect

    f = tmp_path / "selfie.tflite"
    f.write_bytes(mediapipe_like())
    rep = inspect(f)
    assert rep.ops == {"ADD": 1, "Convolution2DTransposeBias": 1, "Landmarks2TransformMatrix": 1}
    assert rep.custom_ops == {"Convolution2DTransposeBias": 1, "Landmarks2TransformMatrix": 1}
    assert rep.missing_ops == ["Convolution2DTransposeBias", "Landmarks2TransformMatrix"]
    assert any("Convolution2DTransposeBias, Landmarks2TransformMatrix are not in the local LiteRT" in w
               for w in rep.warnings)
    assert rep.details["tensors"] == 6 and rep.tensor_dtypes == {"float32": 6}  # the file's tensors
    assert rep.weights_bytes == (3 + 48) * 4 and rep.weight_dtypes == {"float32": 204}
    assert rep.precision == "float32" and rep.weights_bytes + rep.graph_bytes == f.stat().st_size
    assert [(t.name, t.key, t.shape) for t in rep.inputs] == [("image", "image", [1, 8, 8, 3])]
    assert [(t.name, t.key, t.shape) for t in rep.outputs] == [("upsampled", "mask", [1, 16, 16, 4]),
                                                               ("matrix", "transform", [1, 4, 4])]


def test_runtime_names_every_missing_custom_op(tmp_path):
    from tflite_files import mediapipe_like

    from edgekit.runtimes import load

    f = tmp_path / "selfie.tflite"
    f.write_bytes(mediapipe_like())
    with pytest.raises(ModelLoadError, match="needs custom ops Convolution2DTransposeBias, "
                                             "Landmarks2TransformMatrix, which this runtime does not have") as info:
        load(f)
    assert "edgekit inspect" in info.value.hint


def test_truncated_flatbuffer_is_a_model_load_error(tmp_path):
    from tflite_files import mediapipe_like

    from edgekit.exporters import inspect

    data = mediapipe_like()
    for cut in (12, 200, len(data) // 2):
        f = tmp_path / f"cut{cut}.tflite"
        f.write_bytes(data[:cut])
        with pytest.raises(ModelLoadError, match="damaged TFLite flatbuffer|not a TFLite flatbuffer"):
            inspect(f)


@pytest.mark.slow
def test_converter_custom_ops_and_an_edited_mediapipe_op(files, tmp_path):
    """Custom ops made two ways: the converter with allow_custom_ops (Erfinv, BesselI0e have no builtin) and a
    converted file whose CONV_2D ops are renamed to MediaPipe's Convolution2DTransposeBias."""
    from tflite_files import rename_op

    from edgekit._keras import tf
    from edgekit.exporters import inspect
    from edgekit.runtimes import load

    @tf.function(input_signature=[tf.TensorSpec([1, 8], tf.float32)])
    def f(x):
        return tf.math.bessel_i0e(x) + tf.math.erfinv(tf.tanh(x))

    conv = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f)
    conv.allow_custom_ops = True
    a = tmp_path / "special.tflite"
    a.write_bytes(conv.convert())
    rep = inspect(a)
    assert rep.custom_ops == {"BesselI0e": 1, "Erfinv": 1} and rep.missing_ops == ["BesselI0e", "Erfinv"]
    with pytest.raises(ModelLoadError, match="custom ops BesselI0e, Erfinv"):
        load(a)
    b = tmp_path / "edited.tflite"
    b.write_bytes(rename_op(files["tflite_int8"].read_bytes(), "CONV_2D", "Convolution2DTransposeBias"))
    rep, orig = inspect(b), inspect(files["tflite_int8"])
    assert rep.ops["Convolution2DTransposeBias"] == 2 and "CONV_2D" not in rep.ops
    assert rep.missing_ops == ["Convolution2DTransposeBias"] and rep.precision == "int8"
    assert rep.weights_bytes == orig.weights_bytes and rep.inputs == orig.inputs
    assert rep.details["tensors"] == orig.details["tensors"]


@pytest.mark.slow
def test_float16_weights_are_labelled_float32_compute(tmp_path):
    from edgekit._keras import tf
    from edgekit.exporters import inspect

    conv = tf.lite.TFLiteConverter.from_keras_model(net())
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.target_spec.supported_types = [tf.float16]
    f = tmp_path / "half.tflite"
    f.write_bytes(conv.convert())
    rep = inspect(f)
    assert rep.precision == "float16" and rep.cpu_compute == "float32"
    assert any("compute in float32" in n for n in rep.notes) and rep.ops["DEQUANTIZE"] >= 3
    from click.testing import CliRunner

    from edgekit.cli import main

    res = CliRunner().invoke(main, ["inspect", str(f)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    head = " ".join(res.stdout.split("inputs / outputs")[0].split())
    assert "tflite, float16 weights, computes in float32 on CPU," in head, head
    assert head.count("computes in") == 1


# ------------------------------------------------------------------------------ issue 18: hostile flatbuffers
def _add_model(inputs=(0,), outputs=(2,), op_inputs=(0, 1), sig_input=0, op="ADD"):
    from tflite_files import build

    tensors = [("image", [1, 4, 4, 3], "float32", None), ("bias", [3], "float32", np.arange(3, dtype=np.float32)),
               ("out", [1, 4, 4, 3], "float32", None)]
    return build([(op, list(op_inputs), [2])], tensors, list(inputs), list(outputs),
                 signature=({"image": sig_input}, {"out": 2}))


@pytest.mark.parametrize("kw,match", [
    ({"inputs": [99]}, "subgraph 0 input names tensor 99"), ({"outputs": [-5]}, "subgraph 0 output names tensor -5"),
    ({"op_inputs": [0, 7]}, r"operator 0 \(ADD\) input names tensor 7"),
    ({"sig_input": 42}, "signature 'serving_default' names tensor 42"),
])
def test_tensor_index_out_of_range_is_a_model_load_error(tmp_path, kw, match):
    """Issue 18: a subgraph input index out of range was an IndexError (`internal error:`, exit 1)."""
    from click.testing import CliRunner

    from edgekit.cli import main

    f = tmp_path / "bad.tflite"
    f.write_bytes(_add_model(**kw))
    r = CliRunner().invoke(main, ["inspect", str(f)])
    assert r.exit_code == 2 and "damaged TFLite flatbuffer" in r.stderr and "hint:" in r.stderr, r.output
    from edgekit.exporters import inspect

    with pytest.raises(ModelLoadError, match=match):
        inspect(f)


def test_mutated_flatbuffers_never_crash_inspect(tmp_path, monkeypatch):
    """A few hundred random byte mutations of a valid file: each is read, or refused as a ModelLoadError (the
    custom-op probe, a child process per file, is not what this tests)."""
    import random

    from edgekit import _tflite

    monkeypatch.setattr(_tflite, "missing_custom_ops", lambda names: list(names))

    from tflite_files import mediapipe_like

    from edgekit.errors import EdgekitError
    from edgekit.exporters import inspect

    base, rng, f = mediapipe_like(), random.Random(18), tmp_path / "m.tflite"
    for _ in range(300):
        data = bytearray(base)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(8, len(data))] = rng.randrange(256)
        f.write_bytes(bytes(data))
        try:
            inspect(f)
        except EdgekitError as exc:
            assert isinstance(exc, ModelLoadError), exc


def test_custom_op_names_with_control_bytes_are_probed_and_escaped(tmp_path):
    """Names are data: one with NUL (it crashed the probe's argv) or a leading dash is probed, and one with escape
    sequences reaches the terminal escaped."""
    from click.testing import CliRunner

    from edgekit._tflite import missing_custom_ops
    from edgekit.cli import main

    assert missing_custom_ops(["Nul\x00Op", "--help", "Esc\x1b[2J"]) == ["Nul\x00Op", "--help", "Esc\x1b[2J"]
    f = tmp_path / "esc.tflite"
    f.write_bytes(_add_model(op="custom:Op\x1b]0;pwned\x07\x1b[2J"))
    r = CliRunner().invoke(main, ["inspect", str(f)])
    assert r.exit_code == 0, r.output
    assert "\x1b]0" not in r.output and "\x07" not in r.output and "Op\\x1b]0;pwned\\x07\\x1b[2J" in r.output
    table = [line for line in r.output.splitlines() if "pwned" in line][0]
    assert table.startswith("│ Op") and table.endswith("│ 1     │")


def test_mutated_onnx_files_never_crash_inspect(tmp_path):
    """The same for .onnx: a damaged byte inside a name made the checker raise UnicodeDecodeError (internal)."""
    import random

    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    from edgekit.errors import EdgekitError
    from edgekit.exporters import inspect

    vi = helper.make_tensor_value_info
    g = helper.make_graph([helper.make_node("Add", ["x", "b"], ["y"]), helper.make_node("Relu", ["y"], ["z"])], "g",
                          [vi("x", TensorProto.FLOAT, [1, 3])], [vi("z", TensorProto.FLOAT, [1, 3])],
                          [numpy_helper.from_array(np.arange(3, dtype=np.float32), "b")])
    base = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString()
    rng, f = random.Random(1), tmp_path / "m.onnx"
    for _ in range(300):
        data = bytearray(base)
        for _ in range(rng.randint(1, 3)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        f.write_bytes(bytes(data))
        try:
            inspect(f)
        except EdgekitError as exc:
            assert isinstance(exc, ModelLoadError), exc
    assert onnx.load_from_string(base).graph.name == "g"
