"""Running a sweep: train (or reuse), export every precision with verification and test accuracy in the
artifact's runtime (or reuse), then measure on every device (or reuse); results land under ``out`` as rows finish.

Concurrency: the main thread trains and exports; every device has one worker thread taking one measurement at a
time, so devices run in parallel. Work that shares this machine's CPUs (training, conversion, and measurements on
``local`` or on a loopback device such as a qemu guest) passes through one first-come-first-served gate, so a
local latency is never measured while TensorFlow trains next to it. :mod:`edgekit.sweep.ray_run` runs the same
steps (:func:`train_unit`, :func:`export_unit`, :func:`bench_point`) as tasks on a Ray cluster.

Every step's record says where and when it ran (``node``, ``started``/``ended``, seconds since the epoch); a row's
``node`` column says which node trained, exported and measured it.
"""
from __future__ import annotations

import queue
import signal
import socket
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from .._progress import Progress, no_progress
from ..errors import EdgekitError
from .plan import Plan, Point, Unit, recipe_stages
from .results import SweepRow
from .store import Store, parity_data, parity_file, test_labels
from .._chance import check
from .._signals import Terminated
from ..compression import compress
from ..devices import status_of

#: seconds an interrupted sweep waits for measurements already running (they finish and are recorded)
INTERRUPT_GRACE = 20.0


class HostGate:
    """First-come-first-served mutual exclusion (a ticket lock): nobody waits behind a thread that keeps
    re-acquiring. A waiter interrupted before its turn gives its ticket up, so the queue never stalls on it."""

    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._next = 0
        self._serving = 0
        self._abandoned: set[int] = set()

    def __enter__(self) -> "HostGate":
        with self._cv:
            ticket = self._next
            self._next += 1
            try:
                self._cv.wait_for(lambda: self._serving == ticket)
            except BaseException:
                self._abandoned.add(ticket)
                self._advance()
                raise
        return self

    def __exit__(self, *exc: Any) -> None:
        with self._cv:
            self._serving += 1
            self._advance()

    def _advance(self) -> None:
        while self._serving in self._abandoned:
            self._abandoned.discard(self._serving)
            self._serving += 1
        self._cv.notify_all()


class _NoGate:
    def __enter__(self) -> "_NoGate":
        return self

    def __exit__(self, *exc: Any) -> None:
        return None


class StepFailed(Exception):
    """A step that failed where it ran (a Ray worker), carrying the failure record made there (its traceback)."""

    def __init__(self, record: dict[str, Any]):
        super().__init__(record.get("error") or "failed")
        self.record = record


def _failure(exc: BaseException, status: str) -> dict[str, Any]:
    """The record of a failed step: status, one-line error, hint; foreign exceptions keep their traceback (a failing
    point must not stop the sweep, and must not hide what happened)."""
    if isinstance(exc, StepFailed):
        return dict(exc.record)
    if isinstance(exc, EdgekitError):
        return {"status": status, "error": exc.message, "hint": exc.hint}
    text = (str(exc).strip().splitlines() or [""])[-1][:300]
    return {"status": status, "error": f"{type(exc).__name__}: {text}",
            "hint": "the record's traceback says where; please report it", "traceback": traceback.format_exc()}


def node_label(train: str | None, export: str | None = None, bench: str | None = None) -> str | None:
    """A row's ``node`` column: the one node that trained, exported and measured it, else each step's."""
    steps = [(k, v) for k, v in (("train", train), ("export", export), ("measure", bench)) if v]
    if len({v for _, v in steps}) <= 1:
        return steps[0][1] if steps else None
    return ", ".join(f"{k} {v}" for k, v in steps)


def _release_memory() -> None:
    """Drop the Keras session's graph state between trained models: a long sweep builds dozens of them."""
    import gc
    import sys

    if "tf_keras" in sys.modules or "keras" in sys.modules:
        from .._keras import keras

        keras.backend.clear_session()
    gc.collect()


class Runner:
    """Executes a :class:`~edgekit.sweep.plan.Plan`; ``publish(rows)`` is called (under a lock) whenever rows
    change, ``event(kind, **info)`` for progress."""

    def __init__(self, plan: Plan, rows: dict[tuple[str, str], SweepRow], *, publish: Callable[[], None],
                 event: Callable[..., None], progress: Progress = no_progress):
        self.plan, self.spec, self.rows = plan, plan.spec, rows
        self.store = Store(plan.spec.out)
        self.publish, self.event, self.progress = publish, event, progress
        self.gate = HostGate()
        self.lock = threading.RLock()
        self.cancel = threading.Event()
        self.cancel_signal: int | None = None
        self.counts = {"trainings_reused": 0, "exports_reused": 0, "exports_computed": 0, "train_seconds": 0.0,
                       "export_seconds": 0.0, "bench_seconds": 0.0}
        self.node = socket.gethostname()           # where this runner's steps run (records' and rows' node)
        self.models: dict[str, str] = {}           # unit key -> trained (pre-compression) model path
        self.nodes: dict[str, str | None] = {}      # unit key -> the node that trained it
        self.point_nodes: dict[str, tuple] = {}    # point id -> (node that trained, node that exported)
        self.failed_units: dict[str, dict] = {}    # unit key -> failure record
        self.queues = {d.name: queue.Queue() for d in plan.devices}
        self.workers = [threading.Thread(target=self._worker, args=(d,), name=f"sweep-{d.name}", daemon=True)
                        for d in plan.devices]

    # -- rows ----------------------------------------------------------------------------------------------------------
    def _update(self, point: Point, devices=None, **values: Any) -> None:
        with self.lock:
            for d in devices or self.plan.devices:
                row = self.rows[(point.id, d.name)]
                for k, v in values.items():
                    setattr(row, k, v)
            self.publish()

    # -- the main loop -------------------------------------------------------------------------------------------------
    def _watch_signals(self) -> dict:
        """Note Ctrl-C (and a CLI-level SIGTERM/SIGHUP handler) in ``cancel`` before the previous handler runs:
        TensorFlow turns a KeyboardInterrupt raised inside its tracing callbacks into its own errors, which must not
        be recorded as a failed point."""
        saved = {}
        if threading.current_thread() is not threading.main_thread():
            return saved
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            previous = signal.getsignal(sig)
            if not callable(previous):
                continue   # default action (terminate) or ignored: nothing to wrap

            def handler(signum, frame, previous=previous):
                self.cancel_signal = signum
                self.cancel.set()
                previous(signum, frame)

            saved[sig] = previous
            signal.signal(sig, handler)
        return saved

    def _interrupted(self, exc: BaseException) -> None:
        """Raise KeyboardInterrupt when ``exc`` happened because the sweep is being interrupted."""
        if self.cancel.is_set():
            raise KeyboardInterrupt from exc

    def run(self) -> None:
        saved = self._watch_signals()
        for w in self.workers:
            w.start()
        try:
            self._run()
        finally:
            for sig, previous in saved.items():
                signal.signal(sig, previous)

    def _run(self) -> None:
        try:
            for unit in self.plan.units:
                if self.cancel.is_set():
                    break
                model_path = self._train(unit)
                for quantize in dict.fromkeys(p.quantize for p in self.plan.points if p.unit is unit):
                    if self.cancel.is_set():
                        break
                    points = [p for p in self.plan.points if p.unit is unit and p.quantize == quantize]
                    if model_path is None:
                        fail = self.failed_units[unit.key]
                        for p in points:
                            self._update(p, status=fail["status"], error=fail["error"], hint=fail["hint"],
                                         node=node_label(fail.get("node")))
                        continue
                    self._export(unit, quantize, points, model_path)
                _release_memory()
            self._finish()
        except BaseException:
            self._abort()
            raise

    def _finish(self) -> None:
        """Let the device workers drain their queues and end; a cancelled sweep raises as interrupted."""
        for q in self.queues.values():
            q.put(None)
        for w in self.workers:
            while w.is_alive():
                w.join(0.2)
        if self.cancel.is_set():
            # interrupted, but foreign code swallowed the exception (a KeyboardInterrupt raised inside one of
            # TensorFlow's finalizers is only printed): the sweep stopped early, so it must not end as finished
            sig = self.cancel_signal
            raise Terminated(sig) if sig is not None and sig != signal.SIGINT else KeyboardInterrupt()

    def _abort(self, threads=()) -> None:
        """Cancel, wake the device workers, and give them (and ``threads``) INTERRUPT_GRACE seconds to end."""
        self.cancel.set()
        for q in self.queues.values():
            q.put(None)
        deadline = time.monotonic() + INTERRUPT_GRACE
        for t in [*threads, *self.workers]:
            t.join(max(0.0, deadline - time.monotonic()))

    def _on_host(self, counter: str, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` through the host gate; its time (not the wait) is added to ``counts[counter]``; the record
        it returns gets this machine as its node and its start and end times."""
        with self.gate:
            t0, started = time.perf_counter(), time.time()
            try:
                rec = fn(*args)
                return {**rec, "node": self.node, "started": started, "ended": time.time()}
            finally:
                with self.lock:
                    self.counts[counter] += time.perf_counter() - t0

    # -- training ------------------------------------------------------------------------------------------------------
    def _train(self, unit: Unit) -> str | None:
        """Path of the unit's final model (trained, and compressed with the recipe), or None when it failed."""
        s = self.spec
        folder = self.store.unit_dir(unit.name, unit.key)
        rec = self.store.read(folder / "train.json")
        if rec and rec.get("status") == "ok" and (self.store.root / rec["model"]).exists() and \
                (self.store.root / rec["trained"]).exists():
            with self.lock:
                self.counts["trainings_reused"] += 1
            self.models[unit.key] = str(self.store.root / rec["trained"])
            self._set_training(unit, rec)
            return str(self.store.root / rec["model"])
        if unit.base is not None and unit.base.key not in self.models:
            self.failed_units[unit.key] = {"status": "train_failed", "hint": "see the base model's rows",
                                           "error": f"its base model {unit.base.name} failed to train"}
            return None
        self.event("train", unit=unit.name, how=unit.how)
        try:
            record = self._on_host("train_seconds", self._train_now, unit, folder)
        except Exception as exc:  # noqa: BLE001 - a failing point is a row with its status; the sweep goes on
            self._interrupted(exc)
            self.failed_units[unit.key] = _failure(exc, "train_failed")
            self.nodes[unit.key] = self.failed_units[unit.key].get("node")
            self.store.write(folder / "train.json", self.failed_units[unit.key])
            return None
        self.store.write(folder / "train.json", record)
        self.models[unit.key] = str(self.store.root / record["trained"])
        self._set_training(unit, record)
        return str(self.store.root / record["model"])

    def _train_now(self, unit: Unit, folder) -> dict[str, Any]:
        weights = self.models[unit.base.key] if unit.base is not None else self.spec.weights
        return train_unit(self.plan, unit, self.store, folder, weights, self.progress)

    def _set_training(self, unit: Unit, rec: dict[str, Any]) -> None:
        self.nodes[unit.key] = rec.get("node")
        how = rec.get("how") or unit.how
        if rec.get("compression"):
            how += " + " + " -> ".join(rec["compression"]["stages"])
        for p in self.plan.points:
            if p.unit is unit:
                self._update(p, training=how, node=node_label(rec.get("node")))

    # -- export --------------------------------------------------------------------------------------------------------
    def _export(self, unit: Unit, quantize: str, points: list[Point], model_path: str) -> None:
        s = self.spec
        key = self.plan.export_key(unit, quantize)
        folder = self.store.export_dir(self.store.unit_dir(unit.name, unit.key), f"{points[0].precision}-{key}")
        rec = self.store.read(folder / "export.json")
        arts = (rec or {}).get("artifacts", {})
        reusable = rec is not None and rec.get("status") == "ok" and all(
            (self.store.root / arts.get(p.format, {}).get("path", "-")).exists() for p in points)
        if reusable:
            with self.lock:
                self.counts["exports_reused"] += 1
        else:
            self.event("export", unit=unit.name, precision=points[0].precision)
            try:
                rec = self._on_host("export_seconds", self._export_now, unit, quantize, model_path, folder)
            except Exception as exc:  # noqa: BLE001 - see _train
                self._interrupted(exc)
                rec = {**_failure(exc, "export_failed"), "artifacts": {}}
            with self.lock:
                self.counts["exports_computed"] += 1
            self.store.write(folder / "export.json", rec)
        node = node_label(self.nodes.get(unit.key), rec.get("node"))
        for p in points:
            self.point_nodes[p.id] = (self.nodes.get(unit.key), rec.get("node"))
            art = rec["artifacts"].get(p.format)
            if art is None:
                self._update(p, status=rec["status"], error=rec.get("error"), hint=rec.get("hint"), node=node)
                continue
            values = {k: art.get(k) for k in ("accuracy", "keras_accuracy", "test_samples", "size_bytes", "note")}
            values.update(self._chance(art))
            self._update(p, artifact=art["path"], node=node, **values)
            if art["status"] != "ok":
                self._update(p, status=art["status"], error=art.get("error"), hint=art.get("hint"))
                continue
            if s.device_parity:
                parity_data(self.store.root / art["path"], s.parity_samples)
            for d in self.plan.devices:
                self._bench_or_reuse(p, d, key, folder)

    def _chance(self, art: dict[str, Any]) -> dict[str, Any]:
        """The artifact's accuracy against the chance accuracy of the test labels it was scored on."""
        labels = test_labels(self.store.root / art["path"]) if art.get("accuracy") is not None else None
        if labels is None or not len(labels):
            return {}
        c = check(art["accuracy"], labels)
        return {"chance": c.chance, "chance_p_value": c.p_value, "above_chance": c.above_chance,
                "min_accuracy": c.min_accuracy}

    def _export_now(self, unit: Unit, quantize: str, model_path: str, folder) -> dict[str, Any]:
        return export_unit(self.plan, unit, quantize, model_path, self.store, folder, self.progress)

    # -- bench ---------------------------------------------------------------------------------------------------------
    def _bench_or_reuse(self, point: Point, device, export_key: str, folder) -> None:
        path = self.store.bench_path(folder, device.name, point.format, self.plan.bench_key(export_key, device,
                                                                                            point.format))
        rec = self.store.read_ok(path)
        if rec is not None:
            self._record_bench(point, device, rec, reused=True)
            return
        self.queues[device.name].put((point, path))

    def _worker(self, device) -> None:
        gate = self.gate if device.name in self.plan.on_host else _NoGate()
        q = self.queues[device.name]
        while True:
            job = q.get()
            if job is None or self.cancel.is_set():
                return
            point, path = job
            self.event("bench", point=point.id, device=device.name)
            with gate:
                if self.cancel.is_set():
                    return
                t0, started = time.perf_counter(), time.time()
                try:
                    rec = self._bench_now(point, device)
                except Exception as exc:  # noqa: BLE001 - a device failure is a row's status

                    rec = _failure(exc, status_of(exc) if isinstance(exc, EdgekitError) else "error")
                rec = {"node": self.node, "started": started, "ended": time.time(), **rec}
                # the measurement's own time (on Ray: the task's, not its wait for the device's node)
                seconds = max(0.0, rec["ended"] - rec["started"]) if "ended" in rec else time.perf_counter() - t0
            if self.cancel.is_set() and rec["status"] != "ok":
                return   # killed by the interrupt (Ctrl-C reaches the runner too): left pending, measured on resume
            with self.lock:
                self.counts["bench_seconds"] += seconds
            self.store.write(path, rec)
            self._record_bench(point, device, rec, reused=False)

    def _bench_now(self, point: Point, device) -> dict[str, Any]:
        return bench_point(self.spec, self.store.root / self.rows[(point.id, device.name)].artifact, device)

    def _record_bench(self, point: Point, device, rec: dict[str, Any], *, reused: bool) -> None:
        r = rec.get("result") or {}
        values = {"status": rec.get("status", "error"), "error": rec.get("error"), "hint": rec.get("hint"),
                  "reused": reused}
        for k in ("p50_ms", "p90_ms", "mean_ms", "std_ms", "peak_memory_bytes", "machine"):
            values[k] = r.get(k)
        values["parity"] = (r.get("parity") or {}).get("status")
        if r.get("runtime"):
            values["runtime"] = f"{r['runtime']} {r.get('runtime_version') or ''}".strip()
        values["node"] = node_label(*self.point_nodes.get(point.id, (None, None)), rec.get("node"))
        self._update(point, [device], **values)
        self.event("row", point=point.id, device=device.name, row=self.rows[(point.id, device.name)])


# -- the steps (run here by Runner, on a Ray worker by ray_run) --------------------------------------------------------
def train_unit(plan: Plan, unit: Unit, store: Store, folder, weights: str | None,
               progress: Progress = no_progress) -> dict[str, Any]:
    """Train ``unit`` (from ``weights``: a file, ``imagenet``/``none``, or its base unit's trained model) into
    ``folder``, then compress it with the recipe's stages; the train record (paths relative to ``store``)."""
    from ..compression import train

    s = plan.spec
    trained = folder / "trained.keras"
    epochs, lr = (s.finetune_epochs_value, s.finetune_lr_value) if unit.base is not None else (s.epochs, s.lr)
    # test_limit=1: train() scores Keras on a built-in test split; the sweep measures accuracy on the whole
    # test data in the artifact's runtime (and Keras' on the same samples) at export, so skip it here
    report = train(unit.model, s.data, epochs=epochs, batch_size=s.batch_size, lr=lr, optimizer=s.optimizer,
                   val_fraction=s.val_fraction, val_data=s.val_data, limit=s.limit, seed=s.seed,
                   bn_momentum=s.bn_momentum, precise_bn=s.precise_bn, preprocess=s.preprocess,
                   out=str(trained), weights=weights,
                   test_limit=1, progress=progress, **unit.create_options()).report
    record = {"status": "ok", "unit": unit.name, "key": unit.key, "how": unit.how, "note": unit.note,
              "trained": store.rel(trained), "model": store.rel(trained),
              "train": {k: v for k, v in report.to_dict().items() if k not in ("test_accuracy", "test_samples")}}
    if plan.stage_keys:
        final = folder / "model.keras"
        result = compress(str(trained), data=s.data, stages=recipe_stages(s, plan.stage_keys),
                          batch_size=s.batch_size, limit=s.limit, seed=s.seed, val_fraction=s.val_fraction,
                          bn_momentum=s.bn_momentum, preprocess=s.preprocess, save_model=str(final),
                          out=str(folder / "compression"), test_limit=s.test_limit, progress=progress)
        record["model"] = store.rel(final)
        record["compression"] = {"stages": result.stages, "report": result.report.report_json}
    return record


def export_unit(plan: Plan, unit: Unit, quantize: str, model_path: str, store: Store, folder,
                progress: Progress = no_progress) -> dict[str, Any]:
    """Export ``model_path`` at ``quantize`` in every format into ``folder``, verified and scored on the test data
    in each artifact's runtime; the export record (paths relative to ``store``)."""
    from ..exporters import export

    s = plan.spec
    result = export(model_path, quantize=quantize, formats=s.formats, out=str(folder),
                    calib_data=plan.calib_source if quantize in ("int8", "int16x8") else None,
                    calib_samples=s.calib_samples if quantize in ("int8", "int16x8") else None, io=s.io,
                    per_tensor=s.per_tensor, verify=False, verify_data=plan.test_source,
                    verify_samples=plan.test_samples, opset=s.opset, seed=s.seed,
                    progress=progress)
    arts = {}
    for a in result.artifacts:
        v = a.verification
        entry = {"path": store.rel(a.path), "manifest": store.rel(a.manifest), "size_bytes": a.size_bytes,
                 "sha256": a.sha256, "status": "ok", "accuracy": v.artifact_accuracy if v else None,
                 "keras_accuracy": v.keras_accuracy if v else None, "test_samples": v.samples if v else None,
                 "verification": v.to_dict() if v else None}
        if v is None or v.artifact_accuracy is None:
            entry.update(status="export_failed", error="no accuracy: the test labels do not match the model's "
                                                       "outputs", hint="check --classes and --test-data")
        elif v.status == "failed":  # "inconclusive" (too few samples to tell, or constant Keras outputs): a note
            failed = f"{a.path.name} does not match the Keras model: {'; '.join(v.failures)}"
            if s.verify:
                entry.update(status="verification_failed", error=failed,
                             hint="the artifact computes something else than the trained model; --no-verify "
                                  "keeps it in the table")
            else:
                entry["note"] = f"verification FAILED (kept: --no-verify): {failed}"
        elif v.note:
            entry["note"] = v.note
        arts[a.format] = entry
    return {"status": "ok", "unit": unit.name, "quantize": quantize, "artifacts": arts,
            "calibration": result.calibration.to_dict(), "verify_data": result.verify_data}


def bench_point(spec, art: Path, device) -> dict[str, Any]:
    """Measure the artifact ``art`` on ``device`` (with its parity samples beside it, when asked); the bench record."""
    from ..devices import bench

    s = spec
    vfile = parity_file(art, s.parity_samples)
    parity = {"verify": True, "verify_data": str(vfile)} if s.device_parity and vfile.exists() else \
        {"verify": s.device_parity}
    (r,) = bench([str(art)], devices=[device], threads=s.threads, runs=s.runs, warmup=s.warmup,
                 max_seconds=s.max_seconds, delegate=s.delegate, seed=s.seed, timeout=s.timeout, python=s.python,
                 runtime=s.runtime, **parity,
                 benchmark_binary=s.benchmark_binary, key_file=s.key_file, known_hosts=s.known_hosts,
                 accept_new_host_key=s.accept_new_host_key, connect_timeout=s.connect_timeout)
    result = r.to_dict()
    result.pop("raw", None)
    return {"status": r.status, "error": r.error, "hint": r.hint, "result": result}
