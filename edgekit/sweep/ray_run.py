"""``edgekit sweep --executor ray``: every training, export and measurement of the sweep is a Ray task; the rows,
files and resume are the local runner's (:class:`~edgekit.sweep.runner.Runner`, whose steps this module runs remotely).

Scheduling: trainings and exports declare ``--ray-cpus`` CPUs, a memory estimate and (on a cluster with GPUs) one
GPU per training, and are spread over the nodes (``SPREAD``); units train concurrently, a fine-tuned one after its
base. A device is measured one at a time (one thread per device on the driver, as locally) on the node that reaches
it: the node started with the custom resource ``device:NAME`` of capacity 1 (``ray start --resources
'{"device:rpi4": 1}'``; the task takes it, so two sweeps sharing the cluster never measure on it at once), else the
driver's node. A device on that node's machine (``local``, loopback SSH/adb) takes all the node's CPUs: nothing else
of the sweep runs there while it measures.

Artifacts travel through the object store: a task works in a temporary folder laid out like ``--out``, returns its
record and the bytes of every file it wrote, and the driver writes them under ``--out`` (temporary name, then
rename; the record last, so a half-transferred step is never reused). Inputs (the model to fine-tune or export, an
artifact to measure) go the same way. Data (``--data``, ``--test-data``, image folders) is read where the task runs:
the same path must exist on every node. Tasks are retried on other nodes when theirs dies (``max_retries``); a
device whose node left the cluster makes its rows fail, measured again on the next run.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

try:
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
except ImportError as _exc:  # the optional extra
    from ..errors import MissingDependency

    raise MissingDependency("ray", "ray", purpose="by edgekit sweep --executor ray") from _exc

from .._io import atomic_path
from .._jsonable import to_jsonable
from ..devices import status_of
from ..errors import ConnectError, EdgekitError, InvalidArgument
from .plan import Plan, Unit, _builtin, _check_devices
from .runner import (Runner, StepFailed, _failure, _NoGate, _release_memory, bench_point, export_unit, node_label,
                     train_unit)
from .store import Store, parity_file

#: the custom resource a node declares for a device it reaches (capacity 1)
DEVICE_RESOURCE = "device:{name}"
#: memory a TensorFlow task takes before its data (bytes)
TF_PROCESS_BYTES = 1536 << 20
#: seconds a device's resource may be missing from the cluster before its pending measurement fails
NODE_LOST_GRACE = 10.0
#: spec fields that may name files or folders read by the workers
PATH_FIELDS = ("data", "val_data", "test_data", "calib_data", "weights")
#: system-failure retries of a training or export (its node died, its worker crashed)
MAX_RETRIES = 3


def _parse_address(address: str) -> tuple[str, int] | None:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]") or "127.0.0.1", int(port)


class Cluster:
    """The Ray connection of one sweep: started here (no address: a one-machine Ray) or joined; closed after."""

    def __init__(self, spec) -> None:
        address = spec.ray_address or os.environ.get("RAY_ADDRESS") or None
        self.address = address
        if address and address.startswith("ray://"):
            raise InvalidArgument(f"--ray-address {address}: Ray Client addresses are not supported",
                                  hint="run the sweep on a node of the cluster (the head) with the GCS address "
                                       "HOST:PORT that `ray start --head` printed")
        where = "--ray-address" if spec.ray_address else "RAY_ADDRESS"
        if address not in (None, "auto", "local"):
            hp = _parse_address(address)
            if hp is None:
                raise InvalidArgument(f"{where} {address!r} is not HOST:PORT",
                                      hint="give the address `ray start --head` printed, e.g. 10.0.0.2:6379")
            try:
                socket.create_connection(hp, timeout=5).close()
            except OSError as exc:
                raise ConnectError(f"cannot reach the Ray cluster at {address} ({where}): "
                                   f"{exc.strerror or exc}",
                                   hint=f"start it on that machine with `ray start --head --port {hp[1]}`, check "
                                        f"{where}, or run the sweep with --executor local") from exc
        self.owned = not ray.is_initialized()
        if self.owned:
            term = signal.getsignal(signal.SIGTERM) if threading.current_thread() is threading.main_thread() else None
            try:
                ray.init(address=address or "local", logging_level=logging.WARNING, log_to_driver=False,
                         configure_logging=False, **({"include_dashboard": False} if address in (None, "local")
                                                     else {}))
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise ConnectError(f"cannot join the Ray cluster at {address or 'this machine'}: "
                                   f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}",
                                   hint="run the sweep on a machine of the cluster (the head, or one that joined "
                                        "with `ray start --address`), with the Ray and Python versions the cluster "
                                        "runs; or run it with --executor local") from exc
            finally:
                if term is not None:   # ray.init replaces the handler; the CLI's own turns SIGTERM into exit 143
                    signal.signal(signal.SIGTERM, term)
        self.driver_node = ray.get_runtime_context().get_node_id()
        self.nodes: dict[str, dict] = {}
        self.refresh()
        # the workers that will train import TensorFlow now, while the driver plans (seconds per worker otherwise
        # spent after the plan); Ray reuses them for the steps
        slots = sum(int(float(n.get("Resources", {}).get("CPU", 0)) // spec.ray_cpus) for n in self.alive())
        self.warming = [_warm.options(num_cpus=spec.ray_cpus, scheduling_strategy="SPREAD").remote()
                        for _ in range(min(slots, 16))]

    def close(self) -> None:
        if self.owned and ray.is_initialized():
            ray.shutdown()

    def refresh(self) -> None:
        self.nodes = {n["NodeID"]: n for n in ray.nodes()}

    def alive(self) -> list[dict]:
        return [n for n in self.nodes.values() if n.get("Alive")]

    def label(self, node_id: str | None) -> str | None:
        """A node's name in rows: its node name (by default its IP), with the id's start when names repeat."""
        if node_id is None:
            return None
        if node_id not in self.nodes:
            self.refresh()
        node = self.nodes.get(node_id)
        name = (node or {}).get("NodeName") or (node or {}).get("NodeManagerAddress") or "node"
        same = [n for n in self.nodes.values() if (n.get("NodeName") or n.get("NodeManagerAddress")) == name]
        return name if len(same) == 1 else f"{name}/{node_id[:6]}"

    def device_node(self, device) -> tuple[str | None, str]:
        """``(resource, node id)``: where ``device`` is measured (the node declaring its resource, else the driver's
        node)."""
        res = DEVICE_RESOURCE.format(name=device.name)
        nodes = [n for n in self.alive() if n.get("Resources", {}).get(res)]
        return (res, nodes[0]["NodeID"]) if nodes else (None, self.driver_node)

    def cpus(self, node_id: str) -> float:
        return float(self.nodes.get(node_id, {}).get("Resources", {}).get("CPU", 0))

    def check(self, spec, plan_devices: list[Any]) -> None:
        """Every device reached and probed from the node that measures it, before any training."""
        here = [d for d in plan_devices if self.device_node(d)[0] is None]
        if here:
            _check_devices(spec, here)
        for d in plan_devices:
            res, node = self.device_node(d)
            if res is None:
                continue
            out = ray.get(_step.options(num_cpus=0, resources={res: 1}, max_retries=1).remote(
                "check", {"spec": spec}, {"device": d}, {}, ""))
            rec = out["record"]
            if rec.get("status") != "ok":
                raise ConnectError(f"{rec.get('error')} (probed on Ray node {self.label(node)}, which declares "
                                   f"{res})", hint=rec.get("hint"))


def _check_resources(cluster: Cluster, spec, memory: dict[str, int]) -> None:
    """A task no node can ever run would wait forever: refused before any training."""
    nodes = cluster.alive()
    if not any(float(n.get("Resources", {}).get("CPU", 0)) >= spec.ray_cpus for n in nodes):
        most = max((float(n.get("Resources", {}).get("CPU", 0)) for n in nodes), default=0)
        raise InvalidArgument(f"--ray-cpus {spec.ray_cpus}: no Ray node has that many CPUs (the most is {most:g})",
                              hint=f"give --ray-cpus {max(1, int(most))} or less")
    need = max(memory.values())
    if not any(float(n.get("Resources", {}).get("memory", 0)) >= need for n in nodes):
        raise InvalidArgument(f"a training or export needs about {need / 2**30:.1f} GiB; no Ray node has that much "
                              f"memory for tasks", hint="add a larger node, or lower --test-limit / --calib-samples")


def _absolute(plan: Plan) -> Plan:
    """The plan as the workers get it: relative data paths made absolute (a worker's working folder is not the
    driver's); built-in dataset names and other values stay as they are."""
    def fix(value: Any) -> Any:
        if isinstance(value, str) and not _builtin(value) and not os.path.isabs(value) and Path(value).exists():
            return str(Path(value).resolve())
        return value

    spec = dataclasses.replace(plan.spec, **{k: fix(getattr(plan.spec, k)) for k in PATH_FIELDS})
    return dataclasses.replace(plan, spec=spec, test_source=fix(plan.test_source), calib_source=fix(plan.calib_source))


# -- on the worker ---------------------------------------------------------------------------------------------------
def _write_inputs(root: Path, inputs: dict[str, bytes]) -> None:
    for rel, data in inputs.items():
        dest = root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)


def _run_step(kind: str, context: dict[str, Any], args: dict[str, Any], store: Store) -> dict[str, Any]:
    plan: Plan | None = context.get("plan")
    if kind == "check":
        _check_devices(context["spec"], [args["device"]])
        return {"status": "ok"}
    if kind == "bench":
        return bench_point(context["spec"], store.root / args["artifact"], args["device"])
    assert plan is not None
    unit: Unit = next(u for u in plan.units if u.key == args["unit"])
    folder = store.unit_dir(unit.name, unit.key)
    if kind == "train":
        weights = args["weights"]
        if args.get("weights_file"):
            weights = str(store.root / args["weights_file"])
        return train_unit(plan, unit, store, folder, weights)
    return export_unit(plan, unit, args["quantize"], str(store.root / args["model"]), store,
                       store.root / args["folder"])


@ray.remote
def _warm() -> None:
    """Import TensorFlow and Keras in this worker (a step on it later does not wait for that)."""
    from .. import _keras  # noqa: F401 - imported for its side effect: TensorFlow loaded


_STATUS = {"train": "train_failed", "export": "export_failed", "check": "connect_error"}


@ray.remote
def _step(kind: str, context: dict[str, Any], args: dict[str, Any], inputs: dict[str, bytes],
          out_root: str) -> dict[str, Any]:
    """One step in a temporary folder laid out like ``--out``: its record (paths under that folder written as under
    ``out_root``) and the bytes of every file it wrote (``inputs`` excluded)."""
    started = time.time()
    node = ray.get_runtime_context().get_node_id()
    files: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory(prefix="edgekit-sweep-") as tmp:
        root = Path(tmp) / "out"
        root.mkdir()
        store = Store(root)
        _write_inputs(root, inputs)
        try:
            record = _run_step(kind, context, args, store)
        except Exception as exc:  # noqa: BLE001 - a failing step is a record, as in the local runner
            record = _failure(exc, _STATUS.get(kind) or (status_of(exc) if isinstance(exc, EdgekitError)
                                                        else "error"))
        else:
            for p in sorted(root.rglob("*")):
                rel = str(p.relative_to(root))
                if p.is_file() and rel not in inputs:
                    data = p.read_bytes()
                    if p.suffix == ".json" and out_root:
                        data = data.replace(str(root).encode(), out_root.encode())
                    files[rel] = data
        finally:
            if kind in ("train", "export"):
                _release_memory()
        if out_root:
            record = json.loads(json.dumps(to_jsonable(record)).replace(json.dumps(str(root))[1:-1],
                                                                        json.dumps(out_root)[1:-1]))
    return {"record": {**record, "node": node, "started": started, "ended": time.time()}, "files": files}


# -- on the driver ---------------------------------------------------------------------------------------------------
class _Cancelled(Exception):
    """The sweep is being interrupted: the step was cancelled on the cluster."""


class RayRunner(Runner):
    """The :class:`Runner` with every step a Ray task: units train concurrently (a fine-tuned unit after its base),
    their precisions export concurrently, devices measure in parallel, one measurement at a time each."""

    def __init__(self, plan: Plan, rows, *, cluster: Cluster, **kw: Any):
        super().__init__(plan, rows, **kw)
        self.cluster = cluster
        self.gate = _NoGate()      # Ray's CPU accounting keeps a device's node free while it measures
        self.node = cluster.label(cluster.driver_node)
        self.root = str(self.store.root.resolve())
        shipped = _absolute(plan)
        self.context = ray.put({"plan": shipped, "spec": shipped.spec})
        self.gpus = float(ray.cluster_resources().get("GPU", 0)) > 0
        sample = max((u.input_shape for u in plan.units), key=lambda s: s[0] * s[1] * s[2])
        held = 2 * (plan.test_samples + plan.spec.calib_samples) * 4 * sample[0] * sample[1] * sample[2]
        self.memory = {"train": TF_PROCESS_BYTES + (512 << 20), "export": TF_PROCESS_BYTES + held}
        _check_resources(cluster, plan.spec, self.memory)

    # -- the schedule ----------------------------------------------------------------------------------------------
    def _run(self) -> None:
        trained = {u.key: threading.Event() for u in self.plan.units}
        errors: list[BaseException] = []

        def guard(fn, *args):
            try:
                fn(*args)
            except BaseException as exc:  # noqa: BLE001 - handed to the main thread
                errors.append(exc)
                self.cancel.set()

        def unit_chain(unit: Unit) -> None:
            try:
                if unit.base is not None:
                    while not trained[unit.base.key].wait(0.2):
                        if self.cancel.is_set():
                            return
                if self.cancel.is_set():
                    return
                model_path = self._train(unit)
            finally:
                trained[unit.key].set()
            exports = []
            for quantize in dict.fromkeys(p.quantize for p in self.plan.points if p.unit is unit):
                points = [p for p in self.plan.points if p.unit is unit and p.quantize == quantize]
                if model_path is None:
                    fail = self.failed_units[unit.key]
                    for p in points:
                        self._update(p, status=fail["status"], error=fail["error"], hint=fail["hint"],
                                     node=node_label(fail.get("node")))
                    continue
                exports.append(threading.Thread(target=guard, args=(self._export, unit, quantize, points,
                                                                    model_path), daemon=True))
            for t in exports:
                t.start()
            for t in exports:
                t.join()

        chains = [threading.Thread(target=guard, args=(unit_chain, u), name=f"sweep-{u.name}", daemon=True)
                  for u in self.plan.units]
        try:
            for t in chains:
                t.start()
            for t in chains:
                while t.is_alive():
                    t.join(0.2)
            if errors:
                raise errors[0]
            self._finish()
        except BaseException:
            self._abort(chains)
            raise

    # -- steps -------------------------------------------------------------------------------------------------------
    def _on_host(self, counter: str, fn, *args: Any) -> Any:
        rec = fn(*args)
        with self.lock:
            self.counts[counter] += max(0.0, rec["ended"] - rec["started"])
        return rec

    def _submit(self, kind: str, args: dict[str, Any], inputs: dict[str, bytes], options: dict[str, Any],
                resource: str | None = None) -> dict[str, Any]:
        """Run one step on the cluster; its files written under --out; its record (node as a label), or StepFailed."""
        ref = _step.options(**options).remote(kind, self.context, args, inputs, self.root)
        out = self._wait(ref, resource)
        rec = out["record"]
        rec["node"] = self.cluster.label(rec.get("node"))
        if rec.get("status") not in ("ok", None) and kind != "bench":
            raise StepFailed(rec)
        for rel, data in out["files"].items():
            dest = (self.store.root / rel).resolve()
            if not dest.is_relative_to(Path(self.root)):
                raise EdgekitError(f"a Ray task returned a file outside --out: {rel}", hint="please report it")
            with atomic_path(dest) as tmp:
                tmp.write_bytes(data)
        return rec

    def _wait(self, ref, resource: str | None) -> dict[str, Any]:
        lost_since, checked = None, 0.0
        while True:
            ready, _ = ray.wait([ref], timeout=0.5)
            if ready:
                try:
                    return ray.get(ref)
                except ray.exceptions.RayError as exc:
                    if self.cancel.is_set():
                        raise _Cancelled() from exc
                    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
                    raise ConnectError(f"the Ray task failed after {MAX_RETRIES} retries: {text}",
                                       hint="a node left the cluster or a worker died (see the Ray logs); rerun "
                                            "the sweep: it resumes and retries this step") from exc
            if self.cancel.is_set():
                ray.cancel(ref, force=True)
                raise _Cancelled()
            if resource is not None and time.monotonic() - checked > 2.0:
                checked = time.monotonic()
                if ray.cluster_resources().get(resource):
                    lost_since = None
                elif lost_since is None:
                    lost_since = checked
                elif checked - lost_since > NODE_LOST_GRACE:
                    ray.cancel(ref, force=True)
                    raise ConnectError(f"the Ray node declaring {resource} left the cluster",
                                       hint="start it again (`ray start --address HEAD:PORT --resources "
                                            f"'{{\"{resource}\": 1}}'`) and rerun the sweep: it resumes")

    def _train_now(self, unit: Unit, folder) -> dict[str, Any]:
        inputs, args = {}, {"unit": unit.key, "weights": self.spec.weights}
        if unit.base is not None:
            rel = str(Path(self.models[unit.base.key]).relative_to(self.store.root))
            inputs[rel], args["weights"] = Path(self.models[unit.base.key]).read_bytes(), None
            args["weights_file"] = rel
        elif self.spec.weights and Path(str(self.spec.weights)).expanduser().is_file():
            src = Path(str(self.spec.weights)).expanduser()
            rel = f"inputs/{src.name}"
            inputs[rel], args["weights_file"] = src.read_bytes(), rel
        options = {"num_cpus": self.spec.ray_cpus, "memory": self.memory["train"], "scheduling_strategy": "SPREAD",
                   "max_retries": MAX_RETRIES, **({"num_gpus": 1} if self.gpus else {})}
        try:
            return self._submit("train", args, inputs, options)
        except _Cancelled:
            raise KeyboardInterrupt from None

    def _export_now(self, unit: Unit, quantize: str, model_path: str, folder) -> dict[str, Any]:
        rel = str(Path(model_path).relative_to(self.store.root))
        args = {"unit": unit.key, "quantize": quantize, "model": rel,
                "folder": str(Path(folder).relative_to(self.store.root))}
        options = {"num_cpus": self.spec.ray_cpus, "memory": self.memory["export"], "scheduling_strategy": "SPREAD",
                   "max_retries": MAX_RETRIES}
        try:
            return self._submit("export", args, {rel: Path(model_path).read_bytes()}, options)
        except _Cancelled:
            raise KeyboardInterrupt from None

    def _bench_now(self, point, device) -> dict[str, Any]:
        rel = self.rows[(point.id, device.name)].artifact
        art = self.store.root / rel
        inputs = {rel: art.read_bytes()}
        vfile = parity_file(art, self.spec.parity_samples)
        if vfile.exists():
            inputs[str(vfile.relative_to(self.store.root))] = vfile.read_bytes()
        resource, node = self.cluster.device_node(device)
        options: dict[str, Any] = {"max_retries": 1, "num_cpus": 0}
        if resource is not None:
            options["resources"] = {resource: 1}
        else:
            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node, soft=False)
        if device.name in self.plan.on_host:     # measured while nothing else of the sweep runs on its node
            options["num_cpus"] = self.cluster.cpus(node)
        # cancelled (_Cancelled): a failed record the worker thread drops while the sweep is interrupted
        return self._submit("bench", {"device": device, "artifact": rel}, inputs, options, resource)
