"""The runner on aarch64 (devlab's arm64-sysroot.sh: CPython 3.11 under qemu-user, Raspberry Pi 4 cpuinfo).

Two device flavours: tflite-runtime 2.14 + numpy 1.26 (what older Pi images use) and ai-edge-litert + numpy 2.
The sysroot is built once per script version under /tmp (5-16 s plus wheel downloads) and reused by later runs.
Limitation of the sysroot: the aarch64 Python cannot exec another aarch64 program (no binfmt); the runner does not.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgekit.devices import RUNNER, bench

pytestmark = [pytest.mark.device, pytest.mark.slow]  # qemu emulation: seconds per run
FLAVOURS = {"tflite": ("tflite_runtime", "2.14.0", "1."), "litert": ("ai_edge_litert", None, "2.")}


@pytest.fixture(scope="session")
def a64(devlab) -> Path:
    """The built sysroot dir (cached by the build script's sha256), or skip with the reason."""
    script = devlab / "arm64-sysroot.sh"
    if not (shutil.which("qemu-aarch64-static") or shutil.which("apt-get")):
        pytest.skip("neither qemu-aarch64-static nor apt-get is available (apt-get install qemu-user-static)")
    key = hashlib.sha256(script.read_bytes()).hexdigest()[:12]
    d = Path(os.environ.get("EDGEKIT_A64_DIR", f"/tmp/edgekit-a64-{key}"))
    done = d / ".edgekit-complete"
    with open(f"{d}.lock", "w") as lock:  # one builder at a time (xdist, parallel sessions)
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.is_file():
            shutil.rmtree(d, ignore_errors=True)
            # the script runs `python3 -m pip` on the host: use this venv's (it has pip; Debian's python3 may not)
            env = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}
            build = subprocess.run(["bash", str(script), "build", str(d)], capture_output=True, text=True,
                                   timeout=900, env=env)
            if build.returncode != 0:
                pytest.skip(f"arm64-sysroot.sh build failed: {(build.stderr or build.stdout).strip()[-400:]}")
            done.write_text(build.stdout)
    return d


def run(a64: Path, flavour: str, *args) -> tuple[int, dict]:
    done = subprocess.run([str(a64 / "bin" / f"python-{flavour}"), str(RUNNER), *map(str, args)],
                          capture_output=True, text=True, timeout=300)
    return done.returncode, json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("flavour", sorted(FLAVOURS))
def test_runner_on_aarch64(a64, devlab, flavour):
    name, version, numpy_major = FLAVOURS[flavour]
    delegate = "none" if flavour == "tflite" else "xnnpack"  # tflite-runtime 2.14 can switch XNNPACK off
    code, doc = run(a64, flavour, devlab / "tiny.tflite", "--runs", 8, "--warmup", 2, "--threads", 2,
                    "--delegate", delegate)
    assert code == 0, doc
    assert doc["config"]["delegate"] == delegate and doc["config"]["threads"] == 2
    assert doc["runtime"]["name"] == name and (version is None or doc["runtime"]["version"] == version)
    assert doc["runtime"]["version"]
    m = doc["machine"]
    assert m["machine"] == "aarch64" and "Raspberry Pi 4" in m["cpu_model"] and m["numpy"].startswith(numpy_major)
    assert m["cpu"] == "Cortex-A72"  # from the board's cpuinfo (implementer 0x41, part 0xd08)
    lat = doc["latency_ms"]
    assert lat["count"] == 8 and 0 < lat["min"] <= lat["p50"] <= lat["p99"] <= lat["max"]
    assert doc["first_inference_ms"] > 0 and doc["memory"]["peak_rss_bytes"] > 5 * 2**20


def test_runner_on_aarch64_delegate_none_probe_and_errors(a64, tmp_path):
    code, doc = run(a64, "tflite", "--probe")
    assert code == 0 and doc["machine"]["machine"] == "aarch64"
    assert doc["runtimes"]["tflite_runtime"]["version"] == "2.14.0" and not doc["runtimes"]["ai_edge_litert"][
        "available"]
    bad = tmp_path / "corrupt.tflite"
    bad.write_bytes(b"\x00" * 64)
    code, doc = run(a64, "tflite", bad)
    assert code == 4 and doc["error"]["kind"] == "model_load_error"


def test_bench_aarch64_pi_over_ssh(a64, devlab, tmp_path_factory):
    """End to end: edgekit bench over a real SSH connection to an 'aarch64 Pi' (the qemu python as device python)."""
    sys.path.insert(0, str(Path(__file__).parent))
    try:
        from test_devices_ssh import sshd as sshd_fixture  # noqa: F401 - reuse the fixture's implementation
    finally:
        sys.path.pop(0)
    gen = sshd_fixture.__wrapped__(devlab, tmp_path_factory)
    info = next(gen)
    try:
        spec = f"ssh://{info['SSHD_USER']}@{info['SSHD_HOST']}:{info['SSHD_PORT']}"
        (row,) = bench([devlab / "tiny.tflite"], spec, key_file=info["SSHD_KEY"], known_hosts=info["SSHD_KNOWN_HOSTS"],
                       python=str(a64 / "bin" / "python-tflite"), runs=5, warmup=1, threads=4)
        assert row.ok, row.error
        assert row.machine == "aarch64" and row.runtime == "tflite_runtime" and row.runtime_version == "2.14.0"
        assert row.numpy.startswith("1.") and row.threads == 4 and row.count == 5
    finally:
        next(gen, None)
