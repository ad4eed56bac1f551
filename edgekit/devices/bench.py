"""``bench``: artifacts x devices -> :class:`BenchResult` rows. Devices run in parallel, one run at a time each.

Input errors (missing artifact, unknown device, bad option) raise before anything runs; device and model
failures become a row's ``status`` (``ok``, ``parity_failed`` or the error kind) so the other rows still finish.
"""
from __future__ import annotations

import datetime as _dt
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .._jsonable import JsonMixin
from .._progress import Progress, no_progress
from .._spec import takes_spec
from .._units import MAX_THREADS
from ..errors import (AuthError, ConnectError, DeviceError, DeviceTimeout, EdgekitError, HostKeyError,
                      InvalidArgument, ModelLoadError, RemoteCommandError, RuntimeMissing)
from ..specs.bench import BenchSpec
from . import history as _history, stats
from .history import SCHEMA
from .artifacts import ArtifactInfo, artifact_info
from .profiles import DeviceSpec, check_runtime, parse_device
from .protocol import RUNNER, Settings, run_one
from .transports import ConnectOptions, Transport, create
from ..data.arrays import check_array_file
from ..packaging import header_of
from .transports import sha256_file
from .opprofile import attach

__all__ = ["bench", "BenchResult", "RUNNER", "status_of", "result", "SCHEMA"]


@dataclass
class BenchResult(JsonMixin):
    """One artifact on one device. Times in ms, sizes and memory in bytes (edgekit's one convention,
    :mod:`edgekit._units`); ``None`` where the tool does not measure it (never invented). ``schema`` names the key set
    (:data:`SCHEMA`; history files written before it have none)."""

    artifact: str
    model: str
    format: str
    precision: str
    size_bytes: int
    sha256: str
    device: str
    transport: str
    status: str = "ok"
    error: str | None = None
    hint: str | None = None
    tool: str | None = None  # "runner" or "benchmark_model"
    runtime: str | None = None
    runtime_version: str | None = None
    threads: int | None = None
    delegate: str | None = None
    machine: str | None = None
    cpu: str | None = None  # the core that ran it (runner: /proc/cpuinfo ARM part or x86 model name)
    cpu_model: str | None = None
    python: str | None = None
    numpy: str | None = None
    init_ms: float | None = None
    first_inference_ms: float | None = None
    warmup_count: int | None = None
    warmup_mean_ms: float | None = None
    count: int | None = None
    mean_ms: float | None = None
    std_ms: float | None = None
    min_ms: float | None = None
    max_ms: float | None = None
    p5_ms: float | None = None
    p50_ms: float | None = None
    p90_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    p50_ci_ms: list[float] | None = None  # bootstrap 95% interval (runner rows)
    mean_ci_ms: list[float] | None = None
    drift: dict[str, Any] | None = None  # last third vs first third of the runs
    fps: float | None = None
    peak_memory_bytes: int | None = None
    memory_delta_bytes: int | None = None
    pinned: bool | None = None
    parity: dict[str, Any] | None = None  # bench --verify: status passed/failed/not_checked + per output
    op_profile: dict[str, Any] | None = None  # --profile-ops
    warnings: list[str] = field(default_factory=list)
    transfers: list[str] = field(default_factory=list)
    bytes_transferred: int | None = None  # bytes copied to the device for this row (0: all cached, or local)
    package: dict[str, Any] | None = None  # an update package restored on the device: bytes, kind, restore_ms
    timestamp: str = ""
    raw: dict[str, Any] | None = None
    schema: str = SCHEMA

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def samples_ms(self) -> list[float]:
        return list((self.raw or {}).get("samples_ms") or [])


_STATUS = [(HostKeyError, "host_key_error"), (AuthError, "auth_error"), (DeviceTimeout, "timeout"),
           (ConnectError, "connect_error"), (RuntimeMissing, "runtime_missing"), (ModelLoadError, "model_load_error"),
           (RemoteCommandError, "remote_error"), (InvalidArgument, "invalid_argument"), (DeviceError, "device_error"),
           (EdgekitError, "error")]


def status_of(exc: BaseException) -> str:
    return next((s for cls, s in _STATUS if isinstance(exc, cls)), "error")


def result(art: ArtifactInfo, spec: DeviceSpec, doc: dict | None = None, exc: BaseException | None = None,
           transfers: Sequence[str] = (), transfer_bytes: int | None = None) -> BenchResult:
    """A row from the device's document (or from the error that stopped it)."""
    r = BenchResult(artifact=art.path, model=art.model, format=art.format, precision=art.precision,
                    size_bytes=int(art.size_bytes), sha256=art.sha256, device=spec.name, transport=spec.transport,
                    transfers=list(transfers), bytes_transferred=transfer_bytes,
                    timestamp=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    if exc is not None:
        r.status = status_of(exc)
        r.error = getattr(exc, "message", None) or str(exc)
        r.hint = getattr(exc, "hint", None)
        return r
    assert doc is not None
    lat, mach, mem = doc.get("latency_ms", {}), doc.get("machine") or {}, doc.get("memory") or {}
    cfg, warm = doc.get("config") or {}, doc.get("warmup") or {}
    r.tool, r.raw = doc.get("tool"), doc
    r.runtime, r.runtime_version = doc["runtime"].get("name"), doc["runtime"].get("version")
    r.threads, r.delegate = cfg.get("threads"), cfg.get("delegate")
    r.machine, r.cpu, r.cpu_model = mach.get("machine"), mach.get("cpu"), mach.get("cpu_model")
    r.python, r.numpy = mach.get("python"), mach.get("numpy")
    r.init_ms, r.first_inference_ms = doc.get("init_ms"), doc.get("first_inference_ms")
    r.warmup_count, r.warmup_mean_ms = warm.get("count"), warm.get("mean_ms")
    r.count = lat.get("count")
    for k in ("mean", "std", "min", "max", "p5", "p50", "p90", "p95", "p99"):
        setattr(r, f"{k}_ms", lat.get(k))
    r.fps = 1000.0 / r.mean_ms if r.mean_ms else None
    r.peak_memory_bytes = mem.get("peak_rss_bytes")
    r.memory_delta_bytes = mem.get("overall_delta_bytes")
    samples = doc.get("samples_ms") or []
    if samples:
        sizes = doc.get("block_runs") or []
        if len(sizes) >= 3 and sum(sizes) == len(samples):  # compare's rounds: resample whole blocks
            edges = np.cumsum(sizes)[:-1]
            blocks = np.split(np.asarray(samples, np.float64), edges)
            ci, mci = stats.block_bootstrap_ci(blocks, "median"), stats.block_bootstrap_ci(blocks, "mean")
        else:
            ci, mci = stats.bootstrap_ci(samples, "median"), stats.bootstrap_ci(samples, "mean")
        r.p50_ci_ms = list(ci) if ci else None
        r.mean_ci_ms = list(mci) if mci else None
        r.drift = stats.drift(samples)
        if r.drift and r.drift["flagged"]:
            r.warnings.append(f"latency drifted {r.drift['last_vs_first']:.2f}x from the first to the last third of "
                              "the runs (thermal throttling or a background job?)")
    system = doc.get("system") or {}
    before = system.get("before") or {}
    r.pinned = before.get("pinned")
    r.warnings += stats.system_warnings(before, system.get("after"), before.get("affinity"))
    r.op_profile = doc.get("op_profile")
    r.package = doc.get("package")
    if "parity_data" in doc:
        r.parity = doc["parity_data"]
        if r.parity.get("status") == "failed":
            r.status = "parity_failed"
            r.error = "outputs differ from the host reference: " + "; ".join(r.parity.get("failures") or [])
            r.hint = ("the device's runtime/kernels compute something else than the host's: compare runtime "
                      "versions (bench --json shows both), try --delegate none, or re-export")
        elif r.parity.get("status") == "inconclusive" and r.parity.get("note"):
            r.warnings.append(f"parity inconclusive: {r.parity['note']}")
    return r


def _check_packages(infos: list[ArtifactInfo], base: str | Path | None) -> None:
    """A delta package needs its base, and the right one, before anything connects."""
    deltas = [a for a in infos if a.package_kind == "delta"]
    if base is not None and not deltas:
        raise InvalidArgument("--base applies to delta packages (edgekit package --base)",
                              hint="drop --base, or bench the delta package")
    if not deltas:
        return
    if base is None:
        raise InvalidArgument(f"{Path(deltas[0].path).name} is a delta package: it restores only against the "
                              "deployed artifact", hint="pass that file with --base")
    if not Path(base).is_file():
        raise InvalidArgument(f"base {str(base)!r} does not exist", hint="pass the deployed artifact")
    sha = sha256_file(base)
    for a in deltas:
        need = header_of(a.path)["base"]["sha256"]
        if need != sha:
            raise InvalidArgument(f"{Path(a.path).name} was made against another base (sha256 {need[:12]}...) than "
                                  f"{Path(base).name} ({sha[:12]}...)", hint="pass the deployed artifact it was "
                                                                             "made from")
        a.base = str(base)


def check_threads(threads: int | None) -> None:
    """Refuse more interpreter threads than any device has cores (a bound, checked before connecting)."""
    if threads is not None and int(threads) > MAX_THREADS:
        raise InvalidArgument(f"--threads {threads} is more than edgekit runs ({MAX_THREADS}): no phone or board has "
                              "that many cores, and oversubscribed threads measure the scheduler, not the model",
                              hint="use the device's big-core count (e.g. --threads 4 on a Raspberry Pi 4), or "
                                   "leave --threads out for the profile's")


def _prepare(spec: BenchSpec):
    """Check every input before anything runs; -> (artifact infos, device specs, settings, connect options)."""
    s = spec
    arts, devs = list(s.artifacts), list(s.devices)
    threads, runs, warmup, max_seconds, delegate, seed = s.threads, s.runs, s.warmup, s.max_seconds, s.delegate, s.seed
    input, runtime, verify, verify_data, timeout = s.input, s.runtime, s.verify, s.verify_data, s.timeout  # noqa: A001
    if not arts:
        raise InvalidArgument("no artifact to benchmark", hint="e.g. edgekit bench artifacts/model_int8.tflite")
    if not devs:
        raise InvalidArgument("no device given", hint="e.g. --device local")
    for name, value, low in (("runs", runs, 1), ("warmup", warmup, 0), ("threads", threads, 1)):
        if value is not None and int(value) < low:
            raise InvalidArgument(f"--{name} must be >= {low}, got {value}",
                                  hint="--runs 50 is benchmark_model's default; fewer than 10 runs give wide "
                                       "intervals" if name == "runs" else f"pass --{name} {low} or more")
    check_threads(threads)
    if max_seconds <= 0:
        raise InvalidArgument(f"--max-seconds must be > 0, got {max_seconds}", hint="e.g. --max-seconds 60")
    if delegate is not None and delegate not in ("auto", "xnnpack", "none") and not delegate.endswith(".so"):
        raise InvalidArgument(f"--delegate must be auto, xnnpack, none or a path to a delegate .so, got {delegate!r}",
                              hint="--delegate none runs the reference kernels without XNNPACK")
    if runtime is not None:
        check_runtime(runtime)
    if input is not None and not Path(input).is_file():
        raise InvalidArgument(f"input file {str(input)!r} does not exist",
                              hint="pass a .npy (one input) or .npz (one array per input name)")
    if verify_data is not None:
        if not verify:
            raise InvalidArgument("--verify-data applies to --verify", hint="add --verify")
        if not Path(verify_data).is_file():
            raise InvalidArgument(f"verification data {str(verify_data)!r} does not exist",
                                  hint="pass the <artifact>.verify.npz that edgekit export wrote")

    if input is not None:
        check_array_file(input, "--input")
    if verify_data is not None:
        check_array_file(verify_data, "--verify-data")
    options = ConnectOptions(key_file=s.key_file, known_hosts=s.known_hosts, accept_new_host_key=s.accept_new_host_key,
                             connect_timeout=s.connect_timeout)
    infos = [artifact_info(a) for a in arts]
    _check_packages(infos, s.base)
    specs = [parse_device(d) for d in devs]
    names = [d.name for d in specs]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise InvalidArgument(f"device(s) given twice: {', '.join(sorted(dup))}", hint="give each device once")
    settings = Settings(threads, int(runs), int(warmup), float(max_seconds), delegate, str(input) if input else None,
                        int(seed), timeout if timeout is not None else 2 * max_seconds + 120, s.python,
                        s.benchmark_binary, runtime, bool(verify), str(verify_data) if verify_data else None,
                        bool(s.profile_ops))
    return infos, specs, settings, options


@takes_spec(BenchSpec, positional=("artifacts", "devices"))
def bench(spec: BenchSpec, *, progress: Progress = no_progress) -> list[BenchResult]:
    """Benchmark every artifact on every device; returns one :class:`BenchResult` per (artifact, device).
    Arguments: :class:`~edgekit.specs.BenchSpec` (= ``edgekit bench`` options), or a ready ``spec=``.

    ``devices``: ``local``, ``ssh://user@host[:port]``, ``adb://SERIAL`` or profile names (see
    :mod:`edgekit.devices.profiles`). ``threads``/``python``/``benchmark_binary``/``key_file``/``known_hosts``
    override the profiles. ``history``: a JSON-lines file the results are appended to (None: not recorded).
    ``verify``: replay the artifact's verification inputs on the device and compare the outputs with the host
    reference (a mismatch is the row status ``parity_failed``). ``profile_ops``: per-op times where the runtime
    exposes them, joined with the model's per-layer mult-adds. ``runtime`` overrides the profile's ``runtime:``.
    An update package (``.ekpkg``, :func:`edgekit.package`) is sent as it is, restored and sha256-checked on the
    device, then measured (``base``: the deployed artifact a delta package needs); ``bytes_transferred`` in each
    row counts what was copied.
    """
    infos, specs, settings, options = _prepare(spec)
    results: dict[tuple[int, int], BenchResult] = {}
    transports: dict[int, Transport] = {}
    cancel = threading.Event()
    lock = threading.Lock()

    def run_device(j: int) -> None:
        dev = specs[j]
        task = f"{dev.name}"
        progress(task, 0, len(infos))
        t = create(dev, options)
        with lock:
            transports[j] = t
        try:
            try:
                t.connect()
            except EdgekitError as exc:
                for i, art in enumerate(infos):
                    results[(i, j)] = result(art, dev, exc=exc)
                return
            for i, art in enumerate(infos):
                if cancel.is_set():
                    break
                t.transfers, t.transfer_bytes = [], 0
                try:
                    results[(i, j)] = result(art, dev, run_one(t, art, settings), transfers=t.transfers,
                                             transfer_bytes=t.transfer_bytes)
                except EdgekitError as exc:
                    results[(i, j)] = result(art, dev, exc=exc, transfers=t.transfers,
                                             transfer_bytes=t.transfer_bytes)
                progress(task, i + 1, len(infos))
        except BaseException:
            t.abort()
            raise
        finally:
            t.close()

    errors: list[BaseException] = []
    if len(specs) == 1:
        run_device(0)
    else:
        def wrapped(j: int) -> None:
            try:
                run_device(j)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the calling thread
                errors.append(exc)
                cancel.set()

        threads_ = [threading.Thread(target=wrapped, args=(j,), name=f"bench-{specs[j].name}", daemon=True)
                    for j in range(len(specs))]
        for th in threads_:
            th.start()
        try:
            for th in threads_:
                while th.is_alive():
                    th.join(0.2)
        except BaseException:
            cancel.set()
            with lock:
                active = list(transports.values())
            for t in active:
                t.abort()
            for th in threads_:
                th.join(15)
            raise
        if errors:
            raise errors[0]
    out = [results[(i, j)] for i in range(len(infos)) for j in range(len(specs)) if (i, j) in results]
    if spec.profile_ops:
        attach(out, infos)
    if spec.history:
        _history.append(spec.history, out)
    return out


def local_latency(path: str | Path, runs: int = 50, threads: int | None = None) -> tuple[float | None, str]:
    """``(p50 ms, note)`` of one artifact on this machine, from the on-device harness (:func:`bench` on ``local``);
    a device error is the note, with no latency (latency is optional where this is used: reports, the ladder)."""
    try:
        r = bench([str(path)], ["local"], runs=runs, warmup=5, threads=threads)[0]
    except EdgekitError as exc:  # a bug still surfaces
        return None, f"latency not measured: {exc}"
    if r.status != "ok":
        return None, f"latency not measured: {r.status}: {r.error}"
    return r.p50_ms, (f"local {r.runtime} {r.runtime_version or ''}, {r.threads or 'default'} threads, "
                      f"{r.count} runs")
