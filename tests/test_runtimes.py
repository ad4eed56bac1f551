"""Host runtimes: every entry of RUNTIMES loads an artifact, reports I/O and reproduces Keras."""
from __future__ import annotations

import sys

import numpy as np
import pytest

from edgekit.errors import InvalidArgument, MissingDependency, ModelLoadError, UnknownNameError
from edgekit.runtimes import RUNTIMES, TensorInfo, dequantize, load, quantize, runtime_for


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """{runtime name: float32 artifact} of one small Keras model, plus the model."""
    import onnx

    from edgekit._keras import keras, layers, tf
    from edgekit.exporters.onnx import to_onnx

    inp = keras.Input((8, 8, 2), name="x")
    y = layers.Conv2D(4, 3, padding="same")(inp)
    m = keras.Model(inp, layers.Dense(3)(layers.Flatten()(y)), name="rt")
    d = tmp_path_factory.mktemp("rt")
    (d / "rt.tflite").write_bytes(tf.lite.TFLiteConverter.from_keras_model(m).convert())
    onnx.save(to_onnx(m, 17), str(d / "rt.onnx"))
    return m, {runtime_for(p): p for p in (d / "rt.tflite", d / "rt.onnx")}


def test_every_runtime_has_an_artifact_type():
    suffixes = [e.meta["suffix"] for e in RUNTIMES.entries()]
    assert sorted(suffixes) == [".onnx", ".tflite"] and len(set(suffixes)) == len(suffixes)


@pytest.mark.slow
@pytest.mark.parametrize("name", RUNTIMES.list())
def test_runtime_reproduces_keras(artifacts, name):
    model, paths = artifacts
    sess = load(paths[name], threads=1)
    assert sess.name == name and sess.version not in ("", "unknown")
    assert len(sess.inputs) == 1 and sess.inputs[0].shape[1:] == [8, 8, 2] and sess.inputs[0].dtype == "float32"
    assert sess.outputs[0].shape[-1] == 3 and not sess.inputs[0].quantized
    x = np.random.default_rng(1).standard_normal((5, 8, 8, 2)).astype(np.float32)
    for batch in (x[:1], x):  # batch 1 and a resized batch
        (y,) = sess.run(batch)
        np.testing.assert_allclose(y, model(batch).numpy(), atol=1e-5)
    with pytest.raises(InvalidArgument, match="takes 1 inputs"):
        sess.run([x, x])


@pytest.mark.parametrize("name", RUNTIMES.list())
def test_runtime_rejects_corrupt_files(tmp_path, name):
    bad = tmp_path / f"bad{RUNTIMES.entry(name).meta['suffix']}"
    bad.write_bytes(b"definitely not a model")
    with pytest.raises(ModelLoadError):
        load(bad)
    with pytest.raises(InvalidArgument, match="does not exist"):
        load(tmp_path / f"missing{RUNTIMES.entry(name).meta['suffix']}")


@pytest.mark.parametrize("name,module", [("onnxruntime", "onnxruntime"), ("litert", "ai_edge_litert.interpreter")])
def test_missing_package_names_the_extra(tmp_path, monkeypatch, name, module):
    f = tmp_path / f"m{RUNTIMES.entry(name).meta['suffix']}"
    f.write_bytes(b"x")
    monkeypatch.setitem(sys.modules, module, None)  # import now raises ImportError
    with pytest.raises(MissingDependency, match=rf"edgekit\[{RUNTIMES.entry(name).meta['extra']}\]"):
        load(f)


def test_lookup_by_suffix_and_alias():
    assert runtime_for("a/b.tflite") == "litert" and runtime_for("B.ONNX") == "onnxruntime"
    assert RUNTIMES.resolve("ort") == "onnxruntime"
    with pytest.raises(InvalidArgument, match="cannot tell how to run"):
        runtime_for("model.pb")
    with pytest.raises(UnknownNameError, match="did you mean"):
        RUNTIMES.get("onnxruntim")


@pytest.mark.parametrize("dtype,scale,zp", [("int8", 0.05, -3), ("uint8", 1 / 255, 0), ("int16", 1e-3, 0)])
def test_quantize_round_trip(dtype, scale, zp):
    info = TensorInfo("t", [None, 4], dtype, scale, zp)
    x = np.array([[-1.0, 0.0, 0.126, 9.0]], np.float32)
    q = quantize(x, info)
    assert q.dtype == np.dtype(dtype)
    lim = np.iinfo(dtype)
    expected = np.clip(np.rint(x / scale) + zp, lim.min, lim.max)
    np.testing.assert_array_equal(q, expected)
    back = dequantize(q, info)
    inside = (expected > lim.min) & (expected < lim.max)
    assert np.all(np.abs(back - x)[inside] <= scale / 2 + 1e-7)
    plain = TensorInfo("f", [1], "float32")
    assert quantize(x, plain).dtype == np.float32 and np.array_equal(dequantize(x, plain), x)


def _onnx_add(path):
    """A one-node ONNX model (y = x + 1, x float[N, 4]) built without TensorFlow."""
    import onnx
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Add", ["x", "one"], ["y"])], "add",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
                          [helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_onnxruntime_telemetry_is_off(tmp_path):
    """onnxruntime >= 1.2x writes ~/.cache/Microsoft/DeveloperTools/.onnxruntime/{deviceid,onnxruntime.db} at import."""
    import os
    import subprocess

    model = _onnx_add(tmp_path / "add.onnx")
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("ORT_DISABLE_TELEMETRY", "XDG_CACHE_HOME")}
    env["HOME"] = str(home)
    code = ("import numpy as np; from edgekit.runtimes import load; "
            f"s = load({str(model)!r}); print(s.predict(np.zeros((2, 4), np.float32))[0].sum())")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "8.0"
    assert not (home / ".cache" / "Microsoft").exists(), sorted(str(p) for p in home.rglob("*"))


@pytest.mark.slow
def test_litert_xnnpack_info_line_is_hidden(artifacts):
    import subprocess

    _, paths = artifacts
    code = ("import numpy as np; from edgekit.runtimes import load; "
            f"s = load({str(paths['litert'])!r}); s.predict(np.zeros((1, 8, 8, 2), np.float32)); "
            "s.predict(np.zeros((3, 8, 8, 2), np.float32)); print('ran')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ran"
    assert "XNNPACK" not in out.stderr, out.stderr


def test_onnxruntime_run_failure_is_not_bad_input(tmp_path, monkeypatch):
    """A kernel failing inside onnxruntime is an InferenceError (exit 1), not 'bad input' (exit 2); inputs the
    session refuses (wrong rank) stay InvalidArgument."""
    from onnxruntime.capi import onnxruntime_pybind11_state as ortstate

    from edgekit.errors import InferenceError

    sess = load(_onnx_add(tmp_path / "add.onnx"))
    with pytest.raises(InvalidArgument, match="refused the inputs"):
        sess.run(np.zeros((2, 4, 1), np.float32))

    def fail(*a, **k):
        raise ortstate.Fail("[ONNXRuntimeError] : 1 : FAIL : Non-zero status code returned while running Add node.")

    monkeypatch.setattr(sess.session, "run", fail)
    with pytest.raises(InferenceError, match="onnxruntime failed to run add.onnx") as info:
        sess.run(np.zeros((2, 4), np.float32))
    assert not isinstance(info.value, InvalidArgument) and info.value.exit_code == 1


def test_own_bugs_are_not_mapped_to_user_errors(tmp_path, monkeypatch):
    """map_errors(origin=...) translates foreign errors only: a ValueError from our own code stays a ValueError
    (an internal error that fails tests) instead of becoming 'bad input'."""
    from edgekit.errors import map_errors

    sess = load(_onnx_add(tmp_path / "add.onnx"))
    monkeypatch.setattr(sess.session, "run", lambda *a, **k: (_ for _ in ()).throw(ValueError("our bug")))
    with pytest.raises(ValueError, match="our bug") as info:
        sess.run(np.zeros((2, 4), np.float32))
    assert not isinstance(info.value, InvalidArgument)
    with pytest.raises(InvalidArgument):
        with map_errors({ValueError: InvalidArgument}, "x", origin=("numpy",)):
            np.split(np.arange(3), 2)  # raised by numpy's own Python code
