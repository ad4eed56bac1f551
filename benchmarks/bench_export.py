"""Export benchmark on real data (issue 3's "what done looks like").

1. Train MobileNet v1 alpha=0.25 (32x32x1, 10 classes, no pretrained weights) on Fashion-MNIST with plain Keras fit.
2. Export float32 and int8 TFLite + ONNX with ``edgekit.export`` (int8 calibrated on real training samples).
3. Evaluate every artifact in its runtime on the full 10k test set; compare int8 vs float accuracy, ONNX float32
   max abs error vs Keras, and int8 size vs float32 and vs the TF converter's own full-integer output.
4. Export MobileNet 1.0-224 (weights none) float32 and int8 and report the size ratio.

Run: ``.venv/bin/python benchmarks/bench_export.py [--epochs 4] [--out artifacts/bench_export]``
Writes ``<out>/bench_export.json`` and prints a table.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def evaluate(path: Path, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray, float]:
    from edgekit.runtimes import load

    sess = load(path, threads=2)
    t = time.perf_counter()
    batch = 1 if sess.name == "litert" else 256
    outs = np.concatenate([sess.predict(x[i:i + batch])[0] for i in range(0, len(x), batch)])
    return float(np.mean(outs.argmax(1) == y)), outs, time.perf_counter() - t


def tf_reference_int8(model, calib: np.ndarray, io: str) -> bytes:
    """The TF converter's own full-integer conversion, as its documentation shows it."""
    from edgekit._keras import tf

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([calib[i:i + 1]] for i in range(len(calib)))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if io == "int8":
        conv.inference_input_type = conv.inference_output_type = tf.int8
    return conv.convert()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--calib-samples", type=int, default=500)
    ap.add_argument("--out", default="artifacts/bench_export")
    ap.add_argument("--skip-224", action="store_true")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    from edgekit._keras import keras, tf
    from edgekit.data import load
    from edgekit.exporters import export, inspect
    from edgekit.models import create, preprocess_mode

    tf.keras.utils.set_random_seed(0)
    res: dict = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "epochs": args.epochs}
    t0 = time.perf_counter()
    model = create("mobilenet_v1", alpha=0.25, resolution=32, input_channels=1, classes=10, weights="none")
    mode = preprocess_mode(model)
    for layer in model.layers:  # few epochs: let BatchNorm statistics follow the weights
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9
    train = load("fashion-mnist", input_shape=(32, 32, 1), preprocess_mode=mode, split="train")
    test = load("fashion-mnist", input_shape=(32, 32, 1), preprocess_mode=mode, split="test")
    model.compile(keras.optimizers.Adam(2e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    t = time.perf_counter()
    model.fit(train.x, train.y, epochs=args.epochs, batch_size=128, verbose=2)
    res["train_seconds"] = round(time.perf_counter() - t, 1)
    keras_probs = model.predict(test.x, batch_size=512, verbose=0)
    res["keras_test_accuracy"] = float(np.mean(keras_probs.argmax(1) == test.y))
    res["model"] = model.name
    res["params"] = int(model.count_params())

    exports = {}
    for q in ("none", "int8"):
        kw = {"calib_data": "fashion-mnist", "calib_samples": args.calib_samples} if q == "int8" else \
            {"verify_data": "fashion-mnist"}
        r = export(model, quantize=q, formats="tflite,onnx", out=out, verify_samples=200, **kw)
        exports[q] = r
    rows = {}
    for q, r in exports.items():
        for a in r.artifacts:
            acc, probs, secs = evaluate(a.path, test.x, test.y)
            rows[a.path.name] = {
                "format": a.format, "precision": a.precision, "size_bytes": a.size_bytes,
                "test_accuracy": acc, "max_abs_err_vs_keras_10k": float(np.abs(probs - keras_probs).max()),
                "top1_agreement_10k": float(np.mean(probs.argmax(1) == keras_probs.argmax(1))),
                "eval_seconds": round(secs, 1), "verification": a.verification.to_dict(),
                "weights_bytes": inspect(a.path).weights_bytes}
    res["artifacts"] = rows
    f32, i8 = exports["none"]["tflite"], exports["int8"]["tflite"]
    res["int8_vs_float_accuracy_points"] = 100 * (rows[i8.path.name]["test_accuracy"]
                                                  - rows[f32.path.name]["test_accuracy"])
    res["onnx_int8_vs_float_accuracy_points"] = 100 * (rows[exports["int8"]["onnx"].path.name]["test_accuracy"]
                                                       - rows[exports["none"]["onnx"].path.name]["test_accuracy"])
    res["int8_over_float32_size_tflite"] = i8.size_bytes / f32.size_bytes
    res["onnx_float32_max_abs_err_10k"] = rows[exports["none"]["onnx"].path.name]["max_abs_err_vs_keras_10k"]

    calib = load("fashion-mnist", input_shape=(32, 32, 1), preprocess_mode=mode, split="train",
                 limit=args.calib_samples + 200, seed=0).take(None, 0).x[:args.calib_samples]
    ref_float_io = tf_reference_int8(model, calib, "float")
    ref_int8_io = tf_reference_int8(model, calib, "int8")
    ours_int8_io = export(model, quantize="int8", io="int8", calib_data="fashion-mnist",
                          calib_samples=args.calib_samples, out=out, verify_samples=200)["tflite"]
    res["tf_reference_int8"] = {
        "float_io": {"tf_bytes": len(ref_float_io), "edgekit_bytes": i8.size_bytes},
        "int8_io": {"tf_bytes": len(ref_int8_io), "edgekit_bytes": ours_int8_io.size_bytes,
                    "edgekit_test_accuracy": evaluate(ours_int8_io.path, test.x, test.y)[0]},
    }

    if not args.skip_224:
        big = {}
        for q in ("none", "int8"):
            kw = {"calib_data": "fashion-mnist", "calib_samples": 200} if q == "int8" else {}
            r = export("mobilenet", weights="none", quantize=q, out=out, verify_samples=50, **kw)
            big[q] = r["tflite"]
        res["mobilenet_1.0_224"] = {
            "float32_bytes": big["none"].size_bytes, "int8_bytes": big["int8"].size_bytes,
            "int8_over_float32": big["int8"].size_bytes / big["none"].size_bytes,
            "int8_verification": big["int8"].verification.to_dict()}
    res["total_seconds"] = round(time.perf_counter() - t0, 1)
    (out / "bench_export.json").write_text(json.dumps(res, indent=2))

    print(f"\nMobileNet v1 0.25 @32x32x1 on Fashion-MNIST, {args.epochs} epochs ({res['train_seconds']} s); "
          f"Keras test accuracy {res['keras_test_accuracy']:.4f}")
    print(f"{'artifact':44} {'bytes':>9} {'test acc':>9} {'max|err| 10k':>13} {'top1 agr':>9}")
    for name, r in rows.items():
        print(f"{name:44} {r['size_bytes']:>9} {r['test_accuracy']:>9.4f} {r['max_abs_err_vs_keras_10k']:>13.2e} "
              f"{r['top1_agreement_10k']:>9.4f}")
    print(f"int8 - float32 accuracy (tflite): {res['int8_vs_float_accuracy_points']:+.2f} points; "
          f"onnx: {res['onnx_int8_vs_float_accuracy_points']:+.2f} points")
    print(f"int8/float32 size (tflite): {res['int8_over_float32_size_tflite']:.3f}")
    ref = res["tf_reference_int8"]
    print(f"TF converter's own full-integer output: float I/O {ref['float_io']['tf_bytes']} B vs ours "
          f"{ref['float_io']['edgekit_bytes']} B; int8 I/O {ref['int8_io']['tf_bytes']} B vs ours "
          f"{ref['int8_io']['edgekit_bytes']} B")
    print(f"ONNX float32 max abs error vs Keras (10k test images): {res['onnx_float32_max_abs_err_10k']:.2e}")
    if "mobilenet_1.0_224" in res:
        b = res["mobilenet_1.0_224"]
        print(f"MobileNet 1.0-224: float32 {b['float32_bytes']} B, int8 {b['int8_bytes']} B, "
              f"ratio {b['int8_over_float32']:.3f}")
    print(f"total {res['total_seconds']} s; JSON: {out / 'bench_export.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
