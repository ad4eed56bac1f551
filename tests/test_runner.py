"""The on-device runner, run as a subprocess exactly as on a device: one JSON document, statuses by exit code."""
from __future__ import annotations

import json
import runpy
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edgekit.devices import RUNNER, bench

PY = sys.executable


def run_runner(*args, python=PY, pre=None):
    argv = [python, str(RUNNER), *map(str, args)]
    if pre:  # run the runner with some modules made unimportable (a device without them)
        argv = [python, "-c", pre + "; import runpy, sys; sys.argv = sys.argv[1:]; "
                "sys.exit(runpy.run_path(sys.argv[0], run_name='__main__'))", str(RUNNER), *map(str, args)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, done.stdout + done.stderr  # ONE JSON document on stdout
    return done.returncode, json.loads(lines[0])


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory) -> Path:
    """A tiny conv -> relu -> global-average-pool ONNX graph built with onnx.helper (no TensorFlow)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["r"]),
         helper.make_node("GlobalAveragePool", ["r"], ["y"])],
        "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4, 1, 1])], initializer=[w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path_factory.mktemp("onnx") / "tiny_float32.onnx"
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def tflite_models(tmp_path_factory) -> dict[str, Path]:
    """A tiny Keras CNN converted to float32 and full-int8 (int8 in/out) .tflite with the TF converter."""
    from edgekit._keras import keras, layers, tf

    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 3), name="image")
    x = layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inp)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    model = keras.Model(inp, layers.Dense(4, name="dense")(x), name="tiny_cnn")
    d = tmp_path_factory.mktemp("tflite")
    out = {"float32": d / "tiny_cnn_float32.tflite", "int8": d / "tiny_cnn_int8.tflite"}
    out["float32"].write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([np.random.rand(1, 8, 8, 3).astype(np.float32)] for _ in range(8))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = conv.inference_output_type = tf.int8
    out["int8"].write_bytes(conv.convert())
    return out


def check_doc(doc, runs):
    lat = doc["latency_ms"]
    assert "error" not in doc
    assert lat["count"] == runs
    assert 0 < lat["min"] <= lat["p5"] <= lat["p50"] <= lat["p90"] <= lat["p95"] <= lat["p99"] <= lat["max"]
    assert lat["min"] <= lat["mean"] <= lat["max"] and lat["std"] >= 0
    assert doc["init_ms"] > 0 and doc["first_inference_ms"] > 0
    assert doc["memory"]["peak_rss_bytes"] > 10 * 2**20  # a Python process with numpy is at least that
    assert doc["machine"]["python"] and doc["machine"]["numpy"] == np.__version__


@pytest.mark.slow
def test_runner_tflite_float_and_int8(tflite_models, tmp_path):
    code, doc = run_runner(tflite_models["float32"], "--runs", 30, "--warmup", 3, "--threads", 2)
    assert code == 0
    check_doc(doc, 30)
    assert doc["runtime"]["name"] == "ai_edge_litert" and doc["config"]["threads"] == 2
    assert doc["warmup"]["count"] == 3
    code, doc = run_runner(tflite_models["int8"], "--runs", 10, "--delegate", "none")
    assert code == 0
    check_doc(doc, 10)
    assert doc["model"]["inputs"][0]["dtype"] == "int8" and doc["model"]["inputs"][0]["scale"] > 0
    assert doc["config"]["delegate"] == "none"
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((1, 8, 8, 3), np.float32))
    code, doc = run_runner(tflite_models["float32"], "--runs", 5, "--input", x)
    assert code == 0 and doc["config"]["input"] == str(x)


def test_runner_onnx(onnx_model):
    pytest.importorskip("onnxruntime")
    code, doc = run_runner(onnx_model, "--runs", 25, "--warmup", 2, "--threads", 1)
    assert code == 0
    check_doc(doc, 25)
    assert doc["runtime"]["name"] == "onnxruntime" and doc["model"]["inputs"][0]["shape"] == [1, 3, 8, 8]


def test_runner_errors_are_json_with_exit_codes(tmp_path, onnx_model):
    code, doc = run_runner(tmp_path / "missing.tflite")
    assert code == 2 and doc["error"]["kind"] == "bad_argument"
    bad = tmp_path / "corrupt.tflite"
    bad.write_bytes(b"\x00" * 64)
    code, doc = run_runner(bad)
    assert code == 4 and doc["error"]["kind"] == "model_load_error" and "corrupt.tflite" in doc["error"]["message"]
    bad_onnx = tmp_path / "corrupt.onnx"
    bad_onnx.write_bytes(b"not onnx")
    code, doc = run_runner(bad_onnx)
    assert code == 4 and doc["error"]["kind"] == "model_load_error"
    code, doc = run_runner(onnx_model, "--runs", 0)
    assert code == 2


def test_runner_without_interpreter_reports_runtime_missing(onnx_model, tmp_path):
    block = "import sys; [sys.modules.__setitem__(m, None) for m in ('ai_edge_litert', 'tflite_runtime', 'tensorflow')]"
    model = tmp_path / "m.tflite"
    model.write_bytes(b"\x00" * 64)
    code, doc = run_runner(model, pre=block)
    assert code == 3 and doc["error"]["kind"] == "runtime_missing"
    assert "pip install ai-edge-litert" in doc["error"]["hint"] and "numpy<2" in doc["error"]["hint"]
    code, doc = run_runner(onnx_model, pre="import sys; sys.modules['onnxruntime'] = None")
    assert code == 3 and "onnxruntime" in doc["error"]["message"]


def test_runner_max_seconds_caps_the_run(onnx_model):
    t0 = time.perf_counter()
    code, doc = run_runner(onnx_model, "--runs", 10**7, "--warmup", 1, "--max-seconds", 0.3)
    assert code == 0 and 0 < doc["latency_ms"]["count"] < 10**7
    assert time.perf_counter() - t0 < 30


def test_timed_loop_does_not_preallocate_the_requested_runs():
    """A huge --runs capped by --max-seconds must not allocate n slots (that memory would show as peak RSS)."""
    import runpy

    timed_loop = runpy.run_path(str(RUNNER))["timed_loop"]
    ticks = iter(range(0, 10**6, 10))
    lat = timed_loop(lambda: None, 10**11, max_ns=25, clock=lambda: next(ticks))
    assert lat == [10, 10]


def test_bench_local_rows_and_statuses(onnx_model, tmp_path):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"junk")
    hist = tmp_path / "hist.jsonl"
    rows = bench([onnx_model, bad], "local", runs=10, warmup=1, history=hist)
    assert [r.status for r in rows] == ["ok", "model_load_error"]
    ok = rows[0]
    assert ok.model == "tiny" and ok.precision == "float32" and ok.format == "onnx" and ok.tool == "runner"
    assert ok.count == 10 and ok.p50_ms > 0 and ok.fps == pytest.approx(1000 / ok.mean_ms)
    assert ok.runtime == "onnxruntime" and ok.machine and ok.peak_memory_bytes > 0
    assert ok.cpu and ok.cpu == runpy.run_path(str(RUNNER))["cpu_name"]()  # the core that measured it
    assert "broken.onnx" in rows[1].error and rows[1].p50_ms is None
    assert [json.loads(x)["status"] for x in hist.read_text().splitlines()] == ["ok", "model_load_error"]


@pytest.fixture(scope="module")
def two_input_onnx(tmp_path_factory) -> Path:
    """y = a - 2 b with inputs "a" [1,3] and "b" [1,3]: the order of the inputs matters."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    two = helper.make_tensor("two", TensorProto.FLOAT, [1], [2.0])
    graph = helper.make_graph([helper.make_node("Mul", ["b", "two"], ["b2"]), helper.make_node("Sub", ["a", "b2"], ["y"])],
                              "two_inputs", [helper.make_tensor_value_info("a", TensorProto.FLOAT, [1, 3]),
                                             helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], initializer=[two])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path_factory.mktemp("two") / "two_inputs_float32.onnx"
    onnx.save(model, str(path))
    return path


def test_runner_several_inputs_matched_by_name(two_input_onnx, tmp_path):
    """Issue 10: inputs of a .npz and of the verification data go to the input of the same name, whatever the
    order in the file (np.savez keeps keyword order)."""
    pytest.importorskip("onnxruntime")
    a, b = np.array([[1, 2, 3]], np.float32), np.array([[10, 20, 30]], np.float32)
    feed = tmp_path / "in.npz"
    np.savez(feed, b=b, a=a)  # reversed
    code, doc = run_runner(two_input_onnx, "--runs", 2, "--input", feed)
    assert code == 0, doc
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=a, y=b)
    code, doc = run_runner(two_input_onnx, "--runs", 2, "--input", bad)
    assert code == 2 and "cannot match" in doc["error"]["message"] and "a, b" in doc["error"]["message"]
    vin, vout = tmp_path / "v.npz", tmp_path / "out.npz"
    np.savez(vin, input_names=np.array(["b", "a"]), input_0=np.repeat(b, 4, 0), input_1=np.repeat(a, 4, 0))
    code, doc = run_runner(two_input_onnx, "--runs", 2, "--verify-inputs", vin, "--outputs", vout)
    assert code == 0 and doc["parity"]["samples"] == 4, doc
    with np.load(vout) as z:
        assert z["output_0"].tolist() == [[-19.0, -38.0, -57.0]] * 4 and list(z["output_names"]) == ["y"]


@pytest.mark.slow
def test_runner_and_bench_name_the_custom_op_the_runtime_lacks(tmp_path):
    """Issue 10: a .tflite with a custom op (converted with allow_custom_ops) names the op in the error."""
    from edgekit._keras import tf

    @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32)])
    def f(x):
        return tf.math.bessel_i0e(x) + 1.0

    conv = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f)
    conv.allow_custom_ops = True
    model = tmp_path / "custom_float32.tflite"
    model.write_bytes(conv.convert())
    code, doc = run_runner(model, "--runs", 2)
    assert code == 4 and "lacks the op(s) BesselI0e" in doc["error"]["message"], doc
    (row,) = bench([model], "local", runs=2, warmup=0)
    assert row.status == "model_load_error" and "BesselI0e" in row.error and "custom ops" in row.hint


def test_runner_and_bench_name_every_custom_op_the_runtime_lacks(tmp_path):
    """Two custom ops (MediaPipe-style, no TensorFlow): the interpreter stops at the first; bench names the rest
    from the file and the host's LiteRT."""
    from tflite_files import mediapipe_like

    selfie = tmp_path / "selfie.tflite"
    selfie.write_bytes(mediapipe_like())
    code, doc = run_runner(selfie, "--runs", 2)
    assert code == 4 and "Landmarks2TransformMatrix" not in doc["error"]["message"], doc  # what the device knows
    (row,) = bench([selfie], "local", runs=2, warmup=0)
    assert row.status == "model_load_error", row
    assert "lacks the op(s) Convolution2DTransposeBias" in row.error, row.error
    assert "the host's LiteRT also lacks Landmarks2TransformMatrix" in row.error, row.error
    assert "custom ops in the file: Convolution2DTransposeBias, Landmarks2TransformMatrix" in row.hint, row.hint
    from edgekit.devices import compare
    from edgekit.errors import ModelLoadError

    with pytest.raises(ModelLoadError, match="also lacks Landmarks2TransformMatrix"):
        compare([selfie, selfie], "local", runs=2, warmup=0)


def test_bench_of_an_onnx_model_leaves_no_onnxruntime_telemetry_in_home(onnx_model, tmp_path):
    """Issue 8: onnxruntime writes ~/.cache/Microsoft/DeveloperTools/.onnxruntime (device id, event database) at
    import; the on-device runner turns telemetry off first (the host side does in edgekit.runtimes)."""
    import os

    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    env["HOME"] = str(home)
    done = subprocess.run([PY, "-c", "from edgekit.cli import main; main()", "bench", str(onnx_model), "-d", "local",
                           "--runs", "5", "--warmup", "0", "--no-history"], capture_output=True, text=True,
                          timeout=300, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not (home / ".cache" / "Microsoft").exists(), sorted(str(p) for p in home.rglob("*"))


PI4 = "".join(f"processor\t: {i}\nBogoMIPS\t: 108.00\nCPU implementer\t: 0x41\nCPU architecture: 8\n"
              f"CPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n\n" for i in range(4)) + \
    "Hardware\t: BCM2835\nModel\t\t: Raspberry Pi 4 Model B Rev 1.1\n"


def _cores(*parts: str, implementer: str = "0x41") -> str:
    return "".join(f"processor\t: {i}\nCPU implementer\t: {implementer}\nCPU part\t: {p}\n\n"
                   for i, p in enumerate(parts))


@pytest.mark.parametrize("text,cpu", [
    (PI4, "Cortex-A72"),
    (_cores("0xd0b", "0xd0b", "0xd0b", "0xd0b"), "Cortex-A76"),  # Pi 5
    (_cores("0xd03"), "Cortex-A53"), (_cores("0xd05"), "Cortex-A55"), (_cores("0xd0c"), "Neoverse-N1"),
    (_cores(*["0xd05"] * 4, *["0xd0b"] * 2, *["0xd0b"] * 2), "4x Cortex-A55 + 4x Cortex-A76"),  # big.LITTLE
    (_cores("0x001", implementer="0x46"), "A64FX"),
    (_cores("0x123", implementer="0x99"), "implementer 0x99 part 0x123"),  # unknown: the numbers, not a guess
    ("processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\n\n",
     "Intel(R) Xeon(R) CPU @ 2.20GHz"),
    ("processor\t: 0\n", None),  # another machine's cpuinfo with nothing to name: never this host's CPU
])
def test_runner_names_the_cpu_from_cpuinfo(text, cpu):
    ns = runpy.run_path(str(RUNNER))
    assert ns["cpu_name"](text) == cpu


def test_runner_reports_the_cpu_in_every_row_json_csv_and_table(onnx_model, tmp_path):
    from click.testing import CliRunner

    from edgekit.cli import main

    csv_file, json_file = tmp_path / "rows.csv", tmp_path / "rows.json"
    res = CliRunner().invoke(main, ["bench", str(onnx_model), "-d", "local", "--runs", "5", "--warmup", "1",
                                    "--csv", str(csv_file), "--json", str(json_file), "--no-history"])
    assert res.exit_code == 0, res.output
    cpu = runpy.run_path(str(RUNNER))["cpu_name"]()
    import csv

    (row,) = list(csv.DictReader(csv_file.open()))
    assert row["cpu"] == cpu
    doc = json.loads(json_file.read_text())
    rows = doc if isinstance(doc, list) else doc.get("results") or doc.get("rows")
    assert rows[0]["cpu"] == cpu
    assert "cpu" in res.output


def test_runner_refuses_absurd_thread_counts(tmp_path):
    """Issue 18: --threads 100000 segfaulted the runner or ran for minutes; the runner (used alone on a device)
    bounds it by the device's cores too."""
    import time

    from tflite_files import build

    model = tmp_path / "add.tflite"   # a valid float model built without the converter (the fast loop converts none)
    model.write_bytes(build([("ADD", [0, 1], [2])], [("x", [1, 4], "float32", None),
                                                       ("c", [4], "float32", np.ones(4, np.float32)),
                                                       ("y", [1, 4], "float32", None)], [0], [2]))
    t0 = time.monotonic()
    code, doc = run_runner(model, "--runs", 2, "--threads", 100000)
    assert code == 2 and doc["error"]["kind"] == "bad_argument" and "--threads 100000" in doc["error"]["message"]
    assert time.monotonic() - t0 < 60
