"""edgekit over adb: the real Debian ``adb`` client and server against devlab's simulated device (fake_adbd.py).

Android has no Python, so these devices run TFLite's benchmark_model. There is no Android build of it on CI, so
``tests/fake_benchmark_model.sh`` STANDS IN for it: it prints benchmark_model's documented output format with
fixed, made-up timings. What is tested for real: adb push (content-addressed cache), chmod, taskset, quoting,
exit codes, ANDROID_SERIAL / ANDROID_ADB_SERVER_PORT, and parsing into BenchResult.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import free_port, free_ports
from edgekit.cli import main
from edgekit.devices import bench, check
from edgekit.devices.profiles import DeviceSpec

pytestmark = pytest.mark.device
FAKE_BM = Path(__file__).with_name("fake_benchmark_model.sh")  # the benchmark_model stand-in (see its header)


def _start_adb(devlab, d: Path, **extra) -> dict:
    if not shutil.which("adb"):
        pytest.skip("adb is not installed (apt-get install adb)")
    adbd_port, server_port = free_ports(2)
    env = {**os.environ, "ADB_FIXTURE_DIR": str(d), "ADBD_PORT": str(adbd_port), "ADB_SERVER_PORT": str(server_port),
           **extra}
    script = str(devlab / "adb-fixture.sh")
    start = subprocess.run(["bash", script, "start"], env=env, capture_output=True, text=True, timeout=60)
    if start.returncode != 0:
        subprocess.run(["bash", script, "stop"], env=env, capture_output=True, timeout=60)
        pytest.skip(f"adb-fixture.sh could not start: {(start.stderr or start.stdout).strip()[-300:]}")
    out = subprocess.run(["bash", script, "env"], env=env, capture_output=True, text=True, check=True).stdout
    info = dict(line.split("=", 1) for line in out.split())
    info["_env"], info["_script"] = env, script
    return info


def _stop_adb(info: dict) -> None:
    subprocess.run(["bash", info["_script"], "stop"], env=info["_env"], capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def adbdev(devlab, tmp_path_factory):
    """An 'Android phone': fake_adbd (commands chrooted into its root) + a private real adb server."""
    info = _start_adb(devlab, tmp_path_factory.mktemp("adb"))
    yield info
    _stop_adb(info)


@pytest.fixture()
def adb_env(adbdev, monkeypatch):
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", adbdev["ANDROID_ADB_SERVER_PORT"])
    monkeypatch.setenv("ANDROID_SERIAL", adbdev["ANDROID_SERIAL"])
    return adbdev


@pytest.fixture(scope="module")
def models(devlab, tmp_path_factory):
    d = tmp_path_factory.mktemp("adbmodels")
    tiny, odd, corrupt = d / "tiny.tflite", d / "my model's \"v2\".tflite", d / "corrupt.tflite"
    shutil.copy(devlab / "tiny.tflite", tiny)
    shutil.copy(devlab / "tiny.tflite", odd)
    corrupt.write_bytes(b"\x00" * 64)
    return {"tiny": tiny, "odd": odd, "corrupt": corrupt}


def phone(**kw) -> DeviceSpec:
    return DeviceSpec(name="phone", transport="adb", arch="arm64-v8a", threads=2, **kw)


def test_bench_over_adb_with_benchmark_model(adb_env, models):
    root = Path(adb_env["ADB_FIXTURE_ROOT"])
    rows = bench([models["tiny"], models["odd"], models["corrupt"]], phone(cpu_mask="1"),
                 benchmark_binary=str(FAKE_BM), runs=12, warmup=3)
    assert [r.status for r in rows] == ["ok", "ok", "model_load_error"], [r.error for r in rows]
    r = rows[0]
    assert r.tool == "benchmark_model" and r.runtime == "benchmark_model" and r.transport == "adb"
    assert r.count == 12 and r.warmup_count == 3 and r.threads == 2  # the flags reached the binary
    assert r.p50_ms == pytest.approx(1.239) and r.mean_ms == pytest.approx(1.24027)  # parsed, not measured
    assert r.p90_ms is None and r.p99_ms is None  # benchmark_model does not print them: never invented
    assert r.peak_memory_bytes == round(12.5 * 2**20) and r.init_ms == pytest.approx(5.579)
    assert "Num threads: [2]" in r.raw["log_tail"] and "CPU affinity (stand-in): [0]" in r.raw["log_tail"]
    assert "--num_threads=2" in r.raw["command"] and "--num_runs=12" in r.raw["command"]
    assert "Flatbuffer" in rows[2].error
    # pushed once into the device cache, keyed by content; the session dir is gone
    cache = root / "data/local/tmp/edgekit/cache"
    names = sorted(p.name for p in cache.glob("*/*"))
    assert "tiny.tflite" in names and models["odd"].name in names and "fake_benchmark_model.sh" in names
    assert not list((root / "data/local/tmp/edgekit").glob("run-*"))
    (again,) = bench([models["tiny"]], phone(), benchmark_binary=str(FAKE_BM), runs=2, warmup=1)
    assert again.ok and again.transfers == []


def test_adb_url_env_serial_and_unknown_serial(adb_env, models):
    (row,) = bench([models["tiny"]], "adb://", benchmark_binary=str(FAKE_BM), runs=3)  # ANDROID_SERIAL
    assert row.ok and row.device == "adb://"
    (row,) = bench([models["tiny"]], "adb://127.0.0.1:1", benchmark_binary=str(FAKE_BM), connect_timeout=5)
    assert row.status == "connect_error" and "127.0.0.1:1" in row.error


def test_preinstalled_binary_check_and_missing_binary(adb_env, models):
    dev = "/data/local/tmp/benchmark_model"
    serial = ["adb", "-s", adb_env["ANDROID_SERIAL"]]
    subprocess.run([*serial, "push", str(FAKE_BM), dev], check=True, capture_output=True, timeout=60)
    subprocess.run([*serial, "shell", f"chmod 755 {dev}"], check=True, capture_output=True, timeout=60)
    (row,) = bench([models["tiny"]], phone(benchmark_binary=dev), runs=4)
    assert row.ok and "fake_benchmark_model.sh" not in row.transfers
    assert check(phone(benchmark_binary=dev)).ready
    rep = check(phone(benchmark_binary="/data/local/tmp/nope/benchmark_model"))
    assert rep.reachable and not rep.ready and "adb push" in rep.fixes[0]
    (row,) = bench([models["tiny"]], phone(benchmark_binary="/data/local/tmp/nope/benchmark_model"), runs=2)
    assert row.status == "runtime_missing" and "--benchmark-binary" in row.hint
    (row,) = bench([models["tiny"]], phone(), runs=2)  # no binary configured at all: a clear status
    assert row.status == "invalid_argument" and "benchmark_model" in row.error


def test_cli_bench_adb_profile(adb_env, models, tmp_path, monkeypatch):
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "myphone.yaml").write_text("transport: adb\narch: arm64-v8a\nthreads: 4\ncpu_mask: '1'\n"
                                                 f"benchmark_binary: {FAKE_BM}\n")
    monkeypatch.setenv("EDGEKIT_DEVICES_DIR", str(tmp_path / "p"))
    out = tmp_path / "r.json"
    r = CliRunner().invoke(main, ["bench", str(models["tiny"]), "-d", "myphone", "--runs", "5", "--json", str(out),
                                  "--no-history"])
    assert r.exit_code == 0, r.output
    (row,) = json.loads(out.read_text())
    assert row["status"] == "ok" and row["threads"] == 4 and row["count"] == 5


def test_linux_board_over_adb_uses_the_runner(devlab, tmp_path_factory, models, monkeypatch):
    """An adb device that has Python (profile ``python:``) runs the real runner. fake_adbd's shell is the host's
    /bin/sh here (not chrooted), so the device Python is this venv's interpreter; the device root's copy of the work
    dir path is a symlink to the host's work dir, so pushed files and shell commands see the same place (the work
    dir itself must not be a symlink: edgekit refuses one)."""
    d = tmp_path_factory.mktemp("adbpy")
    root, work = d / "root", d / "device work"
    work.mkdir(mode=0o700)
    (root / str(work).lstrip("/")).parent.mkdir(parents=True)
    (root / str(work).lstrip("/")).symlink_to(work)
    info = _start_adb(devlab, d, ADBD_ROOT=str(root), ADBD_SHELL="/bin/sh -c")
    try:
        monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", info["ANDROID_ADB_SERVER_PORT"])
        spec = DeviceSpec(name="board", transport="adb", serial=info["ANDROID_SERIAL"], python=sys.executable,
                          work_dir=str(work))
        rows = bench([models["tiny"], models["corrupt"]], spec, runs=6, warmup=1)
        assert [r.status for r in rows] == ["ok", "model_load_error"], [r.error for r in rows]
        assert rows[0].tool == "runner" and rows[0].runtime == "ai_edge_litert" and rows[0].p90_ms is not None
        assert set(rows[0].transfers) == {"tiny.tflite", "runner.py"}
        assert not list(work.glob("run-*"))
        # the same board from a bare adb:// spec with --python (the CLI override) also runs the runner
        bare = DeviceSpec(name="board", transport="adb", serial=info["ANDROID_SERIAL"], work_dir=str(work))
        rows = bench([models["tiny"]], bare, runs=3, warmup=1, python=sys.executable)
        assert rows[0].status == "ok" and rows[0].tool == "runner", rows[0].error
        assert check(bare, python=sys.executable).ready
    finally:
        _stop_adb(info)


def test_adb_server_started_by_edgekit_is_stopped_and_its_chatter_kept_out(models, tmp_path, monkeypatch):
    """Issue 8: `bench -d adb://...` with no adb server running started one, left it running and put "* daemon
    started successfully" into the status column and the CSV."""
    if not shutil.which("adb"):
        pytest.skip("adb is not installed (apt-get install adb)")
    port = free_port()
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", str(port))
    monkeypatch.setenv("HOME", str(tmp_path))  # the server's adbkey goes here, not into the real ~/.android
    monkeypatch.delenv("ANDROID_SERIAL", raising=False)
    out_csv = tmp_path / "r.csv"
    r = CliRunner().invoke(main, ["bench", str(models["tiny"]), "-d", "adb://127.0.0.1:1", "--benchmark-binary",
                                  str(FAKE_BM), "--connect-timeout", "20", "--csv", str(out_csv), "--no-history"])
    assert r.exit_code == 1 and "connect_error" in r.output, r.output
    assert "daemon" not in r.output and "daemon" not in out_csv.read_text()
    with socket.socket() as s:  # the server edgekit started is gone
        assert s.connect_ex(("127.0.0.1", port)) != 0, "edgekit left the adb server it started running"


def test_adb_server_the_user_runs_is_left_alone(adb_env, models):
    (row,) = bench([models["tiny"]], phone(), benchmark_binary=str(FAKE_BM), runs=2)
    assert row.ok
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", int(adb_env["ANDROID_ADB_SERVER_PORT"]))) == 0


def test_benchmark_model_rows_say_parity_not_checked_and_profile_ops(adb_env, models, tmp_path):
    """benchmark_model cannot return outputs: --verify rows say so; --profile-ops reads its op table."""
    a = tmp_path / "tiny_float32.tflite"
    shutil.copy(models["tiny"], a)
    (tmp_path / "tiny_float32.tflite.verify.npz").write_bytes(b"")  # exists; never read for benchmark_model
    (tmp_path / "tiny_float32.tflite.json").write_text(json.dumps({"verification_inputs": {
        "file": "tiny_float32.tflite.verify.npz"}}))
    (row,) = bench([a], phone(), benchmark_binary=str(FAKE_BM), runs=3, verify=True, profile_ops=True)
    assert row.ok and row.parity["status"] == "not_checked" and "parity not checked" in row.parity["note"]
    assert "--enable_op_profiling=true" in row.raw["command"]
    ops = row.op_profile
    assert ops["available"] and [o["op"] for o in ops["ops"]] == ["TfLiteXNNPackDelegate", "AVERAGE_POOL_2D",
                                                                  "QUANTIZE"]
    assert "not taken by XNNPACK" in ops["ops"][1]["flags"]
    r = CliRunner().invoke(main, ["bench", str(a), "-d", "adb://", "--benchmark-binary", str(FAKE_BM), "--runs",
                                  "3", "--verify", "--no-history"])
    assert r.exit_code == 0 and "not checked" in r.output, r.output
