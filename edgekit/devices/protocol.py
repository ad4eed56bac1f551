"""The run protocol: one artifact on one connected device -> the runner's JSON document (or benchmark_model's,
parsed into the same schema), plus on-device parity and per-op times when asked. Errors are edgekit errors."""
from __future__ import annotations

import os
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._io import json_loads
from ..errors import EdgekitError, InvalidArgument, ModelLoadError, RemoteCommandError, RuntimeMissing
from . import benchmark_model, parity
from .artifacts import ArtifactInfo
from .transports import Transport, sha256_file
from .. import _tflite, _verify_data as verify_data

RUNNER = Path(__file__).with_name("runner.py")
INSTALL_HINT = ("on the device: pip install numpy ai-edge-litert   (older boards / Python < 3.10: "
                "pip install tflite-runtime 'numpy<2'; for .onnx: pip install onnxruntime)")


@dataclass(frozen=True)
class Settings:
    """How to run (the bench() arguments that reach the device)."""

    threads: int | None = None
    runs: int = 50
    warmup: int = 5
    max_seconds: float = 150.0
    delegate: str | None = None
    input: str | None = None
    seed: int = 0
    timeout: float | None = None
    python: str | None = None
    benchmark_binary: str | None = None
    runtime: str | None = None
    verify: bool = False
    verify_data: str | None = None
    profile_ops: bool = False


def runner_doc(done, device: str) -> dict[str, Any]:
    """The runner's last JSON line -> dict; its ``error`` object -> the matching edgekit error."""
    lines = [ln for ln in done.stdout.splitlines() if ln.strip().startswith("{")]
    doc = None
    if lines:
        try:
            doc = json_loads(lines[-1])
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
        if cls is RuntimeMissing and "runtime:" not in msg:
            hint = INSTALL_HINT
        raise cls(f"{device}: {msg}", hint=hint)
    return doc


def verify_file(art: ArtifactInfo, s: Settings) -> str:
    """The verification data for ``art``: ``--verify-data`` or the manifest's, checked against its sha256."""
    path = s.verify_data or art.verify_data
    if not path:
        raise InvalidArgument(f"{Path(art.path).name} has no verification data (no manifest naming a .verify.npz)",
                              hint="re-export it with edgekit export (writes <artifact>.verify.npz), or pass "
                                   "--verify-data FILE.verify.npz")
    if not Path(path).is_file():
        raise InvalidArgument(f"verification data {path} does not exist", hint="re-export the artifact")
    if not s.verify_data and art.verify_sha256 and sha256_file(path) != art.verify_sha256:
        raise InvalidArgument(f"{Path(path).name} does not match the sha256 its manifest records",
                              hint="re-export the artifact (the verification data was changed or replaced)")
    return str(path)


def run_runner(t: Transport, art: ArtifactInfo, s: Settings, model_path: str) -> dict[str, Any]:
    spec = t.spec
    threads = s.threads or spec.threads
    python = t.expand(s.python or spec.python or ("python3" if t.kind != "local" else sys.executable))
    argv = [python, t.put(RUNNER), model_path, "--warmup", str(s.warmup), "--runs", str(s.runs),
            "--max-seconds", f"{s.max_seconds:g}", "--seed", str(s.seed)]
    if threads:
        argv += ["--threads", str(threads)]
    if s.delegate:
        argv += ["--delegate", s.delegate]
    runtime = s.runtime or spec.runtime
    if runtime:
        argv += ["--runtime", runtime]
    if s.input:
        argv += ["--input", t.put(s.input)]
    vfile = None
    if s.verify:
        vfile = verify_file(art, s)
        argv += ["--verify-inputs", t.put(vfile), "--outputs", t.run_file("outputs.npz")]
    if s.profile_ops:
        argv += ["--profile-ops"]
    try:
        doc = runner_doc(t.run(argv, timeout=s.timeout), spec.name)
    except ModelLoadError as exc:
        raise name_every_custom_op(exc, art) from None
    if doc.get("model", {}).get("sha256") not in (None, art.sha256):
        raise RemoteCommandError(f"the model the runner read on {spec.name} is not {Path(art.path).name} "
                                 "(sha256 differs)", hint="check the device's storage; rerun")
    if vfile:
        doc["parity_data"] = _parity(t, art, s, vfile, doc)
    return doc


def name_every_custom_op(exc: ModelLoadError, art: ArtifactInfo) -> ModelLoadError:
    """An interpreter stops at the first custom op it lacks: name the file's others, and which of them the host's
    LiteRT lacks too (probed by :func:`edgekit._tflite.missing_custom_ops`)."""
    if art.format != "tflite" or "lacks the op(s)" not in exc.message:
        return exc

    try:
        custom = sorted(_tflite.read(Path(art.path).read_bytes(), Path(art.path).name).custom_ops)
    except (OSError, EdgekitError):  # no schema module on the host, or an unreadable file: keep the device's words
        return exc
    if not custom:
        return exc
    named = set(re.findall(r"lacks the op\(s\) (.*)$", exc.message)[0].split(", "))
    others = [c for c in custom if c not in named]
    message = exc.message
    if others:
        lacking = _tflite.missing_custom_ops(others)
        if lacking:
            message += f"; the host's LiteRT also lacks {', '.join(lacking)} (the device stops at the first it lacks)"
        resolved = [c for c in others if c not in lacking]
        if resolved:
            message += f"; the file's other custom op(s) {', '.join(resolved)} resolve on the host's LiteRT"
    return ModelLoadError(message, hint=f"custom ops in the file: {', '.join(custom)}; {exc.hint or ''}".rstrip("; "))


def _parity(t: Transport, art: ArtifactInfo, s: Settings, vfile: str, doc: dict) -> dict[str, Any]:
    """Bring the device's outputs back (a host temp file, always removed) and compare them with the reference."""
    import numpy as np

    fd, tmp = tempfile.mkstemp(prefix=".edgekit-outputs-", suffix=".npz")
    os.close(fd)
    try:
        t.get(doc["parity"]["outputs_file"], tmp)
        with np.load(tmp, allow_pickle=False) as z:
            names = [str(n) for n in z["output_names"]]
            outs = [z[f"output_{k}"] for k in range(len(names))]
    finally:
        os.unlink(tmp)
    vd = verify_data.read(vfile)
    p = parity.evaluate(vd, names, outs, precision=art.verify_precision or art.precision,
                        output_lsb=art.output_lsb)
    return p.to_dict()


def run_benchmark_model(t: Transport, art: ArtifactInfo, s: Settings, model_path: str) -> dict[str, Any]:
    spec = t.spec
    threads = s.threads or spec.threads
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
                                   max_seconds=s.max_seconds, delegate=s.delegate, op_profiling=s.profile_ops)
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
    if s.verify:
        doc["parity_data"] = {"status": "not_checked", "reason": "benchmark_model cannot return outputs: parity "
                                                                 "not checked"}
    return doc


def run_one(t: Transport, art: ArtifactInfo, s: Settings) -> dict[str, Any]:
    """Run ``art`` on the connected device ``t`` (runner where there is Python, else benchmark_model)."""
    model_path = t.put(art.path, art.sha256)
    if t.spec.uses_runner or s.python:  # --python on an adb device: a Linux board with Python
        return run_runner(t, art, s, model_path)
    return run_benchmark_model(t, art, s, model_path)
