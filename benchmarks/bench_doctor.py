"""int8 doctor benchmark on real data (issue 12).

Cases, all MobileNet v1 alpha=0.25 at 32x32x1 trained on the full Fashion-MNIST train split (60k, no pretrained
weights), evaluated on the full 10k test split:

(a) ``healthy``: the zoo model as is (ReLU6). The doctor should stop at plain int8.
(b) ``outlier``: the same architecture with unbounded ReLUs, trained the same way, then one channel of
    ``conv_pw_3_bn`` made ``--factor`` times louder by a function-preserving rescaling
    (``edgekit.doctor.cases.outlier_channel``: the float model's outputs do not change). Plain int8 should lose more
    than 5 points; the doctor should find the outlier and fix it within the budget.

For each case and format (tflite, onnx) the doctor runs with ``--max-drop`` on the whole test split; the table shows
float / plain int8 / doctor accuracy, the rung it stopped at, the layers it kept in float, and the chosen artifact's
size and local p50 latency against plain int8 (both measured with edgekit's harness, ``edgekit bench --device
local``).

Run (once, niced): ``nice -n 10 .venv/bin/python benchmarks/bench_doctor.py [--epochs 4] [--max-drop 1]
[--out artifacts/bench_doctor]``. Writes ``<out>/bench_doctor.json`` and prints the table. The same run from the
CLI, per case: ``edgekit doctor <out>/outlier.keras --calib-data fashion-mnist --eval-data fashion-mnist
--max-drop 1 [--format onnx] --out <out>/outlier_tflite``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def train(model, epochs: int, seed: int, limit: int | None = None):
    """Plain Keras fit on the full train split (BatchNorm momentum 0.9: a few epochs), as bench_export does."""
    from edgekit._keras import keras, tf
    from edgekit.data import load
    from edgekit.models import preprocess_mode

    tf.keras.utils.set_random_seed(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9
    mode = preprocess_mode(model)
    data = load("fashion-mnist", input_shape=(32, 32, 1), preprocess_mode=mode, split="train", limit=limit, seed=seed)
    model.compile(keras.optimizers.Adam(2e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(data.x, data.y, epochs=epochs, batch_size=128, verbose=2)
    return model


def loudest_channel(model, layer: str) -> int:
    """The channel of ``layer``'s ReLU output with the largest mean on training images (a live channel)."""
    from edgekit._keras import keras
    from edgekit.data import load
    from edgekit.models import preprocess_mode

    x = load("fashion-mnist", input_shape=(32, 32, 1), preprocess_mode=preprocess_mode(model), split="train",
             limit=256, seed=9).x
    relu = model.get_layer(layer).output
    act = keras.Model(model.input, relu).predict(x, verbose=0)
    return int(act.mean(axis=(0, 1, 2)).argmax())


def row(case: str, fmt: str, res, seconds: float) -> dict:
    plain = next(r for r in res.rungs if r.name == "plain int8")
    chosen = res.chosen_rung
    out = {"case": case, "format": fmt, "float_accuracy": res.float_accuracy, "plain_int8_accuracy": plain.accuracy,
           "plain_int8_drop": plain.drop, "met": res.met, "rung": chosen.name if chosen else None,
           "doctor_accuracy": chosen.accuracy if chosen else None, "doctor_drop": chosen.drop if chosen else None,
           "float_layers": chosen.float_layers if chosen else [], "calibration_method": chosen.calibration_method
           if chosen else None, "samples_needed": res.samples_needed, "eval_samples": res.eval_samples,
           "plain_size_bytes": plain.size_bytes, "size_bytes": chosen.size_bytes if chosen else None,
           "plain_p50_ms": plain.p50_ms, "p50_ms": chosen.p50_ms if chosen else None,
           "latency": chosen.latency_note if chosen else None, "worst_layer": res.layers[0].layer,
           "worst_findings": res.layers[0].findings, "rungs": [r.to_dict() for r in res.rungs],
           "artifact": str(res.export.artifacts[0].path) if res.export is not None else None,
           "seconds": round(seconds, 1)}
    out["size_vs_plain"] = round(out["size_bytes"] / out["plain_size_bytes"], 4) if out["size_bytes"] else None
    out["p50_vs_plain"] = round(out["p50_ms"] / out["plain_p50_ms"], 3) if out["p50_ms"] and out["plain_p50_ms"] \
        else None
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--max-drop", type=float, default=1.0)
    ap.add_argument("--factor", type=float, default=512.0, help="outlier channel gain (function-preserving)")
    ap.add_argument("--formats", default="tflite,onnx")
    ap.add_argument("--latency-runs", type=int, default=200)
    ap.add_argument("--out", default="artifacts/bench_doctor")
    ap.add_argument("--train-limit", type=int, default=None, help="train on fewer images (a quick smoke run)")
    ap.add_argument("--eval-samples", type=int, default=None, help="eval on fewer test images (default: all 10k)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    from edgekit.doctor import run as doctor
    from edgekit.doctor.cases import outlier_channel, unbounded_relu
    from edgekit.models import create

    report: dict = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "epochs": args.epochs,
                    "max_drop": args.max_drop, "factor": args.factor, "rows": []}
    t0 = time.perf_counter()
    files = {}
    base = dict(alpha=0.25, resolution=32, input_channels=1, classes=10, weights="none")
    healthy = train(create("mobilenet_v1", **base), args.epochs, seed=0, limit=args.train_limit)
    healthy.save(out / "healthy.keras")
    files["healthy"] = out / "healthy.keras"
    relu = train(unbounded_relu(create("mobilenet_v1", **base)), args.epochs, seed=0, limit=args.train_limit)
    channel = loudest_channel(relu, "conv_pw_3_relu")
    loud = outlier_channel(relu, "conv_pw_3_bn", channel=channel, factor=args.factor)
    from edgekit.data import load

    probe = load("fashion-mnist", input_shape=(32, 32, 1), preprocess_mode="tf", split="test", limit=500).x
    report["outlier_function_max_abs_change"] = float(np.abs(loud.predict(probe, verbose=0)
                                                             - relu.predict(probe, verbose=0)).max())
    report["outlier_channel"] = channel
    loud.save(out / "outlier.keras")
    files["outlier"] = out / "outlier.keras"
    report["train_seconds"] = round(time.perf_counter() - t0, 1)

    for case, path in files.items():
        for fmt in [f.strip() for f in args.formats.split(",") if f.strip()]:
            t = time.perf_counter()
            res = doctor(str(path), calib_data="fashion-mnist", eval_data="fashion-mnist", max_drop=args.max_drop,
                         format=fmt, out=str(out / f"{case}_{fmt}"), latency_runs=args.latency_runs, keep_best=True,
                         eval_samples=args.eval_samples)
            r = row(case, fmt, res, time.perf_counter() - t)
            report["rows"].append(r)
            (out / "bench_doctor.json").write_text(json.dumps(report, indent=2) + "\n")
            pct = {k: 100 * (r[k] or 0.0) for k in ("float_accuracy", "plain_int8_accuracy", "plain_int8_drop",
                                                    "doctor_accuracy", "doctor_drop")}  # fractions -> percent
            print(f"{case:8s} {fmt:6s} float {pct['float_accuracy']:6.2f}  "
                  f"plain int8 {pct['plain_int8_accuracy']:6.2f} "
                  f"({pct['plain_int8_drop']:+.2f})  doctor {pct['doctor_accuracy']:6.2f} ({pct['doctor_drop']:+.2f}) "
                  f"at '{r['rung']}' float layers {r['float_layers']}  size x{r['size_vs_plain']}  "
                  f"p50 {r['p50_ms']:.4f} ms vs {r['plain_p50_ms']:.4f} (x{r['p50_vs_plain']})  [{r['seconds']} s]", flush=True)
    report["seconds"] = round(time.perf_counter() - t0, 1)
    (out / "bench_doctor.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out / 'bench_doctor.json'} ({report['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
