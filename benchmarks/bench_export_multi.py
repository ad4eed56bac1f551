"""Per-output verification of models that are not single-output image classifiers (issue 10's note).

Trains the test suite's own models (``tests/multi_models.py``: MTCNN-ONet-like with three heads, a two-input
model, a raw-audio classifier of input (43844, 1)), exports each to every precision of tflite and onnx with
``edgekit.export`` (calibrated on held-out real samples), and prints each output's SQNR, max abs error and top-1
agreement as verification measured them, plus what the old positional comparison (all outputs joined in each
side's own order) would have reported.

Run: ``.venv/bin/python benchmarks/bench_export_multi.py [--out artifacts/bench_export_multi]``
Writes ``<out>/bench_export_multi.json``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def positional_sqnr(ref, outs) -> float:
    """SQNR of every output joined in each side's own order (what verification did before pairing by name)."""
    from edgekit.verification import sqnr_db

    r = np.concatenate([a.reshape(len(a), -1) for a in ref], axis=1)
    o = np.concatenate([a.reshape(len(a), -1) for a in outs], axis=1)
    return sqnr_db(r, o) if r.shape == o.shape else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="artifacts/bench_export_multi")
    args = ap.parse_args()
    import multi_models as mm

    from edgekit.errors import ExportError
    from edgekit.exporters import export
    from edgekit.exporters.verify import keras_outputs, run_artifact
    from edgekit.runtimes import load

    out = Path(args.out)
    t0 = time.perf_counter()
    x, y = mm.onet_data(2000)
    onet = mm.train(mm.onet(), x, y, epochs=3)
    xo, yo = mm.onet_data(400, split="test", seed=1)
    xs, ys = mm.two_input_data(3000)
    two = mm.train(mm.two_input(), xs, ys, epochs=6)
    xt, yt = mm.two_input_data(500, split="test", seed=1)
    xa, ya = mm.audio_data(600)
    tones = mm.train(mm.audio(), xa, ya, epochs=8)
    xa, ya = mm.audio_data(250, seed=1)
    cases = [
        ("onet", onet, dict(calib_data=xo[:300], verify_data=(xo[300:], yo["conv6-1"][300:]))),
        ("twoin", two, dict(calib_data=({"zimage": xt["zimage"][:400], "ameta": xt["ameta"][:400]}, yt["zcls"][:400]),
                            verify_data=({"zimage": xt["zimage"][400:], "ameta": xt["ameta"][400:]}, yt["zcls"][400:]))),
        ("tones", tones, dict(calib_data=xa[:150], verify_data=(xa[150:], ya[150:]))),
    ]
    rows = []
    print(f"trained in {time.perf_counter() - t0:.0f} s")
    print(f"{'model':6} {'artifact':7} {'prec':8} {'status':7} {'positional':>10}  per output (Keras order): "
          "SQNR dB / max|err| / top-1")
    for name, model, data in cases:
        for q in ("none", "fp16", "dynamic", "int8", "int16x8"):
            kw = dict(data) if q in ("int8", "int16x8") else {"verify_data": data["verify_data"]}
            fmts = "tflite,onnx" if q != "int16x8" else "tflite"
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    res = export(model, quantize=q, formats=fmts, out=out / name, verify=False, **kw)
            except ExportError as exc:  # e.g. int16x8 has no PRELU kernel: recorded, the sweep goes on
                rows.append({"model": name, "precision": q, "status": "export_failed", "error": exc.message})
                print(f"{name:6} {'-':7} {q:8} export failed: {exc.message}")
                continue
            vx = data["verify_data"][0]
            vx = [vx[k] for k in model.input_names] if isinstance(vx, dict) else [vx]
            ref = keras_outputs(model, vx)
            for art in res.artifacts:
                v = art.verification
                outs = run_artifact(load(art.path), vx, lambda *a: None, input_names=list(model.input_names))
                pos = positional_sqnr(ref, outs)
                per = [{"output": c.name, "artifact_tensor": c.artifact_name, "matched_by": c.matched_by,
                        "sqnr_db": round(c.sqnr_db, 1), "max_abs_err": float(f"{c.max_abs_err:.3g}"),
                        "top1_agreement": c.top1_agreement, "classifier": c.classifier, "status": c.status}
                       for c in v.outputs]
                rows.append({"model": name, "format": art.format, "precision": art.precision, "status": v.status,
                             "samples": v.samples, "keras_accuracy": v.keras_accuracy,
                             "artifact_accuracy": v.artifact_accuracy, "positional_sqnr_db": round(pos, 1),
                             "outputs": per})
                text = "; ".join(f"{p['output']} {p['sqnr_db']:.1f} / {p['max_abs_err']:.2g}"
                                 + (f" / {p['top1_agreement']:.3f}" if p["top1_agreement"] is not None else "")
                                 for p in per)
                print(f"{name:6} {art.format:7} {art.precision:8} {v.status:7} {pos:10.1f}  {text}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_export_multi.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(f"wrote {out / 'bench_export_multi.json'} ({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
