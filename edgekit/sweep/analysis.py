"""What a sweep's rows mean: the Pareto front per device, the pick within a latency budget, the log-linear
accuracy fit (the MobileNet paper's Figure 4) and the latency model that flags points a device runs badly.

Pure numpy on :class:`~edgekit.sweep.results.SweepRow` objects; no TensorFlow.

- **Chance** (:mod:`edgekit._chance`): a row whose accuracy is not significantly above the chance accuracy of its
  test labels (``above_chance`` False) learned nothing measurable: it stays in the table and the latency model
  (its latency is real) but is kept out of the fronts, the accuracy fits and the picks. When no row of a device is
  above chance, its pick says so and picks nothing.

- **Pareto front** (per device): the ok rows that no other ok row beats on both accuracy (higher) and latency
  (lower), one of them strictly.
- **Pick** (per device): the most accurate ok row whose latency is within the budget (ties: the faster one); when
  none fits, the fastest ok row, with a statement saying so.
- **Accuracy fit** (per model family and precision): ``accuracy = a + b * log10(mult-adds)`` by least squares,
  with R²; one value per point (accuracy does not depend on the device).
- **Latency model** (per device, all precisions together: mult-adds are precision-blind):
  ``latency = overhead + mult-adds / throughput`` fitted on log latencies (errors are ratios), so small models
  whose time is mostly per-call overhead fit as well as big ones. A row more than :data:`OUTLIER_FACTOR` times
  above or below the prediction is an outlier (e.g. a precision the device has no fast kernels for); the fit also
  gives each precision's typical ratio to the prediction.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from .._chance import ADVICE, ALPHA
from .._jsonable import JsonMixin

#: measured / predicted latency beyond this factor (either way) flags a row
OUTLIER_FACTOR = 2.0
METRICS = ("p50", "p90")


def latency(row, metric: str) -> float | None:
    """The row's latency in ms for ``metric`` (``p50`` or ``p90``)."""
    return getattr(row, f"{metric}_ms")


def _usable(rows: Iterable, metric: str) -> list:
    return [r for r in rows if r.status == "ok" and r.accuracy is not None and latency(r, metric) is not None
            and r.above_chance is not False]


def at_chance(rows: Iterable) -> list:
    """The rows with an accuracy that is not significantly above chance."""
    return [r for r in rows if r.accuracy is not None and r.above_chance is False]


def by_device(rows: Iterable) -> dict[str, list]:
    out: dict[str, list] = defaultdict(list)
    for r in rows:
        out[r.device].append(r)
    return dict(out)


# -------------------------------------------------------------------------------------------------- Pareto front
def pareto_front(rows: Sequence, metric: str = "p50") -> list:
    """The non-dominated ok rows of ONE device, fastest first."""
    cand = _usable(rows, metric)
    front = []
    for r in cand:
        t, a = latency(r, metric), r.accuracy
        dominated = any(latency(o, metric) <= t and o.accuracy >= a and (latency(o, metric) < t or o.accuracy > a)
                        for o in cand if o is not r)
        if not dominated:
            front.append(r)
    return sorted(front, key=lambda r: (latency(r, metric), -r.accuracy))


def mark_fronts(rows: Sequence, metric: str = "p50") -> dict[str, list[str]]:
    """Set ``row.pareto`` on every row; returns {device: [point ids on its front, fastest first]}."""
    fronts = {}
    for device, dev_rows in by_device(rows).items():
        front = pareto_front(dev_rows, metric)
        ids = {id(r) for r in front}
        for r in dev_rows:
            r.pareto = id(r) in ids
        fronts[device] = [r.point for r in front]
    return fronts


# -------------------------------------------------------------------------------------------------- the pick
@dataclass
class Pick(JsonMixin):
    """The answer for one device: the most accurate point within the budget, or the fastest when none fits."""

    device: str
    budget_ms: float
    metric: str
    fits: bool
    point: str | None = None
    accuracy: float | None = None
    latency_ms: float | None = None
    statement: str = ""
    at_chance: int = 0          # measured rows left out: not significantly above chance


def pick(rows: Sequence, budget_ms: float, metric: str = "p50", *, emulated: bool = False) -> Pick:
    """The pick for ONE device's rows (see the module docstring); ``row.pick`` is set on the chosen row."""
    device = rows[0].device if rows else "?"
    label = f"{device}{' (emulated)' if emulated else ''}"
    cand = _usable(rows, metric)
    for r in rows:
        r.pick = False
    chance_rows = [r for r in at_chance(rows) if r.status == "ok" and latency(r, metric) is not None]
    if not cand and chance_rows:
        return Pick(device, budget_ms, metric, False, at_chance=len(chance_rows),
                    statement=f"{label}: NO point is significantly above chance ({_chance_text(chance_rows)}): "
                              f"the models learned nothing measurable, so none is picked; {ADVICE}")
    if not cand:
        return Pick(device, budget_ms, metric, False,
                    statement=f"{label}: no point was measured successfully, so none can be picked")
    left_out = (f" ({len(chance_rows)} point(s) at chance left out)" if chance_rows else "")
    inside = [r for r in cand if latency(r, metric) <= budget_ms]
    if inside:
        best = max(inside, key=lambda r: (r.accuracy, -latency(r, metric)))
        best.pick = True
        return Pick(device, budget_ms, metric, True, best.point, best.accuracy, latency(best, metric),
                    f"{label}: {best.point} is the most accurate point within {budget_ms:g} ms {metric}: "
                    f"{100 * best.accuracy:.2f}% at {latency(best, metric):.3g} ms{left_out}", len(chance_rows))
    fastest = min(cand, key=lambda r: (latency(r, metric), -r.accuracy))
    return Pick(device, budget_ms, metric, False, fastest.point, fastest.accuracy, latency(fastest, metric),
                f"{label}: NO point fits within {budget_ms:g} ms {metric}; the fastest is {fastest.point} at "
                f"{latency(fastest, metric):.3g} ms ({100 * fastest.accuracy:.2f}%){left_out}", len(chance_rows))


def _chance_text(rows: Sequence) -> str:
    """'chance 10.00%, best 11.20% on 1000 samples; above chance needs >= 12.40%' for at-chance rows."""
    best = max(rows, key=lambda r: r.accuracy)
    need = f"; above chance needs >= {100 * best.min_accuracy:.2f}%" if best.min_accuracy is not None else ""
    return (f"chance {100 * best.chance:.2f}%, best {100 * best.accuracy:.2f}% on {best.test_samples} test samples"
            f"{need}")


# -------------------------------------------------------------------------------------------------- accuracy fit
@dataclass
class AccuracyFit(JsonMixin):
    """``accuracy = intercept + slope * log10(mult-adds)`` over ``n`` points of one family and precision."""

    model: str
    precision: str
    n: int
    slope: float | None = None          # accuracy per decade of mult-adds
    intercept: float | None = None
    r2: float | None = None
    points: list[tuple[float, float]] = field(default_factory=list)   # (mult-adds, accuracy)
    note: str | None = None

    def predict(self, mult_adds: float) -> float | None:
        if self.slope is None:
            return None
        return self.intercept + self.slope * math.log10(mult_adds)


def _linear(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """(slope, intercept, R²) of the least-squares line."""
    slope, intercept = np.polyfit(x, y, 1)
    pred = intercept + slope * x
    ss_res = float(np.sum((y - pred) ** 2))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else (1.0 if ss_res == 0 else 0.0)
    return float(slope), float(intercept), float(r2)


def accuracy_fits(rows: Iterable) -> list[AccuracyFit]:
    """One fit per (model family, precision) over distinct points with an accuracy (any device; status of the
    export, not of the bench). Needs 3 points with 2 distinct mult-adds, else the fit says why not."""
    seen: dict[tuple[str, str], dict[str, tuple[float, float]]] = defaultdict(dict)
    dropped: dict[tuple[str, str], set[str]] = defaultdict(set)
    for r in rows:
        if r.accuracy is None or not r.mult_adds or r.status in ("train_failed", "export_failed"):
            continue
        if r.above_chance is False:
            dropped[(r.model, r.precision)].add(r.point)
            continue
        seen[(r.model, r.precision)][r.point] = (float(r.mult_adds), float(r.accuracy))
    fits = []
    for (model, precision) in sorted(set(seen) | set(dropped)):
        data = sorted(seen[(model, precision)].values())
        fit = AccuracyFit(model, precision, len(data), points=data)
        x = np.log10([p[0] for p in data])
        out = dropped[(model, precision)]
        chance = f"; {len(out)} point(s) at chance left out" if out else ""
        if len(data) < 3 or len(set(x.round(12))) < 2:
            fit.note = (f"{len(data)} point(s) above chance with {len(set(x.round(12)))} distinct mult-adds: no fit "
                        f"(needs 3 and 2){chance}" if out else
                        f"{len(data)} point(s) with {len(set(x.round(12)))} distinct mult-adds: no fit (needs 3 and 2)")
        else:
            fit.slope, fit.intercept, fit.r2 = _linear(x, np.array([p[1] for p in data]))
            fit.note = chance[2:] or None
        fits.append(fit)
    return fits


# -------------------------------------------------------------------------------------------------- latency model
@dataclass
class LatencyFit(JsonMixin):
    """``latency_ms = overhead_ms + mult_adds / (gmacs * 1e6)`` for one device; R² of log latency."""

    device: str
    metric: str
    n: int
    overhead_ms: float | None = None
    gmacs: float | None = None          # effective throughput, billions of mult-adds per second
    r2_log: float | None = None
    outliers: list[str] = field(default_factory=list)   # point ids
    #: geometric mean of measured / predicted per precision (and format): how each runs against the mult-adds trend
    ratios: dict[str, float] = field(default_factory=dict)
    note: str | None = None

    def predict(self, mult_adds: float) -> float | None:
        if self.overhead_ms is None:
            return None
        return self.overhead_ms + (mult_adds / (self.gmacs * 1e6) if self.gmacs else 0.0)


def _fit_affine_log(x: np.ndarray, t: np.ndarray) -> tuple[float, float]:
    """(a, b) with a >= 0, b >= 0 minimising sum((log t - log(a + b x))^2): errors count as ratios, so the line
    runs through the geometric middle of the points (two precisions 2.5x apart sit 1.6x either side of it).

    The overhead ``a`` is searched on a grid below the smallest latency, then refined; the slope ``b`` by
    golden-section search of log b for each ``a``. A few thousand evaluations: plenty for a sweep's points."""
    lt = np.log(t)

    def sse(a: float, logb: float) -> float:
        return float(np.sum((lt - np.log(a + np.exp(logb) * x)) ** 2))

    def golden(f, lo: float, hi: float, steps: int = 50) -> float:
        g = (math.sqrt(5) - 1) / 2
        c, d = hi - g * (hi - lo), lo + g * (hi - lo)
        for _ in range(steps):
            if f(c) < f(d):
                hi, d = d, c
                c = hi - g * (hi - lo)
            else:
                lo, c = c, d
                d = lo + g * (hi - lo)
        return (lo + hi) / 2

    def best_b(a: float) -> tuple[float, float]:
        rest = np.maximum(t - a, t * 1e-6) / x
        logb = golden(lambda u: sse(a, u), math.log(rest.min()) - 2.0, math.log(rest.max()) + 2.0)
        return sse(a, logb), logb

    top = 0.98 * float(t.min())   # the overhead cannot exceed the fastest point's latency
    coarse = min(np.linspace(0.0, top, 25), key=lambda v: best_b(float(v))[0])
    a = golden(lambda v: best_b(v)[0], max(0.0, coarse - top / 24), min(top, coarse + top / 24), 30)
    err, logb = best_b(a)
    flat = float(np.exp(lt.mean()))   # b = 0: a constant latency
    if float(np.sum((lt - math.log(flat)) ** 2)) < err:
        return flat, 0.0
    return a, float(math.exp(logb))


def latency_fit(rows: Sequence, metric: str = "p50", factor: float = OUTLIER_FACTOR) -> LatencyFit:
    """The latency model of ONE device's rows; sets ``latency_predicted_ms``, ``latency_ratio`` and
    ``latency_outlier`` on every measured row."""
    device = rows[0].device if rows else "?"
    pts = [r for r in rows if r.status == "ok" and r.mult_adds and latency(r, metric)]
    fit = LatencyFit(device, metric, len(pts))
    for r in rows:
        r.latency_predicted_ms = r.latency_ratio = None
        r.latency_outlier = False
    if len(pts) < 3:
        fit.note = f"{len(pts)} measured point(s): no latency model (needs 3)"
        return fit
    x = np.array([float(r.mult_adds) for r in pts])
    t = np.array([float(latency(r, metric)) for r in pts])
    a, b = _fit_affine_log(x, t)
    pred = a + b * x
    fit.overhead_ms, fit.gmacs = a, (1.0 / (b * 1e6) if b > 0 else None)
    lt, lp = np.log(t), np.log(np.maximum(pred, 1e-12))
    ss_tot = float(np.sum((lt - lt.mean()) ** 2))
    fit.r2_log = 1.0 - float(np.sum((lt - lp) ** 2)) / ss_tot if ss_tot > 0 else None
    for r, p, m in zip(pts, pred, t):
        r.latency_predicted_ms = float(p)
        r.latency_ratio = float(m / p) if p > 0 else None
        r.latency_outlier = r.latency_ratio is not None and (r.latency_ratio > factor or r.latency_ratio < 1 / factor)
        if r.latency_outlier:
            fit.outliers.append(r.point)
    groups: dict[str, list[float]] = defaultdict(list)
    formats = {r.format for r in pts}
    for r in pts:
        if r.latency_ratio:
            groups[r.precision + (f" {r.format}" if len(formats) > 1 else "")].append(math.log(r.latency_ratio))
    fit.ratios = {k: float(math.exp(sum(v) / len(v))) for k, v in sorted(groups.items())}
    return fit


# -------------------------------------------------------------------------------------------------- chance
@dataclass
class ChanceSummary(JsonMixin):
    """The test labels' chance accuracy and how many points (model x precision x format) are above it."""

    chance: float | None             # largest class share of the scored test labels
    test_samples: int | None
    min_accuracy: float | None       # the lowest accuracy significantly above chance on them
    alpha: float
    points: int                      # points with an accuracy
    above: int                       # of those, significantly above chance
    at_chance: list[str] = field(default_factory=list)   # point ids
    statement: str = ""


def chance_summary(rows: Sequence) -> ChanceSummary | None:
    """None until a row has been tested against chance."""
    tested = {r.point: r for r in rows if r.accuracy is not None and r.above_chance is not None}
    if not tested:
        return None
    ref = max(tested.values(), key=lambda r: r.test_samples or 0)
    low = sorted(p for p, r in tested.items() if not r.above_chance)
    s = ChanceSummary(ref.chance, ref.test_samples, ref.min_accuracy, ALPHA, len(tested), len(tested) - len(low), low)
    need = f"; above chance needs >= {100 * s.min_accuracy:.2f}%" if s.min_accuracy is not None else ""
    head = (f"chance {100 * (s.chance or 0):.2f}% (the largest class share of {s.test_samples} test labels){need} "
            f"(one-sided binomial test, alpha {s.alpha:g})")
    if not low:
        s.statement = f"{head}: every point is above chance"
    elif s.above:
        s.statement = (f"{head}: {len(low)} of {s.points} points are NOT significantly above chance; they are kept "
                       f"out of the fronts, fits and picks")
    else:
        best = max(r.accuracy for r in tested.values())
        s.statement = (f"{head}: NO point is significantly above chance (best {100 * best:.2f}%): the sweep's models "
                       f"learned nothing measurable and nothing is picked; {ADVICE}")
    return s


# -------------------------------------------------------------------------------------------------- all at once
def analyze(rows: Sequence, metric: str = "p50", budget_ms: float | None = None,
            factor: float = OUTLIER_FACTOR) -> tuple[dict[str, list[str]], list[Pick], list[AccuracyFit],
                                                     list[LatencyFit]]:
    """(fronts, picks, accuracy fits, latency fits) of a sweep's rows; marks ``pareto``/``pick``/latency fields."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}")
    fronts = mark_fronts(rows, metric)
    devices = by_device(rows)
    picks = []
    if budget_ms is not None:
        picks = [pick(dev_rows, budget_ms, metric, emulated=any(r.emulated for r in dev_rows))
                 for dev_rows in devices.values()]
    else:
        for r in rows:
            r.pick = False
    lat = [latency_fit(dev_rows, metric, factor) for dev_rows in devices.values()]
    return fronts, picks, accuracy_fits(rows), lat
