"""Verification: run an artifact in its runtime on held-out samples and compare it with the Keras model.

Converters reorder inputs and outputs (the TFLite converter sorts them by name: MTCNN's ONet comes out as
prob, bbox, landmarks), so each artifact output is paired with its Keras output by model-level name (the TFLite
SignatureDef / ONNX name), else by a unique shape, else by position; shapes are checked either way. Metrics are
per output: max/mean absolute error, SQNR in dB (``10 log10(sum(ref^2) / sum((ref - out)^2))``, capped at 200 =
exact), and for classifier outputs (softmax in the Keras graph, probability rows, or the labels' class count)
top-1 agreement and, with labels, both accuracies. The top-level numbers are the worst output's.

Thresholds per precision (:data:`THRESHOLDS`), applied to every output, chosen for real, calibrated models:

- float32: max abs error <= 1e-4 x max(1, max |keras output|) (same math, different kernels).
- float16: SQNR >= 30 dB (float16 weights lose ~3 decimal digits; typical 45-70 dB).
- dynamic: SQNR >= 15 dB (int8 weights, activations quantized per batch at run time; typical 20-35 dB).
- int8: SQNR >= 10 dB and top-1 agreement >= 0.90 (typical 15-25 dB, > 0.95 on trained classifiers),
  OR max abs error <= 3 output LSBs: an output that is within three quantization steps of Keras is as close as an
  int8 output tensor can be (this is what passes near-uniform softmax outputs of untrained models).
- int16x8: SQNR >= 25 dB and top-1 agreement >= 0.97, or max abs error <= 3 output LSBs.

Three outcomes: ``passed``; ``failed`` (some output misses its thresholds); ``inconclusive`` when nothing failed
but a Keras output is the same for every sample (untrained weights): the comparison cannot show that the
artifact computes the model's function.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .._jsonable import JsonMixin
from ..errors import ExportError

SQNR_CAP_DB = 200.0
PASSED, FAILED, INCONCLUSIVE = "passed", "failed", "inconclusive"

THRESHOLDS: dict[str, dict[str, float]] = {
    "float32": {"max_abs_err": 1e-4},
    "float16": {"min_sqnr_db": 30.0},
    "dynamic": {"min_sqnr_db": 15.0},
    "int8": {"min_sqnr_db": 10.0, "min_top1_agreement": 0.90, "max_err_lsb": 3.0},
    "int16x8": {"min_sqnr_db": 25.0, "min_top1_agreement": 0.97, "max_err_lsb": 3.0},
}


@dataclass
class OutputCheck(JsonMixin):
    """One Keras output against the artifact output paired with it (``matched_by``: name, shape or position)."""

    name: str
    artifact_name: str | None
    matched_by: str
    shape: list
    max_abs_err: float
    mean_abs_err: float
    sqnr_db: float
    classifier: bool = False
    top1_agreement: float | None = None
    keras_accuracy: float | None = None
    artifact_accuracy: float | None = None
    output_lsb: float | None = None
    constant: bool = False
    status: str = PASSED
    failures: list[str] = field(default_factory=list)
    note: str | None = None


@dataclass
class Verification(JsonMixin):
    """Artifact vs Keras on ``samples`` inputs: ``status`` passed | failed | inconclusive (``passed`` is
    ``status == "passed"``); ``failures`` says why; ``outputs`` has the numbers of every output. The top-level
    errors and SQNR are the worst output's; top-1 agreement the worst classifier output's; the accuracies come
    from the classifier output the labels belong to."""

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
    status: str = PASSED
    outputs: list[OutputCheck] = field(default_factory=list)


def sqnr_db(ref: np.ndarray, out: np.ndarray) -> float:
    noise = float(np.sum((ref.astype(np.float64) - out.astype(np.float64)) ** 2))
    signal = float(np.sum(ref.astype(np.float64) ** 2))
    if noise == 0.0:
        return SQNR_CAP_DB
    if signal == 0.0:
        return -SQNR_CAP_DB
    return float(min(SQNR_CAP_DB, 10.0 * math.log10(signal / noise)))


def _squeeze(shape: Sequence) -> tuple:
    return tuple(int(d) for d in shape if d not in (1, None))


def pair(ref_names: Sequence[str], ref_shapes: Sequence[Sequence], art_keys: Sequence[str | None],
         art_shapes: Sequence[Sequence], what: str = "output") -> list[tuple[int, int, str]]:
    """Pair Keras tensors with artifact tensors: [(keras index, artifact index, how)], how = name | shape |
    position. Shapes are per sample (no batch dimension). Raises :class:`ExportError` when they cannot be paired."""
    n = len(ref_names)
    if len(art_keys) != n:
        raise ExportError(f"the Keras model has {n} {what}s, the artifact {len(art_keys)}")
    by_key = {k: j for j, k in enumerate(art_keys) if k}
    if n == 1:
        return [(0, 0, "name" if art_keys[0] == ref_names[0] else "position")]
    if all(name in by_key for name in ref_names) and len(set(ref_names)) == n:
        return [(i, by_key[name], "name") for i, name in enumerate(ref_names)]
    ref_sq, art_sq = [_squeeze(s) for s in ref_shapes], [_squeeze(s) for s in art_shapes]
    if len(set(ref_sq)) == n and sorted(ref_sq) == sorted(art_sq):
        return [(i, art_sq.index(s), "shape") for i, s in enumerate(ref_sq)]
    if ref_sq == art_sq:
        return [(i, i, "position") for i in range(n)]
    raise ExportError(f"cannot tell which artifact {what} is which Keras {what}: names {list(art_keys)} vs "
                      f"{list(ref_names)}, shapes {art_sq} vs {ref_sq}")


def _is_probability(r: np.ndarray) -> bool:
    return r.ndim == 2 and r.shape[1] > 1 and bool(np.all(r >= -1e-6)) and bool(
        np.allclose(r.sum(axis=1), 1.0, atol=1e-3))


def compare(ref: list[np.ndarray], out: list[np.ndarray], *, precision: str, labels: np.ndarray | None = None,
            num_classes: int | None = None, output_lsb: float | Sequence[float | None] | None = None,
            runtime: str = "?", source: str = "?", note: str | None = None,
            ref_names: Sequence[str] | None = None, art_keys: Sequence[str | None] | None = None,
            art_names: Sequence[str] | None = None, classifier: Sequence[bool] | None = None) -> Verification:
    """Compare the float outputs of Keras (``ref``, Keras order) and of the artifact (``out``, the artifact's order).

    ``ref_names``/``art_keys`` pair them by name (else by unique shape, else position); ``output_lsb`` is one
    quantization step per artifact output (or one for all); ``classifier`` marks Keras outputs known to be
    classifiers (softmax); ``labels`` with the dataset's ``num_classes`` add both accuracies on the classifier
    output that has ``num_classes`` classes.
    """
    n = len(ref[0]) if ref else 0
    ref_names = list(ref_names) if ref_names is not None else [f"output_{i}" for i in range(len(ref))]
    art_keys = list(art_keys) if art_keys is not None else [None] * len(out)
    art_names = list(art_names) if art_names is not None else [k or f"output_{j}" for j, k in enumerate(art_keys)]
    lsbs = list(output_lsb) if isinstance(output_lsb, (list, tuple)) else [output_lsb] * len(out)
    th = dict(THRESHOLDS[precision])
    try:
        pairs = pair(ref_names, [r.shape[1:] for r in ref], art_keys, [o.shape[1:] for o in out])
    except ExportError as exc:
        return Verification(runtime, n, source, math.inf, math.inf, -SQNR_CAP_DB, thresholds=th, passed=False,
                            failures=[exc.message], note=note, status=FAILED)
    checks = [_check_output(ref[i], out[j], ref_names[i], art_names[j], how, th, lsbs[j],
                            bool(classifier[i]) if classifier is not None else False, labels, num_classes)
              for i, j, how in pairs]
    return _summarise(checks, th, runtime, n, source, note, lsbs[0] if len(out) == 1 else None)


def _check_output(r: np.ndarray, o: np.ndarray, name: str, art_name: str, how: str, th: dict, lsb: float | None,
                  known_classifier: bool, labels, num_classes) -> OutputCheck:
    shape = [int(d) for d in r.shape[1:]]
    if _squeeze(r.shape[1:]) != _squeeze(o.shape[1:]) or len(r) != len(o):
        return OutputCheck(name, art_name, how, shape, math.inf, math.inf, -SQNR_CAP_DB, status=FAILED,
                           failures=[f"shapes differ: keras {tuple(r.shape)}, artifact {tuple(o.shape)}"])
    r = r.reshape(len(r), -1).astype(np.float64)
    o = o.reshape(len(o), -1).astype(np.float64)
    bad = {who: int(np.sum(~np.isfinite(a))) for who, a in (("keras", r), ("artifact", o)) if not np.isfinite(a).all()}
    if bad:  # NaN compares False with every threshold: never let it pass
        return OutputCheck(name, art_name, how, shape, math.inf, math.inf, -SQNR_CAP_DB, status=FAILED,
                           failures=[f"non-finite outputs: {', '.join(f'{k} {v}' for k, v in bad.items())} of "
                                     f"{r.size} values are NaN or infinite"])
    err = np.abs(r - o)
    c = OutputCheck(name, art_name, how, shape, float(err.max()) if err.size else 0.0,
                    float(err.mean()) if err.size else 0.0, sqnr_db(r, o), output_lsb=lsb)
    c.constant = len(r) > 1 and float(np.ptp(r, axis=0).max()) <= 1e-6 * max(1.0, float(np.abs(r).max()))
    labelled = labels is not None and len(labels) == len(r) and num_classes == r.shape[1] and r.shape[1] > 1
    c.classifier = r.shape[1] > 1 and (known_classifier or _is_probability(r) or labelled)
    if c.classifier:
        kt, at = r.argmax(1), o.argmax(1)
        c.top1_agreement = float(np.mean(kt == at))
        if labelled:  # accuracy only when the labels are this output's classes (not Fashion-MNIST into 1000 ways)
            c.keras_accuracy = float(np.mean(kt == labels))
            c.artifact_accuracy = float(np.mean(at == labels))
    fails: list[str] = []
    if "max_abs_err" in th:
        limit = th["max_abs_err"] * max(1.0, float(np.abs(r).max()))
        if c.max_abs_err > limit:
            fails.append(f"max abs error {c.max_abs_err:.3g} > {limit:.3g}")
    if "min_sqnr_db" in th and c.sqnr_db < th["min_sqnr_db"]:
        fails.append(f"SQNR {c.sqnr_db:.1f} dB < {th['min_sqnr_db']:g} dB")
    if "min_top1_agreement" in th and c.top1_agreement is not None and c.top1_agreement < th["min_top1_agreement"]:
        fails.append(f"top-1 agreement {c.top1_agreement:.3f} < {th['min_top1_agreement']:g}")
    if fails and "max_err_lsb" in th and lsb and c.max_abs_err <= th["max_err_lsb"] * lsb:
        c.note = (f"passed on resolution: max abs error {c.max_abs_err:.3g} <= {th['max_err_lsb']:g} output LSBs "
                  f"({lsb:.3g}) although {'; '.join(fails)}")
        fails = []
    c.failures = fails
    c.status = FAILED if fails else (INCONCLUSIVE if c.constant else PASSED)
    return c


def _summarise(checks: list[OutputCheck], th: dict, runtime: str, n: int, source: str, note: str | None,
               lsb: float | None) -> Verification:
    multi = len(checks) > 1
    notes = [note] if note else []
    failures = [f"{c.name}: {f}" if multi else f for c in checks for f in c.failures]
    for c in checks:
        if c.note:
            notes.append(f"{c.name}: {c.note}" if multi else c.note)
    const = [c.name for c in checks if c.constant]
    if const:
        notes.append(("the Keras model gives the same output for every input" if not multi else
                      f"Keras output{'s' if len(const) > 1 else ''} {', '.join(const)} {'are' if len(const) > 1 else 'is'}"
                      " the same for every input") + " (untrained weights?): the comparison cannot show that the "
                     "artifact computes the model's function, so verification is inconclusive")
    status = FAILED if failures else (INCONCLUSIVE if const else PASSED)
    finite = [c for c in checks if math.isfinite(c.max_abs_err)]
    classifiers = [c for c in checks if c.top1_agreement is not None]
    labelled = next((c for c in checks if c.keras_accuracy is not None), None)
    total = sum(int(np.prod(c.shape or [1])) for c in checks)
    mean = (sum(c.mean_abs_err * int(np.prod(c.shape or [1])) for c in checks) / total
            if total and len(finite) == len(checks) else math.inf)
    return Verification(
        runtime, int(n), source, max((c.max_abs_err for c in checks), default=0.0), mean,
        min((c.sqnr_db for c in checks), default=SQNR_CAP_DB),
        min((c.top1_agreement for c in classifiers), default=None),
        labelled.keras_accuracy if labelled else None, labelled.artifact_accuracy if labelled else None,
        lsb, th, status == PASSED, failures, "; ".join(notes) or None, status, checks)


def classifier_outputs(model) -> list[bool]:
    """Per Keras output: produced by a softmax (a Softmax layer, or a layer whose activation is softmax, maybe
    behind Reshape/Flatten/Activation layers)."""
    flags = []
    for t in model.outputs:
        layer, hops = getattr(t, "_keras_history", (None,))[0], 0
        found = False
        while layer is not None and hops < 4:
            act = getattr(layer, "activation", None)
            if type(layer).__name__ == "Softmax" or getattr(act, "__name__", "") == "softmax":
                found = True
                break
            if type(layer).__name__ not in ("Reshape", "Flatten", "Activation", "Identity"):
                break
            inbound = layer.inbound_nodes[0].inbound_layers if getattr(layer, "inbound_nodes", None) else None
            layer = inbound if not isinstance(inbound, (list, tuple)) else (inbound[0] if len(inbound) == 1 else None)
            hops += 1
        flags.append(found)
    return flags


def _batch_size(xs: Sequence[np.ndarray], budget: int = 64 << 20) -> int:
    """Samples per Keras batch: 32, fewer when inputs are large (a 4096x4096x3 sample is 192 MiB)."""
    per_sample = sum(int(np.prod(x.shape[1:])) * 4 for x in xs) or 1
    return int(max(1, min(32, budget // per_sample)))


def keras_outputs(model, xs: np.ndarray | Sequence[np.ndarray]) -> list[np.ndarray]:
    """Keras outputs (Keras order) on ``xs`` (one array per Keras input, or one array)."""
    xs = [xs] if isinstance(xs, np.ndarray) else list(xs)
    outs = model.predict(xs if len(xs) > 1 else xs[0], batch_size=_batch_size(xs), verbose=0)
    return [np.asarray(o) for o in (outs if isinstance(outs, (list, tuple)) else [outs])]


def feed_order(session, xs: Sequence[np.ndarray], input_names: Sequence[str]) -> list[np.ndarray]:
    """``xs`` (one array per Keras input, named ``input_names``) in the artifact's input order: paired by name
    (TFLite SignatureDef / ONNX input names are the Keras input names), else unique shape, else position."""
    order = pair(list(input_names), [x.shape[1:] for x in xs], [i.key or i.name for i in session.inputs],
                 [list(i.shape[1:]) for i in session.inputs], what="input")
    feed: list[np.ndarray] = [xs[0]] * len(xs)
    for i, j, _ in order:
        feed[j] = xs[i]
    return feed


def run_artifact(session, xs: np.ndarray | Sequence[np.ndarray], progress, batch: int | None = None,
                 input_names: Sequence[str] | None = None) -> list[np.ndarray]:
    """Float outputs of ``session`` (its output order) on ``xs`` (one array per Keras input, see
    :func:`feed_order`). TFLite runs one sample at a time, onnxruntime in batches of 32 (fewer for large inputs)."""
    xs = [xs] if isinstance(xs, np.ndarray) else list(xs)
    feed = feed_order(session, xs, input_names if input_names is not None else [f"input_{i}" for i in range(len(xs))])
    n = len(xs[0])
    shape = list(getattr(session.inputs[0], "shape", None) or [None]) if session.name == "litert" else [None]
    fixed = shape[0] if shape and isinstance(shape[0], int) and shape[0] > 1 else None  # a .tflite with --batch N
    batch = batch or fixed or (1 if session.name == "litert" else _batch_size(xs))
    chunks: list[list[np.ndarray]] = []
    for i in range(0, n, batch):
        part = [x[i:i + batch] for x in feed]
        short = batch - len(part[0]) if fixed else 0
        if short:  # the last samples, padded to the file's fixed batch with copies of the last one
            part = [np.concatenate([p, np.repeat(p[-1:], short, axis=0)]) for p in part]
        outs = session.predict(*part)
        chunks.append([o[:len(o) - short] for o in outs] if short else outs)
        progress(f"verifying {session.path.name}", min(i + batch, n), n)
    return [np.concatenate([c[k] for c in chunks]) for k in range(len(chunks[0]))]


def paired_reference(v: Verification, ref: Sequence[np.ndarray], ref_names: Sequence[str],
                     outputs) -> list[np.ndarray]:
    """The Keras outputs in the artifact's output order, as :func:`compare` paired them (Keras order if it could
    not pair them)."""
    by_art = {c.artifact_name: c.name for c in v.outputs}
    by_name = dict(zip(ref_names, ref))
    if len(by_art) != len(outputs) or any(o.name not in by_art for o in outputs):
        return list(ref)
    return [by_name[by_art[o.name]] for o in outputs]
