"""Transport logic without the devlab (issue 9 item 4: MockTransport, httpx's pattern): device cache by sha256,
private work dir, quoting, cleanup, error mapping; and bench's run protocol against a mocked device."""
from __future__ import annotations

import hashlib
import importlib
import json
import shlex

import pytest

from edgekit.devices.profiles import DeviceSpec
from edgekit.devices.transports import Completed, MockTransport
from edgekit.errors import ConnectError, DeviceTimeout, InvalidArgument

bench_mod = importlib.import_module("edgekit.devices.bench")  # the module (the package exports the function)


def spec(**kw) -> DeviceSpec:
    return DeviceSpec(name="pi", transport="ssh", host="h", **kw)


def test_work_dir_defaults_to_a_private_home_folder_created_0700():
    t = MockTransport(spec=spec())
    t.connect()
    assert t.work_dir == "/home/me/.cache/edgekit/bench" and t.run_dir.startswith(t.work_dir + "/run-")
    assert t.dirs[t.work_dir] == 0o700
    prep = next(s for s in t.log if s.startswith("umask 077"))
    assert "[ ! -O /home/me/.cache/edgekit/bench ]" in prep and "chmod" not in prep


@pytest.mark.parametrize("mode", [0o1777, 0o755, 0o700])
def test_an_existing_work_dir_keeps_its_mode(mode):
    """Issue 18: a profile's work_dir pointing at a shared 1777 folder (/tmp) was chmod'ed 0700, locking others out."""
    t = MockTransport(spec=spec(work_dir="/tmp"))
    t.dirs["/tmp"] = mode
    t.connect()
    assert t.dirs["/tmp"] == mode and t.dirs[t.run_dir] == 0o700


@pytest.mark.parametrize("where", ["/srv/open", "/srv/open/cache"])
def test_a_work_dir_others_can_write_without_sticky_bit_is_refused(where):
    t = MockTransport(spec=spec(work_dir="/srv/open"))
    t.dirs["/srv/open"] = 0o700
    t.dirs[where] = 0o777
    with pytest.raises(InvalidArgument, match="writable by other users and has no sticky bit") as info:
        t.connect()
    assert where in str(info.value) and f"chmod go-w {where}" in info.value.hint
    assert t.dirs[where] == 0o777 and not any("/run-" in d for d in t.dirs)


def test_the_work_dir_script_never_chmods_a_real_folder(tmp_path):
    """The device script run by a real /bin/sh: a 1777 folder keeps its mode, a 0777 one (and a 0777 cache in a
    private one) is refused unchanged, a missing one (and its parents) is created 0700."""
    import os
    import stat
    from pathlib import Path

    from edgekit.devices.transports.local import LocalTransport

    def mode(p):
        return stat.S_IMODE(p.stat().st_mode)

    shared, opened, fresh = tmp_path / "shared", tmp_path / "open", tmp_path / "new" / "work"
    for d, m in ((shared, 0o1777), (opened, 0o777)):
        d.mkdir()
        os.chmod(d, m)
    t = LocalTransport(DeviceSpec(name="box", transport="local", work_dir=str(shared)))
    t.connect()
    assert mode(shared) == 0o1777 and mode(Path(t.run_dir)) == 0o700
    t.close()
    t = LocalTransport(DeviceSpec(name="box", transport="local", work_dir=str(opened)))
    with pytest.raises(InvalidArgument, match="writable by other users"):
        t.connect()
    assert mode(opened) == 0o777 and list(opened.iterdir()) == []
    t = LocalTransport(DeviceSpec(name="box", transport="local", work_dir=str(fresh)))
    t.connect()
    assert mode(fresh) == 0o700 and mode(fresh.parent) == 0o700
    t.close()
    (fresh / "cache").mkdir()
    os.chmod(fresh / "cache", 0o777)
    with pytest.raises(InvalidArgument, match="cache on box is writable by other users"):
        LocalTransport(DeviceSpec(name="box", transport="local", work_dir=str(fresh))).connect()


def test_work_dir_owned_by_another_user_is_refused():
    t = MockTransport(spec=spec(work_dir="/tmp/shared"))
    t.foreign.add("/tmp/shared")
    with pytest.raises(InvalidArgument, match="belongs to another user") as info:
        t.connect()
    assert "work_dir" in info.value.hint


def test_a_symlinked_work_dir_is_refused():
    """Issue 8: ``[ -O dir ]`` follows links, so a link another user owns, pointing at a dir of ours, passed."""
    t = MockTransport(spec=spec(work_dir="/tmp/edgekit-bench"))
    t.links.add("/tmp/edgekit-bench")
    with pytest.raises(InvalidArgument, match="is a symbolic link") as info:
        t.connect()
    assert "work_dir" in info.value.hint and "/tmp/edgekit-bench" not in t.dirs


def test_the_work_dir_script_refuses_a_real_symlink(tmp_path):
    """The same check run by a real /bin/sh (the local transport runs the device script as is): a link to a folder
    of ours is refused, owned by us or (as root) by another user; the real folder is used as it is."""
    import os

    from edgekit.devices.transports.local import LocalTransport

    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    if os.geteuid() == 0:
        os.lchown(link, 65534, 65534)  # the attack: someone else's link to our folder
    t = LocalTransport(DeviceSpec(name="box", transport="local", work_dir=str(link)))
    with pytest.raises(InvalidArgument, match="is a symbolic link"):
        t.connect()
    assert list(real.iterdir()) == []  # no run dir made through the link
    t = LocalTransport(DeviceSpec(name="box", transport="local", work_dir=str(real)))
    t.connect()
    assert [p.name[:4] for p in real.iterdir()] == ["run-"]
    t.close()


def test_cache_is_checked_by_sha256_on_the_device_and_recopied_on_mismatch(tmp_path):
    """Issue 8 item 2: a planted same-size file must not be used (it was, when only the size was compared)."""
    runner = tmp_path / "runner.py"
    runner.write_text("print('genuine')\n")
    t = MockTransport(spec=spec())
    t.connect()
    dest = t.put(runner)
    assert t.files[dest] == runner.read_bytes() and t.transfers == ["runner.py"]
    assert dest == f"{t.work_dir}/cache/{hashlib.sha256(runner.read_bytes()).hexdigest()[:20]}/runner.py"
    t.transfers = []
    assert t.put(runner) == dest and t.transfers == []  # same content: not copied again
    t.files[dest] = b"print('evil!!!')\n"  # another user plants a file of the SAME size
    assert len(t.files[dest]) == runner.stat().st_size
    t.put(runner)
    assert t.files[dest] == runner.read_bytes() and t.transfers == ["runner.py"]  # re-copied


def test_corrupted_upload_is_an_error(tmp_path):
    f = tmp_path / "m.tflite"
    f.write_bytes(b"x" * 100)

    class Flaky(MockTransport):
        def _upload(self, local, dest):
            self.files[dest] = b"y" * 100

    t = Flaky(spec=spec())
    t.connect()
    with pytest.raises(Exception, match="arrived corrupted"):
        t.put(f)


def test_hostile_names_are_quoted(tmp_path):
    name = "it's a \"model\" $(rm -rf ~) `x`; ls.tflite"
    f = tmp_path / name
    f.write_bytes(b"m")
    seen = []

    def handler(req):
        seen.append(req.argv)
        return Completed(0, "", "")

    t = MockTransport(handler, spec=spec(cpu_mask="f0"))
    t.connect()
    dest = t.put(f)
    t.run(["python3", dest, "--x", "a b"])
    assert seen[-1] == ["taskset", "f0", "python3", dest, "--x", "a b"]  # round-trips through the shell quoting
    assert all(shlex.split(s) for s in t.log)  # every script is well-formed shell


def test_close_removes_the_run_dir_and_keeps_the_cache(tmp_path):
    f = tmp_path / "m.tflite"
    f.write_bytes(b"m")
    t = MockTransport(spec=spec())
    with t:
        cached = t.put(f)
        t.files[t.run_file("outputs.npz")] = b"o"
    assert cached in t.files and not any(p.startswith(t.run_dir) for p in t.files) and t.disconnected


def test_abort_kills_the_running_command_and_cleans_up():
    def handler(req):
        raise KeyboardInterrupt  # Ctrl-C while the runner runs

    t = MockTransport(handler, spec=spec())
    t.connect()
    with pytest.raises(KeyboardInterrupt):
        t.run(["python3", "runner.py"])
    pid_file = t.pid_file
    assert pid_file and pid_file.startswith(t.run_dir)
    t.abort()
    assert t.killed == [pid_file] and t.run_dir not in t.dirs


@pytest.mark.parametrize("exc,cls", [(TimeoutError("slow"), DeviceTimeout), (OSError("reset"), ConnectError)])
def test_foreign_errors_are_mapped(exc, cls):
    def handler(req):
        raise exc

    t = MockTransport(handler, spec=spec())
    t.connect()
    with pytest.raises(cls):
        t.run(["true"])


def test_get_brings_a_device_file_back_atomically(tmp_path):
    t = MockTransport(spec=spec())
    t.connect()
    t.files["/d/out.npz"] = b"data"
    assert t.get("/d/out.npz", tmp_path / "o.npz").read_bytes() == b"data"
    with pytest.raises(FileNotFoundError):
        t.get("/d/missing", tmp_path / "m.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.npz"]  # no partial file left


def test_bench_protocol_on_a_mocked_device(tmp_path, monkeypatch):
    """bench() against a mocked runner: argv (runtime: from the profile, threads), statistics, CIs, warnings."""
    art = tmp_path / "m_int8.tflite"
    art.write_bytes(b"\x1c\x00\x00\x00TFL3model")
    sha = hashlib.sha256(art.read_bytes()).hexdigest()
    calls = []
    samples = [1.0 + 0.01 * (i % 7) for i in range(60)]
    hot = {"cpus": {"0": {"governor": "ondemand", "freq_mhz": 1800.0}}, "thermal_c": {"cpu": 50.0},
           "loadavg": [0.1, 0.1, 0.1], "affinity": [0], "pinned": False}
    doc = {"schema": 1, "tool": "runner", "runtime": {"name": "tflite_runtime", "version": "2.14.0"},
           "model": {"sha256": sha}, "config": {"threads": 4, "delegate": "auto"}, "latency_ms": {
               "count": 60, "mean": 1.03, "p50": 1.03}, "samples_ms": samples,
           "system": {"before": hot, "after": {**hot, "cpus": {"0": {"governor": "ondemand", "freq_mhz": 600.0}}}},
           "machine": {"machine": "aarch64"}}

    def handler(req):
        calls.append(req.argv)
        return Completed(0, "noise\n" + json.dumps(doc) + "\n", "")

    monkeypatch.setattr(bench_mod, "create", lambda s, o: MockTransport(handler, spec=s, options=o))
    dev = DeviceSpec(name="pi", transport="ssh", host="h", threads=4, runtime="tflite-runtime",
                     python="/opt/py/bin/python")
    (row,) = bench_mod.bench([art], dev, runs=60)
    argv = calls[-1]
    assert argv[0] == "/opt/py/bin/python" and argv[argv.index("--runtime") + 1] == "tflite-runtime"
    assert argv[argv.index("--threads") + 1] == "4"
    assert row.ok and row.runtime == "tflite_runtime" and row.p50_ci_ms[0] <= 1.03 <= row.p50_ci_ms[1]
    assert any("governor is ondemand" in w for w in row.warnings)
    assert any("1800->600 MHz" in w for w in row.warnings)


def test_bench_and_compare_take_their_spec_or_its_keywords(tmp_path, monkeypatch):
    """One path: a ready BenchSpec/CompareSpec, or the same keyword arguments built into it (keywords override the
    spec's fields); compare measures each side with the BenchSpec fields it shares."""
    import inspect

    from edgekit.devices.compare import compare
    from edgekit.specs import BenchSpec, CompareSpec

    art = tmp_path / "m.tflite"
    art.write_bytes(b"\x1c\x00\x00\x00TFL3model")
    doc = {"schema": 1, "tool": "runner", "runtime": {"name": "tflite_runtime", "version": "2.14.0"},
           "model": {"sha256": hashlib.sha256(art.read_bytes()).hexdigest()}, "config": {"threads": 1},
           "latency_ms": {"count": 30, "p50": 1.0}, "samples_ms": [1.0 + 0.01 * (i % 5) for i in range(30)]}
    calls = []

    def handler(req):
        calls.append(req.argv)
        return Completed(0, json.dumps(doc), "")

    monkeypatch.setattr(bench_mod, "create", lambda s, o: MockTransport(handler, spec=s, options=o))
    pi, box = (DeviceSpec(name=n, transport="ssh", host="h", python="py") for n in ("pi", "box"))
    (a,) = bench_mod.bench([art], pi, runs=30, seed=3, threads=2)
    (b,) = bench_mod.bench(spec=BenchSpec(artifacts=(str(art),), devices=(pi,), runs=30, seed=3, threads=2))
    (c,) = bench_mod.bench(spec=BenchSpec(artifacts=(str(art),), devices=(pi,), runs=5), runs=30, seed=3, threads=2)
    assert calls[0] == calls[1] == calls[2] and a.p50_ms == b.p50_ms == c.p50_ms
    argv = calls[0]
    assert [argv[argv.index(f) + 1] for f in ("--runs", "--seed", "--threads")] == ["30", "3", "2"]
    calls.clear()
    cmp = compare(spec=CompareSpec(artifacts=(str(art),), devices=(pi, box), runs=30, seed=3, threads=2))
    assert cmp.kind == "devices" and len(calls) == 2 and all(x[2:] == argv[2:] for x in calls)
    for fn, spec_cls in ((bench_mod.bench, BenchSpec), (compare, CompareSpec)):
        assert fn.spec_class is spec_cls
        assert set(inspect.signature(fn).parameters) == {*spec_cls.keys(), "spec", "progress"}
    with pytest.raises(InvalidArgument, match="unknown key 'rnus'") as info:
        compare(spec=CompareSpec(artifacts=("a.tflite", "b.tflite")), rnus=3)
    assert "runs" in info.value.hint
    with pytest.raises(InvalidArgument, match="benchmark_binary does not apply"):
        compare(spec=CompareSpec(artifacts=("a.tflite", "b.tflite"), benchmark_binary="bm"))


def test_runner_reading_another_model_is_an_error(tmp_path, monkeypatch):
    art = tmp_path / "m.tflite"
    art.write_bytes(b"model")
    doc = {"runtime": {"name": "x"}, "model": {"sha256": "0" * 64}, "latency_ms": {}}
    monkeypatch.setattr(bench_mod, "create", lambda s, o: MockTransport(
        lambda req: Completed(0, json.dumps(doc), ""), spec=s, options=o))
    (row,) = bench_mod.bench([art], DeviceSpec(name="pi", transport="ssh", host="h"), runs=3)
    assert row.status == "remote_error" and "sha256 differs" in row.error


def test_a_device_that_cannot_hash_is_refused_not_trusted(tmp_path):
    f = tmp_path / "runner.py"
    f.write_text("x")
    t = MockTransport(spec=spec())
    t.connect()
    t.has_sha256sum = False
    t.files[t.cache_path("runner.py", hashlib.sha256(b"x").hexdigest())] = b"x"
    with pytest.raises(Exception, match="cannot compute a sha256") as info:
        t.put(f)
    assert "sha256sum" in info.value.hint


def test_close_kills_a_runner_that_abort_could_not_reach():
    """On a loaded device abort() may time out; close() must still kill the interrupted command, not only rm."""
    def handler(req):
        raise KeyboardInterrupt

    t = MockTransport(handler, spec=spec())
    t.connect()
    with pytest.raises(KeyboardInterrupt):
        t.run(["python3", "runner.py"])
    pid_file = t.pid_file
    t.close()  # no abort() got through
    assert t.killed == [pid_file] and t.run_dir not in t.dirs and t.disconnected


def test_a_known_hosts_folder_edgekit_creates_is_private(tmp_path):
    """The work-dir rule for the other folder bench may create: a missing ~/.ssh is made 0700, not 0755."""
    import os
    import stat

    paramiko = pytest.importorskip("paramiko")
    from edgekit.devices.transports.ssh import _AcceptNewPolicy

    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    for folder in (tmp_path / "home" / ".ssh", shared):
        policy = _AcceptNewPolicy(str(folder / "known_hosts"))
        policy.missing_host_key(paramiko.SSHClient(), "pi.local", paramiko.RSAKey.generate(1024))
        assert "pi.local ssh-rsa" in (folder / "known_hosts").read_text()
    assert stat.S_IMODE((tmp_path / "home" / ".ssh").stat().st_mode) == 0o700
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777
