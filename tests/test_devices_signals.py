"""SIGTERM and SIGHUP clean up like Ctrl-C (issue 8 item 3), with real signals sent to a real `edgekit` process:
the remote run dir is removed and the remote runner killed; no export staging folder or temp file is left."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.device
EDGEKIT = [str(Path(sys.executable).with_name("edgekit"))]  # the installed console script


def _runner_pids(marker: str) -> list[int]:
    pids = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                cmd = (p / "cmdline").read_bytes()
            except OSError:
                continue
            if b"runner.py" in cmd and marker.encode() in cmd:
                pids.append(int(p.name))
    return pids


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


@pytest.fixture()
def fakepi(devlab, tmp_path, monkeypatch):
    sys.path.insert(0, str(Path(__file__).parent))
    try:
        from test_devices_ssh import sshd as sshd_fixture  # noqa: F401 - reuse the fixture's implementation
    finally:
        sys.path.pop(0)
    gen = sshd_fixture.__wrapped__(devlab, _Factory(tmp_path))
    info = next(gen)
    work = tmp_path / "remote work"
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "fakepi.yaml").write_text(
        f"transport: ssh\nhost: {info['SSHD_HOST']}\nport: {info['SSHD_PORT']}\nuser: {info['SSHD_USER']}\n"
        f"key_file: {info['SSHD_KEY']}\nknown_hosts: {info['SSHD_KNOWN_HOSTS']}\npython: {sys.executable}\n"
        f"work_dir: {work}\n")
    env = {**os.environ, "EDGEKIT_DEVICES_DIR": str(tmp_path / "profiles"), "TMPDIR": str(tmp_path / "tmp")}
    (tmp_path / "tmp").mkdir()
    yield work, env, tmp_path
    next(gen, None)


class _Factory:
    def __init__(self, base: Path):
        self.base = base

    def mktemp(self, name: str) -> Path:
        d = self.base / name
        d.mkdir()
        return d


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_signal_during_remote_bench_cleans_the_device(fakepi, devlab, sig):
    work, env, tmp = fakepi
    model = tmp / f"sig{int(sig)}_model.tflite"
    model.write_bytes((devlab / "tiny.tflite").read_bytes())
    proc = subprocess.Popen([*EDGEKIT, "bench", str(model), "-d", "fakepi", "--runs", str(10**8), "--warmup", "0",
                             "--max-seconds", "120", "--no-history"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        pids = []
        for _ in range(1800):  # wait until the runner runs on the "device" (up to 3 min on a loaded machine)
            pids = _runner_pids(model.name)
            if pids and list(work.glob("run-*")):
                break
            time.sleep(0.1)
        assert pids, "the remote runner never started"
        time.sleep(1.0)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + int(sig), err
    assert "interrupted" in err and "Traceback" not in err
    assert not list(work.glob("run-*")), "the remote run dir was left behind"
    for _ in range(100):
        if not any(_alive(p) for p in pids):
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"remote runner {pids} still running after {sig.name}")
    assert list(work.glob("cache/*/runner.py"))  # the cache is kept
    assert not list((tmp / "tmp").iterdir()), "edgekit left temp files"


@pytest.mark.slow
def test_sigterm_during_export_leaves_no_staging_folder(tmp_path):
    out, tmp = tmp_path / "out", tmp_path / "tmp"
    out.mkdir()
    tmp.mkdir()
    proc = subprocess.Popen([*EDGEKIT, "export", "mobilenet_v1", "--alpha", "0.25", "--resolution", "32",
                             "--input-channels", "1", "--classes", "10", "--weights", "none", "--quantize", "int8",
                             "--calib-data", "digits", "--format", "tflite,onnx", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TMPDIR": str(tmp)})
    try:
        for _ in range(6000):  # until the export has staged and holds a temp dir of its own in TMPDIR (the ONNX
            # conversion's; up to 5 min on a loaded machine)
            if list(out.glob(".edgekit-export-*")) and list(tmp.glob("edgekit-*")):
                break
            if proc.poll() is not None:
                pytest.fail("export finished before it could be interrupted")
            time.sleep(0.05)
        assert list(out.glob(".edgekit-export-*")), "export never staged anything"
        assert list(tmp.glob("edgekit-*")), "export never made a temp dir"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err
    left = sorted(p.name for p in out.iterdir())
    assert not [n for n in left if n.startswith(".")], f"staging/partial files left behind: {left}"
    # all or nothing: the signal may land after the final renames, then every artifact is complete
    assert left in ([], sorted(n for stem in ("tflite", "onnx") for n in (
        f"mobilenet_v1_0.25_32_1ch_10cls_int8.{stem}", f"mobilenet_v1_0.25_32_1ch_10cls_int8.{stem}.json",
        f"mobilenet_v1_0.25_32_1ch_10cls_int8.{stem}.verify.npz"))), left
    assert not list(tmp.iterdir()), f"temp files left in TMPDIR: {sorted(p.name for p in tmp.iterdir())}"


@pytest.mark.parametrize("sig, rc, words", [("SIGTERM", 143, "interrupted (SIGTERM)"), ("SIGINT", 130, "interrupted")])
def test_a_signal_swallowed_by_foreign_code_still_ends_the_cli_with_its_code(sig, rc, words):
    """Terminated, or Ctrl-C's KeyboardInterrupt, raised inside a finalizer is swallowed by Python; the CLI delivers it
    again / exits 128 + signum (a Ctrl-C that landed in one of TensorFlow's finalizers let a sweep finish, exit 0)."""
    code = r"""
import os, signal, time

from edgekit.cli import main

class Finalized:
    def __del__(self):
        time.sleep(0.5)  # the signal lands here: Python ignores exceptions raised in __del__

@main.command("slow-test-cmd")
def slow():
    x = Finalized()
    signal.setitimer(signal.ITIMER_REAL, 0.1)
    signal.signal(signal.SIGALRM, lambda *a: os.kill(os.getpid(), signal.SIG))
    del x
    for _ in range(30):
        time.sleep(0.1)
    print("finished")

main(["slow-test-cmd"])
"""
    done = subprocess.run([sys.executable, "-c", code.replace("signal.SIG)", f"signal.{sig})")], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == rc, done.stdout + done.stderr
    assert "finished" not in done.stdout and words in done.stderr
