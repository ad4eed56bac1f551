"""Is the on-device runner's number the model's number? Two checks, in one run, on this machine.

1. Agreement: the runner's p50 (``edgekit.devices.bench`` on ``local``: a subprocess running runner.py, exactly as
   on a device) vs a bare ``invoke()`` timing loop in this process on the same model, threads and input.
   Rounds alternate (runner, bare, runner, bare, ...) so machine-load drift hits both; we report the median p50 of
   each and their ratio (target: within 5%).
2. Per-run overhead of the runner's timing loop (``runner.timed_loop``: two perf_counter_ns reads, a list store, a
   deadline check) = wall time per call of timed_loop(invoke) - wall time per call of ``for _ in r: invoke()``,
   on a trivially small model (target: < 0.05 ms).

    python benchmarks/bench_runner.py [--model M.tflite] [--tiny T.tflite] [--runs 300] [--rounds 5] [--threads 1]

Without --model a small Keras CNN (128x128x3, 4 conv layers) is converted to float32 .tflite under /tmp.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgekit.devices import bench, runner  # noqa: E402

DEVLAB_TINY = Path(__file__).resolve().parents[2] / "shared" / "devlab" / "tiny.tflite"


def build_model(path: Path) -> Path:
    from edgekit._keras import keras, layers, tf

    keras.utils.set_random_seed(0)
    inp = keras.Input((128, 128, 3))
    x = inp
    for i, ch in enumerate((32, 64, 128, 128)):
        x = layers.Conv2D(ch, 3, strides=2 if i else 1, padding="same", activation="relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inp, layers.Dense(10)(x), name="bench_cnn")
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    return path


def bare_loop_p50(model: Path, threads: int, runs: int, warmup: int) -> float:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(model), num_threads=threads)
    it.allocate_tensors()
    (inp,) = runner.make_inputs(np, [{"name": d["name"], "shape": [int(s) for s in d["shape"]],
                                      "dtype": np.dtype(d["dtype"]).name} for d in it.get_input_details()], None, 0)
    it.set_tensor(it.get_input_details()[0]["index"], inp)
    for _ in range(warmup):
        it.invoke()
    lat = []
    pc = time.perf_counter_ns
    for _ in range(runs):
        t = pc()
        it.invoke()
        lat.append(pc() - t)
    return float(np.percentile(np.asarray(lat) / 1e6, 50))


def loop_overhead_ms(model: Path, n: int) -> dict:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(model), num_threads=1)
    it.allocate_tensors()
    d = it.get_input_details()[0]
    it.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
    invoke = it.invoke
    for _ in range(1000):
        invoke()
    with_bk, without = [], []
    for _ in range(7):  # alternate, keep the best (least disturbed) of each
        t0 = time.perf_counter_ns()
        runner.timed_loop(invoke, n, 10**12)
        with_bk.append((time.perf_counter_ns() - t0) / n)
        t0 = time.perf_counter_ns()
        for _ in range(n):
            invoke()
        without.append((time.perf_counter_ns() - t0) / n)
    return {"bare_loop_per_call_ms": min(without) / 1e6, "timed_loop_per_call_ms": min(with_bk) / 1e6,
            "per_run_overhead_ms": (min(with_bk) - min(without)) / 1e6}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path)
    ap.add_argument("--tiny", type=Path, default=DEVLAB_TINY if DEVLAB_TINY.is_file() else None)
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--overhead-calls", type=int, default=200_000)
    a = ap.parse_args()
    model = a.model or build_model(Path("/tmp/edgekit_bench_runner_cnn128.tflite"))
    runner_p50, bare_p50 = [], []
    for _ in range(a.rounds):
        (r,) = bench([model], "local", threads=a.threads, runs=a.runs, warmup=a.warmup)
        assert r.ok, r.error
        runner_p50.append(r.p50_ms)
        bare_p50.append(bare_loop_p50(model, a.threads, a.runs, a.warmup))
    rp, bp = statistics.median(runner_p50), statistics.median(bare_p50)
    tiny = a.tiny or model
    ov = loop_overhead_ms(tiny, a.overhead_calls)
    report = {"model": str(model), "threads": a.threads, "runs": a.runs, "rounds": a.rounds,
              "runner_p50_ms": rp, "bare_p50_ms": bp, "ratio": rp / bp, "within_5pct": abs(rp / bp - 1) <= 0.05,
              "runner_p50_each": runner_p50, "bare_p50_each": bare_p50,
              "overhead_model": str(tiny), **ov, "overhead_below_0.05ms": ov["per_run_overhead_ms"] < 0.05}
    print(json.dumps(report, indent=2))
    return 0 if report["within_5pct"] and report["overhead_below_0.05ms"] else 1


if __name__ == "__main__":
    sys.exit(main())
