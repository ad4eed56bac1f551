"""Verification: is an artifact's output the model's, as well as its precision allows? One rule, one result type.

Used by ``export`` (artifact vs Keras on held-out samples), ``bench --verify`` (the device's outputs vs the same
reference), ``doctor`` and ``sweep`` (through export) and recorded in the manifest. No TensorFlow: the caller brings
the outputs. SQNR lives here too (:func:`sqnr`, :func:`sqnr_db`, :data:`SQNR_CAP_DB`), for the doctor's per-layer
numbers as well.

Each artifact output is paired with its Keras output by model-level name (the TFLite SignatureDef / ONNX name), else
by a unique shape, else by position (converters reorder outputs); shapes are checked either way. Per output:

1. **Numbers** (every output): max/mean absolute error and SQNR in dB (``10 log10(sum(ref^2) / sum((ref - out)^2))``,
   capped at 200 = exact) against the precision's limits (:data:`TOLERANCES`); an int8/int16x8 output within
   ``max_err_lsb`` quantization steps of Keras is as close as its tensor type allows and passes the numbers.
2. **Top-1 where it means something** (classifier outputs): agreement with the float model's top-1 is counted only
   over the *confident* samples, whose float top-1 margin (top-1 minus top-2) exceeds the precision's noise: the
   noise amplitude the precision may add (the sample's RMS value at ``noise_db`` below it, its SQNR floor) times
   ``SURE_SIGMAS`` x sqrt 2 (two entries' noise), and at least two output quantization steps; flips among near-ties
   say nothing about the artifact. It fails when the flip rate among confident samples is measurably (95 %, exact
   binomial) above ``max_flip_rate``.
3. **Accuracy** (classifier outputs with labels): Keras accuracy minus artifact accuracy as a paired difference with
   an exact 95 % interval (Clopper-Pearson on the discordant split, as McNemar's exact test, and on the discordance
   rate, each at 97.5 %). It fails when the drop is measurably above ``max_drop`` (lower bound > ``max_drop``).

Verdict per output: ``failed`` when any of 1-3 fails. Otherwise ``passed`` when the outputs vouch for the accuracy
(overall top-1 agreement >= ``agreement``, or within ``max_err_lsb`` steps), or, when they do not (an under-trained
model whose top scores are near-ties), when the accuracy drop is measurably within ``max_drop`` (upper bound <=
``max_drop``; without labels: at least :data:`MIN_CONFIDENT` confident samples and no measurable flip). Else
``inconclusive``, with ``samples_needed``: about how many samples would decide. An output whose Keras values are the
same for every sample (untrained weights) is ``inconclusive`` too: the comparison cannot show that the artifact
computes the model's function. The verification's status is the worst output's (failed > inconclusive > passed).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ._jsonable import JsonMixin
from .errors import ExportError

SQNR_CAP_DB = 200.0
PASSED, FAILED, INCONCLUSIVE, NOT_CHECKED = "passed", "failed", "inconclusive", "not_checked"
CONF = 0.95
#: without labels, a low overall top-1 agreement passes only on at least this many confident samples
MIN_CONFIDENT = 30
#: a float top-1 margin is "sure" beyond this many standard deviations of the precision's noise on the difference
SURE_SIGMAS = 4.0
#: a result of this schema (manifest "verification", bench row "parity"); 2: accuracy interval, confident top-1
SCHEMA = 2


@dataclass(frozen=True)
class Tolerance:
    """What a precision may lose (see the module docstring). Accuracies and rates are fractions."""

    min_sqnr_db: float | None = None  # every output
    max_abs_err: float | None = None  # every output, relative to max(1, max |keras output|)
    max_err_lsb: float | None = None  # within this many output quantization steps: the numbers pass
    noise_db: float = 80.0  # the noise the precision may add, dB below each sample's RMS value (sure margins: above)
    max_flip_rate: float = 0.0  # share of confident samples whose top-1 may flip
    agreement: float = 1.0  # overall top-1 agreement from which the outputs vouch for the accuracy
    max_drop: float = 0.0  # accuracy (fraction) the precision may lose

    def limits(self) -> dict[str, float]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


#: the one table of per-precision tolerances. float32: same math, other kernels. float16: weights lose ~3 decimal
#: digits (typical SQNR 45-70 dB). dynamic: int8 weights, activations quantized per batch at run time (20-35 dB).
#: int8: everything 8-bit (15-25 dB on trained models, ~11 dB on an under-trained one).
#: int16x8: 16-bit activations (typical > 40 dB).
TOLERANCES: dict[str, Tolerance] = {
    "float32": Tolerance(max_abs_err=1e-4, noise_db=80.0, max_flip_rate=0.0, agreement=0.99, max_drop=0.002),
    "float16": Tolerance(min_sqnr_db=30.0, noise_db=30.0, max_flip_rate=0.005, agreement=0.99, max_drop=0.005),
    "dynamic": Tolerance(min_sqnr_db=15.0, noise_db=15.0, max_flip_rate=0.02, agreement=0.95, max_drop=0.01),
    "int8": Tolerance(min_sqnr_db=10.0, max_err_lsb=3.0, noise_db=10.0, max_flip_rate=0.05, agreement=0.90,
                      max_drop=0.02),
    "int16x8": Tolerance(min_sqnr_db=25.0, max_err_lsb=3.0, noise_db=25.0, max_flip_rate=0.01, agreement=0.97,
                         max_drop=0.005),
}


def tolerance(precision: str) -> Tolerance:
    try:
        return TOLERANCES[precision]
    except KeyError:
        raise ExportError(f"no verification tolerances for precision {precision!r}; known: "
                          f"{', '.join(TOLERANCES)}") from None


# ------------------------------------------------------------------------------------------------------------ SQNR
def sqnr(signal: float, noise: float) -> float:
    """``10 log10(signal / noise)`` from energies, capped at +-:data:`SQNR_CAP_DB` (200 = exact)."""
    if noise <= 0.0:
        return SQNR_CAP_DB
    if signal <= 0.0:
        return -SQNR_CAP_DB
    return float(min(SQNR_CAP_DB, 10.0 * math.log10(signal / noise)))


def sqnr_db(ref: np.ndarray, out: np.ndarray) -> float:
    """SQNR of ``out`` against ``ref`` in dB (see :func:`sqnr`)."""
    r, o = np.asarray(ref, np.float64), np.asarray(out, np.float64)
    return sqnr(float(np.sum(r ** 2)), float(np.sum((r - o) ** 2)))


# ------------------------------------------------------------------------------------------- exact binomial bounds
def _binom_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p), summed in log space over the terms that matter (within 40 standard
    deviations below k; the rest are below 1e-300 of the sum)."""
    if k < 0:
        return 0.0
    if k >= n or p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    i0 = max(0, k - int(40 * math.sqrt(n * p * (1 - p)) + 50))
    j = np.arange(i0 + 1, k + 1, dtype=np.float64)
    start = math.lgamma(n + 1) - math.lgamma(i0 + 1) - math.lgamma(n - i0 + 1)
    logc = start + np.concatenate([[0.0], np.cumsum(np.log(n - j + 1) - np.log(j))])
    i = np.arange(i0, k + 1, dtype=np.float64)
    terms = logc + i * math.log(p) + (n - i) * math.log1p(-p)
    m = float(terms.max())
    return float(min(1.0, math.exp(m) * np.sum(np.exp(terms - m))))


def _solve(f, target: float) -> float:
    """The p in [0, 1] where the decreasing ``f(p)`` crosses ``target`` (bisection)."""
    lo, hi = 0.0, 1.0
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if f(mid) > target else (lo, mid)
    return (lo + hi) / 2


def binom_interval(k: int, n: int, conf: float = CONF) -> tuple[float, float]:
    """Clopper-Pearson (exact) interval of a proportion ``k / n``; (0, 1) for n = 0."""
    if n <= 0:
        return 0.0, 1.0
    a = (1 - conf) / 2
    lower = 0.0 if k <= 0 else _solve(lambda p: _binom_cdf(k - 1, n, p), 1 - a)
    upper = 1.0 if k >= n else _solve(lambda p: _binom_cdf(k, n, p), a)
    return float(lower), float(upper)


def paired_drop_interval(b: int, c: int, n: int, conf: float = CONF) -> tuple[float, float, float]:
    """Accuracy drop ``(b - c) / n`` of paired classifications and its exact interval (at least ``conf``).

    ``b``: samples only the reference got right, ``c``: only the artifact. With ``m = b + c`` discordant pairs the
    drop is ``q (2p - 1)``, ``q = m / n``, ``p = b / m``; both get Clopper-Pearson bounds at ``1 - (1 - conf) / 2``
    (so jointly >= ``conf``), and the drop's bounds are the extremes over that box. No discordant pair still leaves
    an interval (``+-`` the upper bound of ``q``): 20 agreeing samples do not prove a 1 % drop impossible."""
    if n <= 0:
        return 0.0, -1.0, 1.0
    each = 1 - (1 - conf) / 2
    m = b + c
    q_lo, q_hi = binom_interval(m, n, each)
    p_lo, p_hi = binom_interval(b, m, each) if m else (0.0, 1.0)
    lo = min(q_lo * (2 * p_lo - 1), q_hi * (2 * p_lo - 1))
    hi = max(q_lo * (2 * p_hi - 1), q_hi * (2 * p_hi - 1))
    return (b - c) / n, float(lo), float(hi)


def samples_needed(b: int, c: int, n: int, max_drop: float, conf: float = CONF, limit: int = 1_000_000) -> int | None:
    """About how many samples, at the same discordance, would put the drop's interval on one side of ``max_drop``
    (None: more than ``limit``, the drop sits at the allowance)."""
    def decided(k: int) -> bool:
        f = k / n
        _, lo, hi = paired_drop_interval(round(b * f), round(c * f), k, conf)
        return hi <= max_drop or lo > max_drop

    if n <= 0 or decided(n):
        return n if n > 0 else None
    hi_n = n
    while not decided(hi_n):
        hi_n *= 2
        if hi_n > limit:
            return None
    lo_n = hi_n // 2
    while hi_n - lo_n > max(1, lo_n // 100):  # 1 % is precise enough for "about"
        mid = (lo_n + hi_n) // 2
        lo_n, hi_n = (lo_n, mid) if decided(mid) else (mid, hi_n)
    return int(hi_n)


# ----------------------------------------------------------------------------------------------------- results
@dataclass
class OutputCheck(JsonMixin):
    """One Keras output against the artifact output paired with it (``matched_by``: name, shape or position).

    ``confident_samples``: samples whose float top-1 margin exceeds the precision's noise; ``top1_agreement`` is
    over those (``top1_agreement_all`` over every sample). ``accuracy_drop`` = Keras minus artifact accuracy
    (fractions) with ``accuracy_drop_ci``. ``host_*``: device parity only, the device vs the host runtime."""

    name: str
    artifact_name: str | None
    matched_by: str
    shape: list
    max_abs_err: float
    mean_abs_err: float
    sqnr_db: float
    classifier: bool = False
    top1_agreement: float | None = None
    confident_samples: int | None = None
    top1_agreement_all: float | None = None
    keras_accuracy: float | None = None
    artifact_accuracy: float | None = None
    accuracy_drop: float | None = None
    accuracy_drop_ci: list[float] | None = None
    samples_needed: int | None = None
    output_lsb: float | None = None
    constant: bool = False
    status: str = PASSED
    failures: list[str] = field(default_factory=list)
    note: str | None = None
    host_max_abs_err: float | None = None
    host_sqnr_db: float | None = None
    host_top1_agreement: float | None = None


@dataclass
class Verification(JsonMixin):
    """Artifact (or device) vs Keras on ``samples`` inputs: ``status`` passed | failed | inconclusive | not_checked
    (``passed`` is ``status == "passed"``); ``failures`` says why, ``note`` what else to know; ``outputs`` has the
    numbers of every output. The top-level errors and SQNR are the worst output's; top-1 agreement (confident
    samples) the worst classifier output's; the accuracies and their paired drop come from the classifier output
    the labels belong to; ``samples_needed`` is the largest any inconclusive output asks for."""

    runtime: str = "?"
    samples: int = 0
    source: str | None = None
    max_abs_err: float | None = None
    mean_abs_err: float | None = None
    sqnr_db: float | None = None
    top1_agreement: float | None = None
    confident_samples: int | None = None
    top1_agreement_all: float | None = None
    keras_accuracy: float | None = None
    artifact_accuracy: float | None = None
    accuracy_drop: float | None = None
    accuracy_drop_ci: list[float] | None = None
    samples_needed: int | None = None
    output_lsb: float | None = None
    precision: str | None = None
    thresholds: dict[str, float] = field(default_factory=dict)
    passed: bool = True
    failures: list[str] = field(default_factory=list)
    note: str | None = None
    status: str = PASSED
    outputs: list[OutputCheck] = field(default_factory=list)
    schema: int = SCHEMA

    @property
    def reason(self) -> str | None:
        return self.note


def not_checked(reason: str) -> Verification:
    """A verification that did not run (e.g. benchmark_model returns no outputs), saying why."""
    return Verification(status=NOT_CHECKED, passed=False, note=reason)


def top1_accuracy(top1: np.ndarray | Sequence[int], truth: np.ndarray | Sequence[int]) -> float:
    """The share (a fraction 0..1, edgekit's one accuracy scale) of ``top1`` predictions equal to ``truth`` (labels,
    or the float model's predictions for an agreement); NaN for no samples."""
    top1, truth = np.asarray(top1).reshape(-1), np.asarray(truth).reshape(-1)
    return float(np.mean(top1 == truth)) if len(top1) else float("nan")


# ------------------------------------------------------------------------------------------------------- pairing
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


# ----------------------------------------------------------------------------------------------------- verdict
def verify_outputs(ref: list[np.ndarray], out: list[np.ndarray], *, precision: str, labels: np.ndarray | None = None,
            num_classes: int | None = None, output_lsb: float | Sequence[float | None] | None = None,
            runtime: str = "?", source: str = "?", note: str | None = None,
            ref_names: Sequence[str] | None = None, art_keys: Sequence[str | None] | None = None,
            art_names: Sequence[str] | None = None, classifier: Sequence[bool] | None = None,
            host: Sequence[np.ndarray] | None = None) -> Verification:
    """Judge the float outputs of an artifact (``out``, its order) against Keras's (``ref``, Keras order).

    ``ref_names``/``art_keys`` pair them by name (else by unique shape, else position); ``output_lsb`` is one
    quantization step per artifact output (or one for all); ``classifier`` marks Keras outputs known to be
    classifiers (softmax); ``labels`` with the dataset's ``num_classes`` add the accuracies on the classifier output
    with ``num_classes`` classes; ``host`` (device parity: the host runtime's outputs, artifact order) adds the
    device-vs-host numbers.
    """
    n = len(ref[0]) if ref else 0
    ref_names = list(ref_names) if ref_names is not None else [f"output_{i}" for i in range(len(ref))]
    art_keys = list(art_keys) if art_keys is not None else [None] * len(out)
    art_names = list(art_names) if art_names is not None else [k or f"output_{j}" for j, k in enumerate(art_keys)]
    lsbs = list(output_lsb) if isinstance(output_lsb, (list, tuple)) else [output_lsb] * len(out)
    tol = tolerance(precision)
    try:
        pairs = pair(ref_names, [r.shape[1:] for r in ref], art_keys, [o.shape[1:] for o in out])
    except ExportError as exc:
        return Verification(runtime, n, source, math.inf, math.inf, -SQNR_CAP_DB, precision=precision,
                            thresholds=tol.limits(), passed=False, failures=[exc.message], note=note, status=FAILED)
    checks = []
    for i, j, how in pairs:
        c = _check_output(ref[i], out[j], ref_names[i], art_names[j], how, tol, lsbs[j],
                          bool(classifier[i]) if classifier is not None else False, labels, num_classes)
        if host is not None and j < len(host) and np.shape(host[j]) == np.shape(out[j]):
            h, o = np.asarray(host[j], np.float64), np.asarray(out[j], np.float64)
            c.host_max_abs_err = float(np.abs(h - o).max()) if h.size else 0.0
            c.host_sqnr_db = sqnr_db(h, o)
            if h.ndim == 2 and h.shape[1] > 1:
                c.host_top1_agreement = float(np.mean(h.argmax(1) == o.argmax(1)))
        checks.append(c)
    return _summarise(checks, tol, precision, runtime, n, source, note, lsbs[0] if len(out) == 1 else None)


def _margins(r: np.ndarray) -> np.ndarray:
    top2 = np.sort(r, axis=1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


def _check_output(r: np.ndarray, o: np.ndarray, name: str, art_name: str, how: str, tol: Tolerance,
                  lsb: float | None, known_classifier: bool, labels, num_classes) -> OutputCheck:
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
    fails: list[str] = []
    # 1. the numbers
    if tol.max_abs_err is not None:
        limit = tol.max_abs_err * max(1.0, float(np.abs(r).max()))
        if c.max_abs_err > limit:
            fails.append(f"max abs error {c.max_abs_err:.3g} > {limit:.3g}")
    if tol.min_sqnr_db is not None and c.sqnr_db < tol.min_sqnr_db:
        fails.append(f"SQNR {c.sqnr_db:.1f} dB < {tol.min_sqnr_db:g} dB")
    within_lsb = bool(tol.max_err_lsb and lsb and c.max_abs_err <= tol.max_err_lsb * lsb)
    if fails and within_lsb:
        c.note = (f"passed on resolution: max abs error {c.max_abs_err:.3g} <= {tol.max_err_lsb:g} output LSBs "
                  f"({lsb:.3g}) although {'; '.join(fails)}")
        fails = []
    inconclusive: list[str] = []
    if c.classifier:
        kt, at = r.argmax(1), o.argmax(1)
        agree = kt == at
        c.top1_agreement_all = float(np.mean(agree))
        # 2. top-1 where the float model is sure: margin above the precision's noise (and above 2 output steps)
        amp = np.sqrt(np.mean(r * r, axis=1)) * 10 ** (-tol.noise_db / 20) * SURE_SIGMAS * math.sqrt(2)
        noise_rows = np.maximum(amp, 2 * lsb if lsb else 0.0)
        sure = _margins(r) > noise_rows
        noise = float(np.median(noise_rows)) if len(noise_rows) else 0.0
        c.confident_samples = int(sure.sum())
        flips = int(np.sum(~agree & sure))
        if c.confident_samples:
            c.top1_agreement = 1.0 - flips / c.confident_samples
            flip_lo, _ = binom_interval(flips, c.confident_samples)
            if flip_lo > tol.max_flip_rate:
                fails.append(f"top-1 differs on {flips} of {c.confident_samples} samples where the float model is "
                             f"sure (top-1 margin above the precision's noise, median {noise:.3g}): measurably more "
                             f"than {tol.max_flip_rate:.1%}")
        vouched = c.top1_agreement_all >= tol.agreement or within_lsb
        # 3. accuracy, paired, when the labels are this output's classes (not Fashion-MNIST into 1000 ways)
        if labelled:
            kr, ar = kt == labels, at == labels
            c.keras_accuracy, c.artifact_accuracy = top1_accuracy(kt, labels), top1_accuracy(at, labels)
            b, cc = int(np.sum(kr & ~ar)), int(np.sum(~kr & ar))
            c.accuracy_drop, lo, hi = paired_drop_interval(b, cc, len(r))
            c.accuracy_drop_ci = [lo, hi]
            words = (f"accuracy {c.artifact_accuracy:.2%} vs Keras {c.keras_accuracy:.2%} (drop "
                     f"{100 * c.accuracy_drop:+.2f} points, 95% CI {100 * lo:+.2f} to {100 * hi:+.2f})")
            if lo > tol.max_drop:
                fails.append(f"{words}: measurably more than the {100 * tol.max_drop:g} points the precision "
                             "allows")
            elif not vouched and hi > tol.max_drop:
                c.samples_needed = samples_needed(b, cc, len(r), tol.max_drop)
                more = (f"about {c.samples_needed} samples would tell" if c.samples_needed else
                        "the drop sits at the allowance")
                inconclusive.append(f"top-1 agreement {c.top1_agreement_all:.3f} is low and {words} cannot tell "
                                    f"whether it loses more than {100 * tol.max_drop:g} points: {more}")
            elif not vouched and not fails:
                c.note = _join(c.note, f"top-1 agreement {c.top1_agreement_all:.3f} (flips on near-ties of the "
                                       f"float model); {words}: within {100 * tol.max_drop:g} points")
        elif not vouched and not fails:
            if c.confident_samples < MIN_CONFIDENT:
                c.samples_needed = int(math.ceil(MIN_CONFIDENT * len(r) / max(c.confident_samples, 1)))
                inconclusive.append(f"top-1 agreement {c.top1_agreement_all:.3f} is low and only "
                                    f"{c.confident_samples} samples have a float top-1 margin above the noise "
                                    f"(median {noise:.3g}), {MIN_CONFIDENT} needed: verify on about {c.samples_needed} "
                                    "samples, or with labels")
            else:
                c.note = _join(c.note, f"top-1 agreement {c.top1_agreement_all:.3f} over all samples, "
                                       f"{c.top1_agreement:.3f} over the {c.confident_samples} where the float model "
                                       "is sure: the flips are near-ties")
    c.failures = fails
    if inconclusive and not fails:
        c.note = _join(c.note, "; ".join(inconclusive))
    c.status = FAILED if fails else (INCONCLUSIVE if (c.constant or inconclusive) else PASSED)
    return c


def _join(a: str | None, b: str) -> str:
    return f"{a}; {b}" if a else b


def _summarise(checks: list[OutputCheck], tol: Tolerance, precision: str, runtime: str, n: int, source: str,
               note: str | None, lsb: float | None) -> Verification:
    multi = len(checks) > 1
    notes = [note] if note else []
    failures = [f"{c.name}: {f}" if multi else f for c in checks for f in c.failures]
    for c in checks:
        if c.note:
            notes.append(f"{c.name}: {c.note}" if multi else c.note)
    const = [c.name for c in checks if c.constant]
    if const:
        many = len(const) > 1
        notes.append(("the Keras model gives the same output for every input" if not multi else
                      f"Keras output{'s' if many else ''} {', '.join(const)} {'are' if many else 'is'}"
                      " the same for every input") + " (untrained weights?): the comparison cannot show that the "
                     "artifact computes the model's function, so verification is inconclusive")
    status = FAILED if failures else (INCONCLUSIVE if any(c.status == INCONCLUSIVE for c in checks) else PASSED)
    finite = [c for c in checks if math.isfinite(c.max_abs_err)]
    classifiers = [c for c in checks if c.top1_agreement_all is not None]
    worst = min(classifiers, key=lambda c: c.top1_agreement if c.top1_agreement is not None else 2.0, default=None)
    labelled = next((c for c in checks if c.keras_accuracy is not None), None)
    total = sum(int(np.prod(c.shape or [1])) for c in checks)
    mean = (sum(c.mean_abs_err * int(np.prod(c.shape or [1])) for c in checks) / total
            if total and len(finite) == len(checks) else math.inf)
    needed = [c.samples_needed for c in checks if c.status == INCONCLUSIVE and c.samples_needed]
    return Verification(
        runtime, int(n), source, max((c.max_abs_err for c in checks), default=0.0), mean,
        min((c.sqnr_db for c in checks), default=SQNR_CAP_DB),
        worst.top1_agreement if worst else None, worst.confident_samples if worst else None,
        min((c.top1_agreement_all for c in classifiers), default=None),
        labelled.keras_accuracy if labelled else None, labelled.artifact_accuracy if labelled else None,
        labelled.accuracy_drop if labelled else None, labelled.accuracy_drop_ci if labelled else None,
        max(needed) if needed else None, lsb, precision, tol.limits(), status == PASSED, failures,
        "; ".join(notes) or None, status, checks)
