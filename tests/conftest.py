"""Shared test fixtures: markers, the device stand-ins from ../shared/devlab, real data availability, and the fast
loop's guard.

The rule for every test: ``pytest -m "not slow"`` is the fast loop (<= 3 min on 2 cores), so a test that trains a
model (Keras ``fit``, edgekit's train/compress stages) or converts one (TFLite or ONNX converter), itself, through a
fixture, or through a CLI subprocess, is marked ``@pytest.mark.slow``. This is enforced: while a test not marked
slow runs (the fixtures it sets up included), tests/no_training.py makes those calls raise ``TrainingInFastTest``,
in this process and in its Python subprocesses (tests/_site/sitecustomize.py on PYTHONPATH). (In the whole suite a
module fixture an earlier slow test built is reused unguarded; under ``-m "not slow"`` it is built guarded.) A test
about something
else (CLI wiring, errors, file handling) builds what it needs without training: a .tflite from tests/tflite_files.py,
an ONNX graph from ``onnx.helper``, an untrained zoo model. Slow tests share trained models (``trained_mnv1``) and
module-scoped exports instead of training their own.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

import no_training

REPO = Path(__file__).resolve().parents[1]
#: the folder whose sitecustomize.py installs the no-training guard in subprocesses
_SITE = Path(__file__).resolve().parent / "_site"
#: ../shared/devlab beside the checkout (EDGEKIT_DEVLAB overrides)
DEVLAB = Path(os.environ.get("EDGEKIT_DEVLAB", REPO.parent / "shared" / "devlab"))


def pytest_configure(config):
    """Signals as in a terminal: a job started in the background (`cmd &` in a script, nohup) inherits SIGINT and
    SIGHUP ignored, and an ignored signal stays ignored in every child: Python then never raises KeyboardInterrupt
    (interrupt_main does nothing) and edgekit keeps ignoring hangups as under nohup, so the interrupt tests saw
    their commands run to the end (exit 0 instead of 130/129)."""
    import signal

    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if signal.getsignal(signal.SIGHUP) is signal.SIG_IGN:
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
    no_training.install()
    path = os.environ.get("PYTHONPATH")
    if str(_SITE) not in (path or "").split(os.pathsep):
        os.environ["PYTHONPATH"] = os.pathsep.join([str(_SITE), *([path] if path else [])])


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """A test not marked slow runs (setup, call, teardown) with the no-training guard on (tests/no_training.py)."""
    guard = item.get_closest_marker("slow") is None
    if guard:
        os.environ[no_training.ENV] = item.nodeid
    try:
        yield
    finally:
        if guard:
            os.environ.pop(no_training.ENV, None)


#: test files that take minutes (a module fixture trains and interrupts a sweep; Keras 3 and compression chains):
#: collected first, so that pytest-xdist (--dist loadfile hands out files in collection order) starts them at once
#: instead of leaving one worker alone with them at the end
LONG_FILES = ("test_sweep.py", "test_sweep_chance.py", "test_compress.py", "test_keras3.py", "test_doctor.py",
              "test_compare_under_load.py", "test_sweep_verdict.py", "test_clients.py", "test_sweep_ray.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONG_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONG_FILES)))   # stable: order within a file kept


@pytest.fixture(autouse=True)
def _restore_environ():
    """Each test starts from the session's environment: CLI tests run in-process and ``--debug`` sets
    EDGEKIT_TF_LOGS=1 in os.environ, which leaked into later tests' subprocesses (the XNNPACK line test)."""
    saved = dict(os.environ)
    yield
    if os.environ != saved:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="session")
def devlab() -> Path:
    """The devlab folder, or skip with the reason."""
    if not (DEVLAB / "README.md").is_file():
        pytest.skip(f"device stand-ins not found at {DEVLAB} (set EDGEKIT_DEVLAB)")
    return DEVLAB


@pytest.fixture(scope="session")
def fashion_mnist_available() -> None:
    from edgekit.data import fashion_mnist_dir
    from edgekit.errors import DataError

    try:
        fashion_mnist_dir()
    except DataError as exc:
        pytest.skip(str(exc))


#: the zoo options of the small MobileNet the compression tests start from
MNV1_TINY = dict(alpha=0.25, resolution=32, input_channels=1, classes=10)


@pytest.fixture(scope="session")
def trained_mnv1(tmp_path_factory, fashion_mnist_available) -> str:
    """A MobileNet v1 (MNV1_TINY) trained for 4 epochs on 8192 Fashion-MNIST images (~65 % test accuracy, ~40 s), saved
    as .keras: int8 verification of a model at chance is inconclusive (near-constant outputs), and one trained for
    a few steps fails it (top-1 agreement ~0.8: predictions without margin), so tests that assert a passed int8
    verification start from this file (``weights=`` it)."""
    from edgekit.compression.train import train

    def build(path: Path) -> None:
        train("mobilenet_v1", data="fashion-mnist", epochs=4, limit=8192, test_limit=256, batch_size=64, lr=2e-3,
              seed=0, weights="none", out=str(path), **MNV1_TINY)

    return str(_once_per_session(tmp_path_factory, "mnv1_fmnist.keras", build))


def _once_per_session(tmp_path_factory, name: str, build) -> Path:
    """``build(path)`` once per test session, also under pytest-xdist: the workers share the session's base temp
    folder (the parent of each worker's own), so the first worker builds under a file lock and the others wait for
    it and reuse the file."""
    import fcntl

    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    path = base / "shared" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{path}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            build(path)
    return path


def free_ports(n: int = 1) -> list[int]:
    """``n`` distinct loopback ports free now (all bound at once, then released for a server to take)."""
    import socket

    socks = [socket.socket() for _ in range(n)]
    try:
        for sk in socks:
            sk.bind(("127.0.0.1", 0))
        return [sk.getsockname()[1] for sk in socks]
    finally:
        for sk in socks:
            sk.close()


def free_port() -> int:
    return free_ports(1)[0]


def require_binary(name: str) -> str:
    path = shutil.which(name)
    if not path:
        pytest.skip(f"{name} is not installed")
    return path


def _cached_build(script: Path, prefix: str, timeout: float) -> Path:
    """Build ``script build DIR`` once per script version: DIR is /tmp/PREFIX-<sha256[:12] of the script>, guarded by a
    file lock (parallel sessions, xdist) and marked complete only after a successful build."""
    import fcntl
    import hashlib
    import subprocess
    import sys

    key = hashlib.sha256(script.read_bytes()).hexdigest()[:12]
    d = Path(f"/tmp/{prefix}-{key}")
    done = d / ".edgekit-complete"
    with open(f"{d}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.is_file():
            # the script runs `python3 -m pip` on the host: use this venv's (it has pip; Debian's python3 may not)
            env = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}
            build = subprocess.run(["bash", str(script), "build", str(d)], capture_output=True, text=True,
                                   timeout=timeout, env=env)
            if build.returncode != 0:
                pytest.skip(f"{script.name} build failed: {(build.stderr or build.stdout).strip()[-400:]}")
            done.write_text(build.stdout)
    return d


@pytest.fixture(scope="session")
def arm64_rootfs(devlab) -> Path:
    """devlab's arm64 Debian rootfs (real arm64 sshd, Python, tflite-runtime 2.14 in /opt/tflite, ai-edge-litert in
    /opt/litert, all under qemu via binfmt), built once (~3-7 min) and cached under /tmp by the script's sha256."""
    if os.geteuid() != 0:
        pytest.skip("arm64-rootfs.sh needs root (debootstrap, chroot, binfmt_misc)")
    for tool in ("debootstrap", "qemu-aarch64-static", "unshare"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} is not installed (apt-get install debootstrap qemu-user-static)")
    return _cached_build(devlab / "arm64-rootfs.sh", "edgekit-rootfs", 1800)


@pytest.fixture(scope="session")
def arm64_ssh(devlab, arm64_rootfs) -> dict:
    """An aarch64 "Raspberry Pi" over SSH: the rootfs's own arm64 sshd (under qemu) on a free loopback port.

    Yields host paths: SSHD_HOST/PORT/USER, SSHD_KEY and SSHD_KNOWN_HOSTS (on the host), ``url`` (ssh://...) and
    ``python`` {"tflite": /opt/tflite/bin/python, "litert": /opt/litert/bin/python} (paths on the device).
    """
    import subprocess
    import uuid

    port = free_port()
    inner = f"/opt/fixture/run-{uuid.uuid4().hex[:8]}"
    devroot = str(devlab / "devroot.sh")
    env_args = ["env", f"SSHD_DIR={inner}", f"SSHD_PORT={port}", "bash", "/opt/fixture/sshd-fixture.sh"]
    start = subprocess.run([devroot, str(arm64_rootfs), *env_args, "start"], capture_output=True, text=True,
                           timeout=300)
    if start.returncode != 0:
        pytest.skip(f"the arm64 sshd did not start: {(start.stderr or start.stdout).strip()[-300:]}")
    try:
        out = subprocess.run([devroot, str(arm64_rootfs), *env_args, "env"], capture_output=True, text=True,
                             check=True, timeout=120).stdout
        info = dict(line.split("=", 1) for line in out.split() if "=" in line)
        host_dir = arm64_rootfs / inner.lstrip("/")
        info["SSHD_KEY"] = str(host_dir / Path(info["SSHD_KEY"]).name)
        info["SSHD_KNOWN_HOSTS"] = str(host_dir / Path(info["SSHD_KNOWN_HOSTS"]).name)
        info["url"] = f"ssh://{info['SSHD_USER']}@{info['SSHD_HOST']}:{info['SSHD_PORT']}"
        info["python"] = {"tflite": "/opt/tflite/bin/python", "litert": "/opt/litert/bin/python"}
        info["rootfs"] = str(arm64_rootfs)
        yield info
    finally:
        subprocess.run([devroot, str(arm64_rootfs), *env_args, "stop"], capture_output=True, timeout=120)
        shutil.rmtree(arm64_rootfs / inner.lstrip("/"), ignore_errors=True)


@pytest.fixture
def cli(monkeypatch, tmp_path):
    """The edgekit CLI in-process, run from tmp_path with its own cache: ``cli("profile", path)`` -> click Result."""
    from click.testing import CliRunner

    from edgekit.cli import main

    monkeypatch.setenv("EDGEKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    return lambda *args: runner.invoke(main, [str(a) for a in args], catch_exceptions=False)
