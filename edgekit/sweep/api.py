"""``edgekit.sweep.run(...)``: plan (every check before any training), run, and publish the results as they come."""
from __future__ import annotations

import datetime as _dt
import json
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from .._chance import ADVICE
from .._io import write_text_atomic
from .._progress import Progress, no_progress
from ..errors import BudgetNotMet, EdgekitWarning
from . import analysis
from .plan import Plan, make_plan
from .results import SweepResult, SweepRow, SweepSummary, to_csv
from .runner import Runner
from .spec import SweepSpec
from .store import Store
from .plots import write_plots

#: seconds between redraws of the plots while the sweep runs (results.json/csv are rewritten with every row)
PLOTS_EVERY = 60.0


def budget_not_met(result: SweepResult) -> BudgetNotMet:
    """``require_budget``: some device has no point within the latency budget, or none significantly above chance.
    ``result`` holds everything."""
    missing = [p for p in result.picks if not p.fits]
    learned_nothing = [p.device for p in missing if getattr(p, "at_chance", 0) and p.point is None]
    over = [p.device for p in missing if p.device not in learned_nothing]
    if learned_nothing and not over:
        return BudgetNotMet(f"no point is significantly above chance on {', '.join(learned_nothing)}: the sweep's "
                            f"models learned nothing measurable, so nothing is picked", hint=ADVICE, result=result)
    return BudgetNotMet(f"no point fits within {result.budget_ms:g} ms {result.metric} on "
                        f"{', '.join(p.device for p in missing)}",
                        hint="raise --budget-ms, add smaller points (lower alpha/resolution, int8), or drop "
                             "--require-budget" + (f"; points at chance are left out: {ADVICE}"
                                                   if learned_nothing else ""), result=result)


@dataclass
class SweepProgress:
    """What the sweep is doing, for a progress line: points done / total and the estimated time left."""

    points_done: int
    points_total: int
    rows_done: int
    rows_total: int
    reused: int
    failed: int
    eta_seconds: Optional[float]
    activity: str
    row: Optional[SweepRow] = None


class _Publisher:
    """Keeps the result files under ``out`` in step with the rows (throttled), and reports progress."""

    def __init__(self, plan: Plan, rows: dict, on_event: Callable[[SweepProgress], None] | None, t0: float):
        self.plan, self.rows, self.on_event = plan, rows, on_event
        self.store = Store(plan.spec.out)
        self.summary = SweepSummary(points=len(plan.points), devices=len(plan.devices), rows=len(rows),
                                    trainings=len(plan.units), training_sharing=plan.sharing)
        self.t0 = t0
        self.last_plots = 0.0
        self.timer: threading.Timer | None = None
        self.closed = False
        self.lock = threading.RLock()
        self.activity = "starting"
        self.runner: Runner | None = None
        self.first_compute: float | None = None
        mean = sum(u.mult_adds for u in plan.units) / max(1, len(plan.units))
        self.weight = {p.id: 1.0 + p.unit.mult_adds / max(mean, 1.0) for p in plan.points}

    # -- files -------------------------------------------------------------------------------------------------------
    def result(self) -> SweepResult:
        spec = self.plan.spec
        rows = list(self.rows.values())
        res = SweepResult(out=str(spec.out), metric=spec.metric, budget_ms=spec.budget_ms, rows=rows,
                          spec=spec.to_dict(), notes=list(self.plan.notes))
        res.fronts, res.picks, res.accuracy_fits, res.latency_fits = analysis.analyze(rows, spec.metric,
                                                                                        spec.budget_ms)
        res.chance = analysis.chance_summary(rows)
        s = self.summary
        s.ok = sum(r.status == "ok" for r in rows)
        s.pending = sum(r.status == "pending" for r in rows)
        s.failed = len(rows) - s.ok - s.pending
        s.rows_reused = sum(r.reused for r in rows)
        s.rows_computed = len(rows) - s.pending - s.rows_reused
        s.seconds = round(time.monotonic() - self.t0, 1)
        if self.runner is not None:
            c = self.runner.counts
            s.trainings_reused, s.exports_reused, s.exports_computed = (c["trainings_reused"], c["exports_reused"],
                                                                        c["exports_computed"])
            s.train_seconds, s.export_seconds, s.bench_seconds = (round(c["train_seconds"], 1),
                                                                  round(c["export_seconds"], 1),
                                                                  round(c["bench_seconds"], 1))
        res.summary = s
        res.files = {"results_json": str(self.store.root / "results.json"),
                     "results_csv": str(self.store.root / "results.csv"), "sweep": str(self.store.root / "sweep.json")}
        return res

    def publish(self, force: bool = False) -> SweepResult | None:
        """Rewrite results.json/csv now (cheap), and the plots when they are older than :data:`PLOTS_EVERY` (a
        timer redraws skipped ones later, so the files never lag behind a finished row for long)."""
        with self.lock:
            self._progress()
            now = time.monotonic()
            draw = force or now - self.last_plots >= PLOTS_EVERY
            res = self.result()
            if draw:
                self._cancel_timer()
                self.last_plots = now
                try:
                    res.plots = write_plots(res, self.store.root / "plots")
                except ImportError:
                    res.notes.append("no plots: matplotlib is not installed (pip install 'edgekit[plot]')")
            else:
                if (self.store.root / "plots").is_dir():
                    res.plots = {p.stem: str(p) for p in sorted((self.store.root / "plots").glob("*.png"))}
                if self.timer is None and not self.closed:
                    self.timer = threading.Timer(PLOTS_EVERY - (now - self.last_plots), self._redraw)
                    self.timer.daemon = True
                    self.timer.start()
            write_text_atomic(self.store.root / "results.json", res.to_json() + "\n")
            write_text_atomic(self.store.root / "results.csv", to_csv(res.rows))
            return res

    def _redraw(self) -> None:
        with self.lock:
            self.timer = None
            if not self.closed:
                self.publish(force=True)

    def _cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def close(self) -> SweepResult | None:
        """The last publish (everything, plots included); no timer runs after it."""
        with self.lock:
            res = self.publish(force=True)
            self.closed = True
            self._cancel_timer()
            return res

    # -- progress ----------------------------------------------------------------------------------------------------
    def event(self, kind: str, **info: Any) -> None:
        with self.lock:
            if kind == "train":
                self.activity = f"training {info['unit']} ({info['how']})"
            elif kind == "export":
                self.activity = f"exporting {info['unit']} {info['precision']}"
            elif kind == "bench":
                self.activity = f"measuring {info['point']} on {info['device']}"
            if kind in ("train", "export", "bench") and self.first_compute is None:
                self.first_compute = time.monotonic()
            self._progress(info.get("row"))

    def _progress(self, row: SweepRow | None = None) -> None:
        if self.on_event is None:
            return
        by_point: dict[str, list[SweepRow]] = {}
        for r in self.rows.values():
            by_point.setdefault(r.point, []).append(r)
        done = {p for p, rs in by_point.items() if all(r.status != "pending" for r in rs)}
        computed = [p for p in done if not all(r.reused for r in by_point[p])]
        eta = None
        if computed and self.first_compute is not None:
            spent = time.monotonic() - self.first_compute
            eta = spent / sum(self.weight[p] for p in computed) * sum(
                w for p, w in self.weight.items() if p not in done)
        rows = list(self.rows.values())
        self.on_event(SweepProgress(len(done), len(by_point), sum(r.status != "pending" for r in rows), len(rows),
                                    sum(r.reused for r in rows),
                                    sum(r.status not in ("ok", "pending") for r in rows), eta, self.activity, row))


def _write_plan(plan: Plan) -> None:
    spec = plan.spec
    doc = {"schema": "edgekit.sweep/2",
           "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
           "spec": spec.to_dict(), "training_sharing": plan.sharing, "notes": plan.notes,
           "devices": [{"name": d.name, "transport": d.transport, "emulated": d.name in plan.emulated,
                        "on_this_machine": d.name in plan.on_host} for d in plan.devices],
           "units": [{"name": u.name, "key": u.key, "model": u.model, "options": dict(u.combo.options),
                      "grid": dict(u.combo.grid), "resolution": u.resolution, "mult_adds": u.mult_adds,
                      "params": u.params, "how": u.how, "base": u.base.name if u.base else None, "note": u.note}
                     for u in plan.units],
           "points": [p.id for p in plan.points]}
    Path(spec.out).mkdir(parents=True, exist_ok=True)
    write_text_atomic(Path(spec.out) / "sweep.json", json.dumps(doc, indent=2, default=str) + "\n")


def run_sweep(spec: SweepSpec, *, progress: Progress = no_progress,
              on_event: Callable[[SweepProgress], None] | None = None) -> SweepResult:
    """Run the sweep described by ``spec`` (see :func:`edgekit.sweep.run`)."""
    t0 = time.monotonic()
    cluster = None
    if spec.executor == "ray":   # the extra and the cluster are checked first, before anything is built or trained
        from . import ray_run

        cluster = ray_run.Cluster(spec)
    try:
        plan = make_plan(spec, progress, check=cluster.check if cluster is not None else None)
        if cluster is not None:
            names = sorted(filter(None, (cluster.label(n["NodeID"]) for n in cluster.alive())))
            plan.notes.append(f"executor ray: {len(names)} node(s) ({', '.join(names)}); artifacts come back through "
                              f"the object store into {spec.out}")
        rows = {(p.id, d.name): SweepRow(point=p.id, model=p.unit.model, name=p.unit.name,
                                         options=dict(p.unit.combo.grid), precision=p.precision, format=p.format,
                                         device=d.name, emulated=d.name in plan.emulated, resolution=p.unit.resolution,
                                         mult_adds=p.unit.mult_adds, params=p.unit.params, training=p.unit.how)
                for p in plan.points for d in plan.devices}
        store = Store(spec.out)
        with store.lock():
            cleaned = store.clean_partial()
            if cleaned:
                plan.notes.append(f"removed {cleaned} half-written file(s) left by an interrupted run")
            _write_plan(plan)
            pub = _Publisher(plan, rows, on_event, t0)
            if cluster is not None:
                runner = ray_run.RayRunner(plan, rows, cluster=cluster, publish=pub.publish, event=pub.event,
                                           progress=progress)
            else:
                runner = Runner(plan, rows, publish=pub.publish, event=pub.event, progress=progress)
            pub.runner = runner
            try:
                runner.run()
            except BaseException:
                pub.summary.interrupted = True
                pub.close()
                raise
            result = pub.close()
    finally:
        if cluster is not None:
            cluster.close()
    assert result is not None
    if result.chance is not None and result.chance.at_chance:
        warnings.warn(result.chance.statement, EdgekitWarning, stacklevel=3)
    if spec.require_budget and result.budget_met is False:
        raise budget_not_met(result)
    return result
