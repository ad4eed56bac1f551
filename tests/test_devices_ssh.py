"""edgekit over SSH against a real OpenSSH server on loopback (devlab's sshd-fixture.sh): the "Pi" is this machine.

The device's Python is this venv's interpreter (``sys.executable``), pointed at through the profile/``--python``.
Faults: refused/unreachable port, silent server (timeout), wrong key, unknown host key (+ accepting it), file names
with spaces and quotes, a model the runtime cannot load, a device without interpreter, and Ctrl-C mid-run.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import free_port
from edgekit.cli import main
from edgekit.devices import bench, check
from edgekit.devices.transports import SSHTransport

pytestmark = pytest.mark.device


@pytest.fixture(scope="module")
def sshd(devlab, tmp_path_factory):
    """A private sshd (own dir, free port); yields its env (SSHD_HOST/PORT/USER/KEY/KNOWN_HOSTS)."""
    for tool in ("/usr/sbin/sshd", "ssh", "ssh-keygen"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} is not installed (apt-get install openssh-server openssh-client)")
    pytest.importorskip("paramiko")
    d = tmp_path_factory.mktemp("sshd")
    env = {**os.environ, "SSHD_DIR": str(d), "SSHD_PORT": str(free_port())}
    script = str(devlab / "sshd-fixture.sh")
    start = subprocess.run(["bash", script, "start"], env=env, capture_output=True, text=True, timeout=60)
    if start.returncode != 0:
        pytest.skip(f"sshd-fixture.sh could not start sshd: {start.stderr.strip()[-300:]}")
    out = subprocess.run(["bash", script, "env"], env=env, capture_output=True, text=True, check=True).stdout
    info = dict(line.split("=", 1) for line in out.split())
    info["dir"] = str(d)
    yield info
    subprocess.run(["bash", script, "stop"], env=env, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def models(devlab, tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    tiny = d / "tiny.tflite"
    shutil.copy(devlab / "tiny.tflite", tiny)
    odd = d / "it's a \"quoted\" model $(x).tflite"  # spaces, quotes, shell metacharacters
    shutil.copy(devlab / "tiny.tflite", odd)
    corrupt = d / "corrupt.tflite"
    corrupt.write_bytes(b"\x18\x00\x00\x00TFL3" + b"\xff" * 40)
    return {"tiny": tiny, "odd": odd, "corrupt": corrupt}


def url(sshd):
    return f"ssh://{sshd['SSHD_USER']}@{sshd['SSHD_HOST']}:{sshd['SSHD_PORT']}"


def kw(sshd, **extra):
    return {"key_file": sshd["SSHD_KEY"], "known_hosts": sshd["SSHD_KNOWN_HOSTS"], "python": sys.executable,
            "runs": 5, "warmup": 1, **extra}


@pytest.fixture()
def profile_dir(sshd, tmp_path, monkeypatch):
    """A devices/ folder with a 'fakepi' profile (found through EDGEKIT_DEVICES_DIR) and its remote work dir."""
    work = tmp_path / "remote work"
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "fakepi.yaml").write_text(
        f"transport: ssh\nhost: {sshd['SSHD_HOST']}\nport: {sshd['SSHD_PORT']}\nuser: {sshd['SSHD_USER']}\n"
        f"key_file: {sshd['SSHD_KEY']}\nknown_hosts: {sshd['SSHD_KNOWN_HOSTS']}\npython: {sys.executable}\n"
        f"threads: 1\ncpu_mask: '1'\nwork_dir: {work}\narch: x86_64\n")
    monkeypatch.setenv("EDGEKIT_DEVICES_DIR", str(tmp_path / "profiles"))
    return work


def test_cli_bench_over_ssh_end_to_end(sshd, models, profile_dir, tmp_path):
    out_json, out_csv, hist = tmp_path / "r.json", tmp_path / "r.csv", tmp_path / "hist.jsonl"
    args = ["bench", str(models["tiny"]), str(models["odd"]), str(models["corrupt"]), "--device", "fakepi",
            "--device", "local", "--runs", "8", "--warmup", "2", "--json", str(out_json), "--csv", str(out_csv),
            "--history", str(hist)]
    r = CliRunner().invoke(main, args)
    # issue 8: any failed row (the corrupt model) makes bench exit 1, after printing every row
    assert r.exit_code == 1 and "2 of 6 rows failed" in r.output, r.output
    rows = json.loads(out_json.read_text())
    assert [(x["device"], Path(x["artifact"]).name, x["status"]) for x in rows] == [
        ("fakepi", "tiny.tflite", "ok"), ("local", "tiny.tflite", "ok"),
        ("fakepi", models["odd"].name, "ok"), ("local", models["odd"].name, "ok"),
        ("fakepi", "corrupt.tflite", "model_load_error"), ("local", "corrupt.tflite", "model_load_error")]
    pi = rows[0]
    assert pi["transport"] == "ssh" and pi["runtime"] == "ai_edge_litert" and pi["threads"] == 1
    assert pi["count"] == 8 and pi["warmup_count"] == 2 and 0 < pi["p50_ms"] <= pi["p90_ms"]
    assert pi["raw"]["machine"]["cpu_affinity"] == [0]  # the profile's taskset mask 0x1 was applied
    assert set(pi["transfers"]) == {"tiny.tflite", "runner.py"}
    assert "corrupt.tflite" in rows[4]["error"]
    assert len(hist.read_text().splitlines()) == 6
    assert out_csv.read_text().splitlines()[0].startswith("artifact,model,format,precision")
    # session work dir removed, hash-keyed cache kept: the second run copies nothing
    assert not any(p.name.startswith("run-") for p in profile_dir.iterdir())
    again = bench([models["tiny"]], "fakepi", runs=3, warmup=0)
    assert again[0].ok and again[0].transfers == [] and again[0].count == 3


def test_refused_port_is_a_fast_connect_error(sshd, models):
    t0 = time.perf_counter()
    (row,) = bench([models["tiny"]], f"ssh://root@127.0.0.1:{free_port()}", **kw(sshd, connect_timeout=2))
    assert row.status == "connect_error" and "cannot reach" in row.error and time.perf_counter() - t0 < 10


def test_silent_server_times_out(sshd, models):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(5)  # accepts TCP, never speaks SSH
    try:
        t0 = time.perf_counter()
        rows = bench([models["tiny"], models["odd"]], f"ssh://root@127.0.0.1:{srv.getsockname()[1]}",
                     **kw(sshd, connect_timeout=1))
        assert [r.status for r in rows] == ["timeout", "timeout"] and time.perf_counter() - t0 < 15
        assert "did not" in rows[0].error or "no SSH banner" in rows[0].error
        # our one-line error only: paramiko's transport thread must not print its traceback on stderr (a fresh
        # process without logging configured; it waits so that the thread has finished logging)
        code = ("import sys, time; from edgekit.devices import check; "
                "r = check(sys.argv[1], key_file=sys.argv[2], known_hosts=sys.argv[3], connect_timeout=1); "
                "print(r.status); time.sleep(1.5)")
        done = subprocess.run([sys.executable, "-c", code, f"ssh://root@127.0.0.1:{srv.getsockname()[1]}",
                               sshd["SSHD_KEY"], sshd["SSHD_KNOWN_HOSTS"]], capture_output=True, text=True, timeout=60)
        assert done.stdout.strip() == "timeout", done.stdout + done.stderr
        assert "Traceback" not in done.stderr and "Exception (client)" not in done.stderr, done.stderr
    finally:
        srv.close()


def test_wrong_key_is_auth_error(sshd, models, tmp_path):
    key = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    (row,) = bench([models["tiny"]], url(sshd), **kw(sshd, key_file=str(key)))
    assert row.status == "auth_error" and "refused our key" in row.error and "authorized_keys" in row.hint


def test_unusable_key_files_say_why(sshd, models, tmp_path):
    """A passphrase-protected key is not 'refused by the device'; a file that is no key is not a connect error."""
    enc, junk = tmp_path / "enc_key", tmp_path / "junk_key"
    shutil.copy(sshd["SSHD_KEY"], enc)
    subprocess.run(["ssh-keygen", "-q", "-p", "-P", "", "-N", "secret", "-f", str(enc)], check=True,
                   capture_output=True)
    junk.write_text("not a key\n")
    (row,) = bench([models["tiny"]], url(sshd), **kw(sshd, key_file=str(enc)))
    assert row.status == "auth_error" and "passphrase" in row.error and "ssh-add" in row.hint
    (row,) = bench([models["tiny"]], url(sshd), **kw(sshd, key_file=str(junk)))
    assert row.status == "invalid_argument" and "cannot read SSH key file" in row.error, row.error


def test_unknown_host_key_then_accept_it(sshd, models, tmp_path):
    kh = tmp_path / "known_hosts"
    kh.write_text("")
    (row,) = bench([models["tiny"]], url(sshd), **kw(sshd, known_hosts=str(kh)))
    assert row.status == "host_key_error" and "--accept-new-host-key" in row.hint
    (row,) = bench([models["tiny"]], url(sshd), **kw(sshd, known_hosts=str(kh), accept_new_host_key=True))
    assert row.ok, row.error
    assert f"[{sshd['SSHD_HOST']}]:{sshd['SSHD_PORT']}" in kh.read_text()
    (row,) = bench([models["tiny"]], url(sshd), **kw(sshd, known_hosts=str(kh)))  # now known: strict check passes
    assert row.ok


def test_changed_host_key_is_rejected_even_with_accept_flag(sshd, models, tmp_path):
    fake = tmp_path / "fake_host"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(fake)], check=True)
    kh = tmp_path / "known_hosts"
    pub = fake.with_suffix(".pub").read_text().split()
    kh.write_text(f"[{sshd['SSHD_HOST']}]:{sshd['SSHD_PORT']} {pub[0]} {pub[1]}\n")
    (row,) = bench([models["tiny"]], url(sshd), **kw(sshd, known_hosts=str(kh), accept_new_host_key=True))
    assert row.status == "host_key_error" and "does NOT match" in row.error


def test_device_without_runtime_or_python(sshd, models, tmp_path):
    nort = tmp_path / "python-no-runtime"  # numpy but no interpreter, like a fresh board
    nort.write_text("#!/bin/sh\nexec %s -c \"import sys, runpy; [sys.modules.__setitem__(m, None) for m in "
                    "('ai_edge_litert', 'tflite_runtime', 'tensorflow')]; sys.argv = sys.argv[1:]; "
                    "runpy.run_path(sys.argv[0], run_name='__main__')\" \"$@\"\n" % sys.executable)
    nort.chmod(0o755)
    (row,) = bench([models["tiny"]], url(sshd), **kw(sshd, python=str(nort)))
    assert row.status == "runtime_missing" and "pip install" in row.hint and "numpy<2" in row.hint
    (row,) = bench([models["tiny"]], url(sshd), **kw(sshd, python="/nonexistent/python3"))
    assert row.status == "runtime_missing" and "python" in row.hint
    rep = check(url(sshd), python=str(nort), key_file=sshd["SSHD_KEY"], known_hosts=sshd["SSHD_KNOWN_HOSTS"])
    assert rep.reachable and not rep.ready and any("ai-edge-litert" in f for f in rep.fixes)


def test_devices_check_over_ssh(sshd, profile_dir):
    r = CliRunner().invoke(main, ["devices", "check", "fakepi", "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output)
    assert rep["reachable"] and rep["ready"] and rep["machine"] and rep["runtimes"]["ai_edge_litert"]["available"]
    r = CliRunner().invoke(main, ["devices", "check", f"ssh://root@127.0.0.1:{free_port()}", "--connect-timeout",
                                  "2"])
    assert r.exit_code == 1 and "connect_error" in r.output


def test_ctrl_c_mid_run_cleans_the_device(sshd, models, profile_dir, monkeypatch):
    seen = {}
    original = SSHTransport._exec

    def interrupted_exec(self, script, *, timeout):
        """Start the runner like _exec does, then 'press Ctrl-C' while waiting for it."""
        if not ("exec " in script and "runner.py" in script):
            return original(self, script, timeout=timeout)
        chan = self._client.get_transport().open_session()
        chan.exec_command(script)
        pid_file = Path(self.pid_file)
        for _ in range(200):
            if pid_file.is_file() and pid_file.read_text().strip():
                break
            time.sleep(0.05)
        seen["pid"], seen["run_dir"] = int(pid_file.read_text()), self.run_dir
        time.sleep(0.5)
        assert b"runner.py" in Path(f"/proc/{seen['pid']}/cmdline").read_bytes()
        raise KeyboardInterrupt

    monkeypatch.setattr(SSHTransport, "_exec", interrupted_exec)
    with pytest.raises(KeyboardInterrupt):
        bench([models["tiny"]], "fakepi", runs=10**7, warmup=0, max_seconds=60)
    assert "run_dir" in seen, "the hook never saw the runner"
    assert not Path(seen["run_dir"]).exists()
    for _ in range(100):  # the remote runner was killed
        try:
            os.kill(seen["pid"], 0)
            state = Path(f"/proc/{seen['pid']}/stat").read_text().split()[2]
            if state == "Z":
                break
        except (ProcessLookupError, FileNotFoundError):
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"remote runner {seen['pid']} still running after Ctrl-C")


def test_ctrl_c_with_parallel_devices_aborts_all(sshd, models, profile_dir):
    """A real KeyboardInterrupt in the calling thread while two devices run in parallel."""
    import _thread

    timer = threading.Timer(3.0, _thread.interrupt_main)
    timer.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(KeyboardInterrupt):
            bench([models["tiny"]], ["fakepi", "local"], runs=10**7, warmup=0, max_seconds=120)
    finally:
        timer.cancel()
    assert time.perf_counter() - t0 < 60
    assert not any(p.name.startswith("run-") for p in profile_dir.iterdir())


def test_tilde_paths_expand_on_the_device(sshd, models, tmp_path, monkeypatch):
    """Profile paths like ``~/edgekit/bin/python`` are the device user's home, not a quoted literal '~'."""
    import uuid

    name = f".cache/edgekit-pytest-{uuid.uuid4().hex[:8]}"
    home_dir = Path.home() / name  # the fixture's login user is the user running the tests
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "tildepi.yaml").write_text(
        f"transport: ssh\nhost: {sshd['SSHD_HOST']}\nport: {sshd['SSHD_PORT']}\nuser: {sshd['SSHD_USER']}\n"
        f"key_file: {sshd['SSHD_KEY']}\nknown_hosts: {sshd['SSHD_KNOWN_HOSTS']}\nwork_dir: ~/{name}\n"
        f"python: ~/{name}/py\n")
    monkeypatch.setenv("EDGEKIT_DEVICES_DIR", str(tmp_path / "p"))
    home_dir.mkdir(parents=True)
    try:
        (home_dir / "py").write_text(f"#!/bin/sh\nexec {sys.executable} \"$@\"\n")
        (home_dir / "py").chmod(0o755)
        (row,) = bench([models["tiny"]], "tildepi", runs=3, warmup=1)
        assert row.ok, row.error
        assert list(home_dir.glob("cache/*/tiny.tflite")) and not list(home_dir.glob("run-*"))
    finally:
        shutil.rmtree(home_dir, ignore_errors=True)


def test_work_dir_is_private_and_a_foreign_one_is_refused(sshd, models, tmp_path):
    """Issue 8 item 2 over a real SSH session: the work dir is created 0700; one owned by another user is refused."""
    import stat

    work = tmp_path / "private" / "work"
    (row,) = bench([models["tiny"]], url(sshd), **kw(sshd, runs=2))  # default work dir: ~/.cache/edgekit/bench
    assert row.ok, row.error
    assert stat.S_IMODE((Path.home() / ".cache/edgekit/bench").stat().st_mode) == 0o700
    from edgekit.devices.profiles import DeviceSpec

    spec = DeviceSpec(name="pi", transport="ssh", host=sshd["SSHD_HOST"], port=int(sshd["SSHD_PORT"]),
                      user=sshd["SSHD_USER"], work_dir=str(work))
    (row,) = bench([models["tiny"]], spec, **kw(sshd, runs=2))
    assert row.ok and stat.S_IMODE(work.stat().st_mode) == 0o700
    if os.geteuid() != 0:
        pytest.skip("chown to another user needs root")
    foreign = tmp_path / "shared"
    foreign.mkdir(mode=0o777)
    os.chown(foreign, 65534, 65534)  # nobody
    (row,) = bench([models["tiny"]], spec.replace(work_dir=str(foreign)), **kw(sshd, runs=2))
    assert row.status == "invalid_argument" and "belongs to another user" in row.error and "work_dir" in row.hint
