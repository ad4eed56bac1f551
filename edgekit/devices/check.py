"""``edgekit devices check``: reach a device and say what it can run and how to install what is missing."""
from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._io import json_loads
from .._jsonable import JsonMixin
from .._spec import takes_spec
from ..errors import EdgekitError
from .bench import status_of
from ..specs.bench import CheckSpec
from .profiles import check_runtime, parse_device
from .protocol import RUNNER
from .transports import ConnectOptions, create


@dataclass
class CheckReport(JsonMixin):
    """What ``edgekit devices check`` found on a device, and how to fix what is missing."""

    device: str
    transport: str
    reachable: bool
    status: str = "ok"
    error: str | None = None
    machine: str | None = None
    cpu: str | None = None
    cpu_model: str | None = None
    python: str | None = None
    numpy: str | None = None
    runtimes: dict[str, Any] = field(default_factory=dict)
    benchmark_binary: str | None = None
    formats: list[str] = field(default_factory=list)  # artifact formats the device can run
    ready: bool = False  # can run .tflite (the primary format)
    fixes: list[str] = field(default_factory=list)


@takes_spec(CheckSpec, positional=("device",))
def check(spec: CheckSpec) -> CheckReport:
    """Reach ``device`` and probe it (machine, Python, numpy, interpreters). Connection failures are a status.
    Arguments: :class:`~edgekit.specs.CheckSpec` (= ``edgekit devices check`` options), or a ready ``spec=``."""
    python, benchmark_binary = spec.python, spec.benchmark_binary
    dev = parse_device(spec.device)
    rep = CheckReport(device=dev.name, transport=dev.transport, reachable=False)
    t = create(dev, ConnectOptions(key_file=spec.key_file, known_hosts=spec.known_hosts,
                                   accept_new_host_key=spec.accept_new_host_key, connect_timeout=spec.connect_timeout))
    try:
        t.connect()
    except EdgekitError as exc:
        t.close()
        rep.status, rep.error = status_of(exc), exc.message
        rep.fixes.append(exc.hint or "check that the device is on and reachable")
        return rep
    rep.reachable = True
    try:
        if dev.uses_runner or python:
            py = python or dev.python or ("python3" if dev.transport != "local" else sys.executable)
            done = t.run([t.expand(py), t.put(RUNNER), "--probe"], timeout=120)
            try:
                doc = json_loads(done.stdout.strip().splitlines()[-1])
            except (ValueError, IndexError):
                rep.status, rep.error = "runtime_missing", f"cannot run {py} on the device: " + \
                    (done.stderr or done.stdout).strip()[-200:]
                rep.fixes.append("install python3 (>= 3.9) on the device, or set python: in the profile / --python")
                return rep
            m = doc.get("machine", {})
            rep.cpu = m.get("cpu")
            rep.machine, rep.cpu_model, rep.python, rep.numpy = m.get("machine"), m.get("cpu_model"), \
                m.get("python"), m.get("numpy")
            rep.runtimes = doc.get("runtimes", {})
            have = {k for k, v in rep.runtimes.items() if v.get("available")}
            if not doc.get("numpy_available"):
                rep.fixes.append(f"{py} -m pip install numpy   (use 'numpy<2' with tflite-runtime)")
            if not have & {"ai_edge_litert", "tflite_runtime", "tensorflow"}:
                rep.fixes.append(f"{py} -m pip install ai-edge-litert   (older boards: {py} -m pip install "
                                 "tflite-runtime 'numpy<2')")
            if "onnxruntime" not in have:
                rep.fixes.append(f"for .onnx artifacts: {py} -m pip install onnxruntime")
            want = check_runtime(dev.runtime, f"{dev.name}: runtime") if dev.runtime else None
            if want and want not in have:
                dist = {"ai_edge_litert": "ai-edge-litert", "tflite_runtime": "tflite-runtime 'numpy<2'"}.get(want, want)
                rep.fixes.append(f"the profile asks for runtime {dev.runtime}: {py} -m pip install {dist}")
            if doc.get("numpy_available"):
                rep.formats = [f for f, ok in (("tflite", have & {"ai_edge_litert", "tflite_runtime", "tensorflow"}),
                                               ("onnx", have & {"onnxruntime"})) if ok]
            rep.ready = "tflite" in rep.formats and not (want and want not in have)
        else:
            rep.formats = ["tflite"]
            rep.machine = t.run(["uname", "-m"], timeout=30, taskset=False).stdout.strip() or None
            binary = benchmark_binary or dev.benchmark_binary
            rep.benchmark_binary = binary
            if not binary:
                rep.fixes.append("set benchmark_binary: in the profile or pass --benchmark-binary (an Android build "
                                 "of tensorflow/lite/tools/benchmark:benchmark_model)")
            elif Path(binary).is_file():
                rep.ready = True  # a host file: pushed at bench time
            else:
                probe = t._shell(f"[ -x {shlex.quote(binary)} ] && echo yes", timeout=30)
                rep.ready = probe.stdout.strip() == "yes"
                if not rep.ready:
                    rep.fixes.append(f"{binary} is not on the device: adb push benchmark_model {binary} && "
                                     f"adb shell chmod +x {binary}")
        if not rep.ready:
            rep.status = "runtime_missing"
    except EdgekitError as exc:
        rep.status, rep.error = status_of(exc), str(exc)
    finally:
        t.close()
    return rep
