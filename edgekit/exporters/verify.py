"""Verification: run an artifact in its runtime on held-out samples and compare it with the Keras model.

Metrics: top-1 agreement (classifier outputs), max/mean absolute error, SQNR in dB
(``10 log10(sum(ref^2) / sum((ref - out)^2))``, capped at 200 = exact) and, with labels, both accuracies.

Thresholds per precision (:data:`THRESHOLDS`), chosen for real, calibrated models:

- float32: max abs error <= 1e-4 x max(1, max |keras output|) (same math, different kernels).
- float16: SQNR >= 30 dB (float16 weights lose ~3 decimal digits; typical 45-70 dB).
- dynamic: SQNR >= 15 dB (int8 weights, activations quantized per batch at run time; typical 20-35 dB).
- int8: SQNR >= 10 dB and top-1 agreement >= 0.90 (typical 15-25 dB, > 0.95 on trained classifiers),
  OR max abs error <= 3 output LSBs: an output that is within three quantization steps of Keras is as close as an
  int8 output tensor can be (this is what passes near-uniform softmax outputs of untrained models).
- int16x8: SQNR >= 25 dB and top-1 agreement >= 0.97, or max abs error <= 3 output LSBs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._jsonable import JsonMixin

SQNR_CAP_DB = 200.0

THRESHOLDS: dict[str, dict[str, float]] = {
    "float32": {"max_abs_err": 1e-4},
    "float16": {"min_sqnr_db": 30.0},
    "dynamic": {"min_sqnr_db": 15.0},
    "int8": {"min_sqnr_db": 10.0, "min_top1_agreement": 0.90, "max_err_lsb": 3.0},
    "int16x8": {"min_sqnr_db": 25.0, "min_top1_agreement": 0.97, "max_err_lsb": 3.0},
}


@dataclass
class Verification(JsonMixin):
    """Artifact vs Keras on ``samples`` inputs; ``passed`` against ``thresholds``; ``failures`` says why not."""

    runtime: str
    samples: int
    source: str
    max_abs_err: float
    mean_abs_err: float
    sqnr_db: float
    top1_agreement: float | None = None
    keras_accuracy: float | None = None
    artifact_accuracy: float | None = None
    output_lsb: float | None = None
    thresholds: dict[str, float] = field(default_factory=dict)
    passed: bool = True
    failures: list[str] = field(default_factory=list)
    note: str | None = None


def sqnr_db(ref: np.ndarray, out: np.ndarray) -> float:
    noise = float(np.sum((ref.astype(np.float64) - out.astype(np.float64)) ** 2))
    signal = float(np.sum(ref.astype(np.float64) ** 2))
    if noise == 0.0:
        return SQNR_CAP_DB
    if signal == 0.0:
        return -SQNR_CAP_DB
    return float(min(SQNR_CAP_DB, 10.0 * math.log10(signal / noise)))


def compare(ref: list[np.ndarray], out: list[np.ndarray], *, precision: str, labels: np.ndarray | None = None,
            num_classes: int | None = None, output_lsb: float | None = None, runtime: str = "?", source: str = "?",
            note: str | None = None) -> Verification:
    """Compare float outputs of Keras (``ref``) and of the artifact (``out``), output by output.

    ``labels`` (with the dataset's ``num_classes``) add both accuracies when they match the first output's width.
    """
    r = np.concatenate([a.reshape(len(a), -1) for a in ref], axis=1).astype(np.float64)
    o = np.concatenate([a.reshape(len(a), -1) for a in out], axis=1).astype(np.float64)
    if r.shape != o.shape:
        return Verification(runtime, len(ref[0]), source, math.inf, math.inf, -SQNR_CAP_DB, passed=False,
                            failures=[f"output shapes differ: keras {r.shape}, artifact {o.shape}"], note=note)
    bad = {who: int(np.sum(~np.isfinite(a))) for who, a in (("keras", r), ("artifact", o)) if not np.isfinite(a).all()}
    if bad:  # NaN compares False with every threshold: never let it pass
        return Verification(runtime, len(r), source, math.inf, math.inf, -SQNR_CAP_DB, passed=False,
                            failures=[f"non-finite outputs: {', '.join(f'{k} {n}' for k, n in bad.items())} of "
                                      f"{r.size} values are NaN or infinite"], note=note)
    err = np.abs(r - o)
    v = Verification(runtime, int(len(r)), source, float(err.max()), float(err.mean()), sqnr_db(r, o),
                     output_lsb=output_lsb, note=note)
    if len(r) > 1 and float(np.ptp(r, axis=0).max()) <= 1e-6 * max(1.0, float(np.abs(r).max())):
        v.note = ((v.note + "; ") if v.note else "") + (
            "the Keras model gives the same output for every input (untrained weights?): this verification "
            "shows little")
    first_ref, first_out = ref[0], out[0]
    if first_ref.ndim == 2 and first_ref.shape[1] > 1:
        kt, at = first_ref.argmax(1), first_out.argmax(1)
        v.top1_agreement = float(np.mean(kt == at))
        # accuracy only when the labels are the model's own classes (not e.g. Fashion-MNIST into a 1000-way head)
        if labels is not None and len(labels) == len(kt) and num_classes == first_ref.shape[1]:
            v.keras_accuracy = float(np.mean(kt == labels))
            v.artifact_accuracy = float(np.mean(at == labels))
    th = dict(THRESHOLDS[precision])
    v.thresholds = th
    fails: list[str] = []
    if "max_abs_err" in th:
        limit = th["max_abs_err"] * max(1.0, float(np.abs(r).max()))
        if v.max_abs_err > limit:
            fails.append(f"max abs error {v.max_abs_err:.3g} > {limit:.3g}")
    if "min_sqnr_db" in th and v.sqnr_db < th["min_sqnr_db"]:
        fails.append(f"SQNR {v.sqnr_db:.1f} dB < {th['min_sqnr_db']:g} dB")
    if "min_top1_agreement" in th and v.top1_agreement is not None and v.top1_agreement < th["min_top1_agreement"]:
        fails.append(f"top-1 agreement {v.top1_agreement:.3f} < {th['min_top1_agreement']:g}")
    if fails and "max_err_lsb" in th and output_lsb:
        within = v.max_abs_err <= th["max_err_lsb"] * output_lsb
        if within:
            v.note = ((v.note + "; ") if v.note else "") + (
                f"passed on resolution: max abs error {v.max_abs_err:.3g} <= {th['max_err_lsb']:g} output LSBs "
                f"({output_lsb:.3g}) although {'; '.join(fails)}")
            fails = []
    v.failures = fails
    v.passed = not fails
    return v


def keras_outputs(model, x: np.ndarray, batch_size: int = 32) -> list[np.ndarray]:
    outs = model.predict(x, batch_size=batch_size, verbose=0)
    return [np.asarray(o) for o in (outs if isinstance(outs, (list, tuple)) else [outs])]


def run_artifact(session, x: np.ndarray, progress, batch: int | None = None) -> list[np.ndarray]:
    """Float outputs of ``session`` on ``x``; TFLite runs one sample at a time, onnxruntime in batches of 32."""
    batch = batch or (1 if session.name == "litert" else 32)
    chunks: list[list[np.ndarray]] = []
    for i in range(0, len(x), batch):
        chunks.append(session.predict(x[i:i + batch]))
        progress(f"verifying {session.path.name}", min(i + batch, len(x)), len(x))
    return [np.concatenate([c[k] for c in chunks]) for k in range(len(chunks[0]))]


def summary(v: Verification | None) -> dict[str, Any]:
    if v is None:
        return {"status": "skipped"}
    return {"status": "passed" if v.passed else "FAILED", "max_abs_err": v.max_abs_err, "sqnr_db": v.sqnr_db,
            "top1_agreement": v.top1_agreement}
