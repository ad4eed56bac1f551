"""``bench``: artifacts x devices -> :class:`BenchResult` rows. Devices run in parallel, one run at a time each.

Input errors (missing artifact, unknown device, bad option) raise before anything runs; device and model
failures become a row's ``status`` (``ok`` or the error kind) so the other rows still finish.
"""
from __future__ import annotations

import datetime as _dt
import json
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from .._jsonable import JsonMixin
from .._progress import Progress, no_progress
from ..errors import (AuthError, ConnectError, DeviceError, DeviceTimeout, EdgekitError, HostKeyError,
                      InvalidArgument, ModelLoadError, RemoteCommandError, RuntimeMissing)
from . import benchmark_model, history as _history
from .profiles import DeviceSpec, parse_device
from .transports import ConnectOptions, Transport, create, sha256_file

RUNNER = Path(__file__).with_name("runner.py")
FORMATS = {".tflite": "tflite", ".onnx": "onnx"}
_PRECISION_TOKENS = [("int16x8", "int16x8"), ("int16", "int16x8"), ("float16", "float16"), ("fp16", "float16"),
                     ("dynamic", "dynamic"), ("dynamic_range", "dynamic"), ("int8", "int8"), ("uint8", "int8"),
                     ("float32", "float32"), ("fp32", "float32"), ("float", "float32")]
INSTALL_HINT = ("on the device: pip install numpy ai-edge-litert   (older boards / Python < 3.10: "
                "pip install tflite-runtime 'numpy<2'; for .onnx: pip install onnxruntime)")


@dataclass
class ArtifactInfo(JsonMixin):
    """What we know about an artifact before running it (manifest beside it, else file name and tensors)."""

    path: str
    model: str
    format: str
    precision: str
    size_bytes: int
    sha256: str
    manifest: str | None = None


@dataclass
class BenchResult(JsonMixin):
    """One artifact on one device. Times in ms; ``None`` where the tool does not measure it (never invented)."""

    artifact: str
    model: str
    format: str
    precision: str
    size_mb: float
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
    fps: float | None = None
    peak_memory_mb: float | None = None
    memory_delta_mb: float | None = None
    transfers: list[str] = field(default_factory=list)
    timestamp: str = ""
    raw: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


# ------------------------------------------------------------------------------------------ artifacts
def artifact_info(path: str | Path) -> ArtifactInfo:
    """Model name and precision from ``<artifact>.json`` (or ``<stem>.json``), else from the file name/tensors."""
    p = Path(path)
    if not p.is_file():
        raise InvalidArgument(f"artifact {str(p)!r} does not exist or is not a file")
    fmt = FORMATS.get(p.suffix.lower())
    if fmt is None:
        raise InvalidArgument(f"cannot benchmark {p.name}: expected a .tflite or .onnx file")
    manifest, meta = None, {}
    for cand in (p.with_name(p.name + ".json"), p.with_suffix(".json")):
        if cand.is_file():
            try:
                data = json.loads(cand.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(data, dict):
                manifest, meta = str(cand), data
                break
    art = meta.get("artifact") if isinstance(meta.get("artifact"), dict) else {}
    model = meta.get("model") or meta.get("model_name") or art.get("model") or meta.get("name")
    if isinstance(model, dict):
        model = model.get("name")
    precision = meta.get("precision") or art.get("precision") or meta.get("quantize")
    if not model:
        model = re.sub(r"[_.-](int16x8|int8|uint8|float16|fp16|float32|fp32|dynamic(_range)?|float)$", "", p.stem,
                       flags=re.I) or p.stem
    if not precision:
        precision = _precision_from_name(p.stem) or _precision_from_tensors(p, fmt) or "unknown"
    return ArtifactInfo(str(p), str(model), fmt, str(precision), p.stat().st_size, sha256_file(p), manifest)


def _precision_from_name(stem: str) -> str | None:
    tokens = re.split(r"[^a-z0-9]+", stem.lower())
    joined = "_".join(tokens)
    for token, prec in _PRECISION_TOKENS:
        if token in tokens or (token.count("_") and token in joined):
            return prec
    return None


def _precision_from_tensors(path: Path, fmt: str) -> str | None:
    """Best effort from tensor dtypes with a host runtime (if installed); None when we cannot tell."""
    try:
        if fmt == "tflite":
            from ai_edge_litert.interpreter import Interpreter

            dtypes = {str(getattr(d["dtype"], "__name__", d["dtype"])) for d in
                      Interpreter(model_path=str(path)).get_tensor_details()}
        else:
            import onnx

            m = onnx.load(str(path), load_external_data=False)
            dtypes = {onnx.helper.tensor_dtype_to_np_dtype(t.data_type).name for t in m.graph.initializer}
            if any(n.op_type in ("QLinearConv", "QuantizeLinear", "ConvInteger", "MatMulInteger")
                   for n in m.graph.node):
                dtypes.add("int8")
    except Exception:  # noqa: BLE001 - inference of a label only
        return None
    if "float16" in dtypes:
        return "float16"
    if "int16" in dtypes and ("int8" in dtypes):
        return "int16x8"
    if "int8" in dtypes or "uint8" in dtypes:
        return "int8"
    return "float32" if dtypes else None


# ------------------------------------------------------------------------------------------ one run
_STATUS = [(HostKeyError, "host_key_error"), (AuthError, "auth_error"), (DeviceTimeout, "timeout"),
           (ConnectError, "connect_error"), (RuntimeMissing, "runtime_missing"), (ModelLoadError, "model_load_error"),
           (RemoteCommandError, "remote_error"), (InvalidArgument, "invalid_argument"), (DeviceError, "device_error"),
           (EdgekitError, "error")]


def status_of(exc: BaseException) -> str:
    return next((s for cls, s in _STATUS if isinstance(exc, cls)), "error")


@dataclass
class _Settings:
    threads: int | None
    runs: int
    warmup: int
    max_seconds: float
    delegate: str | None
    input: str | None
    seed: int
    timeout: float | None
    python: str | None
    benchmark_binary: str | None


def _runner_doc(done, device: str) -> dict[str, Any]:
    lines = [ln for ln in done.stdout.splitlines() if ln.strip().startswith("{")]
    doc = None
    if lines:
        try:
            doc = json.loads(lines[-1])
        except ValueError:
            doc = None
    if doc is None:
        text = (done.stderr or done.stdout).strip()
        if done.returncode in (126, 127) or "not found" in text or "No such file" in text:
            raise RuntimeMissing(f"no Python on {device}: {text[-200:]}",
                                 hint="install python3 >= 3.9 on the device, or point the profile's python: / "
                                      "--python at it; " + INSTALL_HINT)
        raise RemoteCommandError(f"the runner on {device} exited {done.returncode} without a result: {text[-300:]}")
    err = doc.get("error")
    if err:
        kind, msg, hint = err.get("kind"), err.get("message", "runner failed"), err.get("hint")
        cls = {"runtime_missing": RuntimeMissing, "model_load_error": ModelLoadError,
               "bad_argument": InvalidArgument}.get(kind, RemoteCommandError)
        if cls is RuntimeMissing:
            hint = INSTALL_HINT
        raise cls(f"{device}: {msg}", hint=hint)
    return doc


def _run_one(t: Transport, art: ArtifactInfo, s: _Settings) -> dict[str, Any]:
    spec = t.spec
    threads = s.threads or spec.threads
    model_path = t.put(art.path, art.sha256)
    if spec.uses_runner or s.python:  # --python on an adb device: a Linux board with Python
        python = t.expand(s.python or spec.python or ("python3" if t.kind != "local" else _local_python()))
        argv = [python, t.put(RUNNER), model_path, "--warmup", str(s.warmup), "--runs", str(s.runs),
                "--max-seconds", f"{s.max_seconds:g}", "--seed", str(s.seed)]
        if threads:
            argv += ["--threads", str(threads)]
        if s.delegate:
            argv += ["--delegate", s.delegate]
        if s.input:
            argv += ["--input", t.put(s.input)]
        return _runner_doc(t.run(argv, timeout=s.timeout), spec.name)
    if art.format != "tflite":
        raise InvalidArgument(f"{spec.name} has no Python (benchmark_model): it can only run .tflite, not "
                              f"{art.format}", hint="set python: in the profile for a Linux board with Python")
    binary = s.benchmark_binary or spec.benchmark_binary
    if not binary:
        raise InvalidArgument(f"{spec.name} needs TFLite's benchmark_model binary",
                              hint="pass --benchmark-binary PATH (host file to push, or a path on the device) or "
                                   "set benchmark_binary: in the profile")
    if s.input:
        raise InvalidArgument("--input is not supported with benchmark_model devices (it uses random inputs)")
    if Path(binary).is_file():
        binary = t.put(binary)
        t.run(["chmod", "+x", binary], check=True, taskset=False)
    argv = benchmark_model.command(binary, model_path, threads=threads, runs=s.runs, warmup=s.warmup,
                                   max_seconds=s.max_seconds, delegate=s.delegate)
    done = t.run(argv, timeout=s.timeout)
    text = done.stdout + "\n" + done.stderr
    if done.returncode in (126, 127) and "Inference timings" not in text:
        raise RuntimeMissing(f"benchmark_model could not be started on {spec.name}: {text.strip()[-200:]}",
                             hint="pass --benchmark-binary with an Android arm64 build of "
                                  "tensorflow/lite/tools/benchmark:benchmark_model")
    try:
        doc = benchmark_model.parse(text)
    except RemoteCommandError as exc:
        if re.search(r"(?i)failed to (mmap|load|build|allocate|create)|not a valid|could not (open|load)", text):
            raise ModelLoadError(f"{spec.name}: benchmark_model cannot load {Path(art.path).name}: "
                                 f"{exc.message.split(': ', 1)[-1]}") from exc
        raise
    doc["log_tail"] = text.strip()[-2000:]
    doc["command"] = argv
    doc["config"] = {"threads": threads, "delegate": s.delegate or "auto", "warmup": s.warmup, "runs": s.runs}
    probe = t.run(["uname", "-m"], timeout=30, taskset=False)
    doc["machine"] = {"machine": probe.stdout.strip() or None}
    return doc


def _local_python() -> str:
    import sys

    return sys.executable


def _result(art: ArtifactInfo, spec: DeviceSpec, doc: dict | None = None, exc: BaseException | None = None,
            transfers: Sequence[str] = ()) -> BenchResult:
    r = BenchResult(artifact=art.path, model=art.model, format=art.format, precision=art.precision,
                    size_mb=art.size_bytes / 1e6, sha256=art.sha256, device=spec.name, transport=spec.transport,
                    transfers=list(transfers),
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
    r.machine, r.cpu_model = mach.get("machine"), mach.get("cpu_model")
    r.python, r.numpy = mach.get("python"), mach.get("numpy")
    r.init_ms, r.first_inference_ms = doc.get("init_ms"), doc.get("first_inference_ms")
    r.warmup_count, r.warmup_mean_ms = warm.get("count"), warm.get("mean_ms")
    r.count = lat.get("count")
    for k in ("mean", "std", "min", "max", "p5", "p50", "p90", "p95", "p99"):
        setattr(r, f"{k}_ms", lat.get(k))
    r.fps = 1000.0 / r.mean_ms if r.mean_ms else None
    r.peak_memory_mb = mem.get("peak_rss_mb")
    r.memory_delta_mb = mem.get("overall_delta_mb")
    return r


# ------------------------------------------------------------------------------------------ bench
def bench(artifacts: str | Path | Iterable[str | Path],
          devices: str | DeviceSpec | Iterable[str | DeviceSpec] = "local",
          *, threads: int | None = None, runs: int = 50, warmup: int = 5, max_seconds: float = 150.0,
          delegate: str | None = None, input: str | Path | None = None, seed: int = 0,  # noqa: A002
          timeout: float | None = None, python: str | None = None, benchmark_binary: str | None = None,
          key_file: str | None = None, known_hosts: str | None = None, accept_new_host_key: bool = False,
          connect_timeout: float | None = None, history: str | Path | None = None,
          progress: Progress = no_progress) -> list[BenchResult]:
    """Benchmark every artifact on every device; returns one :class:`BenchResult` per (artifact, device).

    ``devices``: ``local``, ``ssh://user@host[:port]``, ``adb://SERIAL`` or profile names (see
    :mod:`edgekit.devices.profiles`). ``threads``/``python``/``benchmark_binary``/``key_file``/``known_hosts``
    override the profiles. ``history``: a JSON-lines file the results are appended to (None: not recorded).
    """
    arts = [artifacts] if isinstance(artifacts, (str, Path)) else list(artifacts)
    devs = [devices] if isinstance(devices, (str, DeviceSpec)) else list(devices)
    if not arts:
        raise InvalidArgument("no artifact to benchmark")
    if not devs:
        raise InvalidArgument("no device given", hint="e.g. --device local")
    for name, value, low in (("runs", runs, 1), ("warmup", warmup, 0), ("threads", threads, 1)):
        if value is not None and int(value) < low:
            raise InvalidArgument(f"--{name} must be >= {low}, got {value}")
    if max_seconds <= 0:
        raise InvalidArgument(f"--max-seconds must be > 0, got {max_seconds}")
    if delegate is not None and delegate not in ("auto", "xnnpack", "none") and not delegate.endswith(".so"):
        raise InvalidArgument(f"--delegate must be auto, xnnpack, none or a path to a delegate .so, got {delegate!r}")
    if input is not None and not Path(input).is_file():
        raise InvalidArgument(f"input file {str(input)!r} does not exist")
    infos = [artifact_info(a) for a in arts]
    specs = [parse_device(d) for d in devs]
    names = [s.name for s in specs]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise InvalidArgument(f"device(s) given twice: {', '.join(sorted(dup))}")
    settings = _Settings(threads, int(runs), int(warmup), float(max_seconds), delegate,
                         str(input) if input else None, int(seed),
                         timeout if timeout is not None else 2 * max_seconds + 120, python, benchmark_binary)
    options = ConnectOptions(key_file=key_file, known_hosts=known_hosts, accept_new_host_key=accept_new_host_key,
                             connect_timeout=connect_timeout)
    results: dict[tuple[int, int], BenchResult] = {}
    transports: dict[int, Transport] = {}
    cancel = threading.Event()
    lock = threading.Lock()

    def run_device(j: int) -> None:
        spec = specs[j]
        task = f"{spec.name}"
        progress(task, 0, len(infos))
        t = create(spec, options)
        with lock:
            transports[j] = t
        try:
            try:
                t.connect()
            except EdgekitError as exc:
                for i, art in enumerate(infos):
                    results[(i, j)] = _result(art, spec, exc=exc)
                return
            for i, art in enumerate(infos):
                if cancel.is_set():
                    break
                t.transfers = []
                try:
                    results[(i, j)] = _result(art, spec, _run_one(t, art, settings), transfers=t.transfers)
                except EdgekitError as exc:
                    results[(i, j)] = _result(art, spec, exc=exc, transfers=t.transfers)
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
    if history:
        _history.append(history, out)
    return out
