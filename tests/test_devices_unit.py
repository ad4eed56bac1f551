"""Unit tests of the device layer: benchmark_model parser, runner statistics/inputs, device specs, profiles, history."""
from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgekit.cli import main
from edgekit.devices import TRANSPORTS, benchmark_model, history, parse_device, runner
from edgekit.devices.bench import artifact_info, status_of
from edgekit.devices.profiles import DeviceSpec, list_profiles, load_profile
from edgekit.errors import (AuthError, ConnectError, DeviceTimeout, HostKeyError, InvalidArgument, ModelLoadError,
                            RemoteCommandError, RuntimeMissing, UnknownNameError)

REPO = Path(__file__).resolve().parents[1]
FAKE_BM = Path(__file__).with_name("fake_benchmark_model.sh")

# the documented output of TFLite's benchmark_model (tensorflow/lite/tools/benchmark README), two vintages
BM_OLD = """STARTING!
Num threads: [4]
Graph: [./mobilenet_v1_1.0_224.tflite]
Loaded model ./mobilenet_v1_1.0_224.tflite
Initialized session in 17.187ms.
Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
count=1 curr=3512391

Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
count=50 first=2990275 curr=2913402 min=2727568 max=3189954 avg=2.95034e+06 std=109798

Inference timings in us: Init: 17187, First inference: 3512391, Warmup (avg): 3.51239e+06, Inference (avg): 2.95034e+06
Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory
Peak memory footprint (MB): init=4.92969 overall=138.809
"""
BM_NEW = """INFO: Initialized session in 119.515ms.
INFO: count=9 first=87112 curr=51629 min=51629 max=87112 avg=58147.4 std=11478 p5=51629 median=51962 p95=87112

INFO: count=1000 first=52162 curr=49785 min=49088 max=686105 avg=63743.2 std=60716 p5=49620 median=51891 p95=68628

INFO: Inference timings in us: Init: 119515, First inference: 87112, Warmup (avg): 58147.4, Inference (avg): 63743.2
INFO: Memory footprint delta from the start of the tool (MB): init=55.4961 overall=55.4961
INFO: Overall peak memory footprint (MB) via periodic monitoring: 61.25
"""


def test_parse_benchmark_model_old_format_leaves_missing_percentiles_null():
    d = benchmark_model.parse(BM_OLD)
    assert d["init_ms"] == pytest.approx(17.187)
    assert d["first_inference_ms"] == pytest.approx(3512.391)
    assert d["warmup"] == {"count": 1, "mean_ms": pytest.approx(3512.39)}
    lat = d["latency_ms"]
    assert lat["count"] == 50 and lat["mean"] == pytest.approx(2950.34) and lat["std"] == pytest.approx(109.798)
    assert lat["min"] == pytest.approx(2727.568) and lat["max"] == pytest.approx(3189.954)
    assert all(lat[k] is None for k in ("p5", "p50", "p90", "p95", "p99"))  # not printed -> not invented
    assert d["memory"]["overall_delta_bytes"] == round(138.809 * 2**20) and d["memory"]["peak_rss_bytes"] is None


def test_parse_benchmark_model_new_format_with_percentiles_and_peak_memory():
    d = benchmark_model.parse(BM_NEW)
    lat = d["latency_ms"]
    assert lat["count"] == 1000 and lat["p50"] == pytest.approx(51.891) and lat["p95"] == pytest.approx(68.628)
    assert lat["p5"] == pytest.approx(49.62) and lat["p90"] is None and lat["p99"] is None
    assert d["warmup"]["count"] == 9 and d["warmup"]["mean_ms"] == pytest.approx(58.1474)
    assert d["memory"]["peak_rss_bytes"] == round(61.25 * 2**20)  # the tool's "MB" are MiB
    assert d["memory"]["init_delta_bytes"] == round(55.4961 * 2**20)


def test_parse_benchmark_model_failure_names_the_cause():
    text = "ERROR: The model is not a valid Flatbuffer buffer\nERROR: Failed to mmap model x\nBenchmarking failed.\n"
    with pytest.raises(RemoteCommandError, match="not a valid Flatbuffer"):
        benchmark_model.parse(text)


def test_benchmark_model_command_flags():
    argv = benchmark_model.command("/d/bm", "/d/m 1.tflite", threads=4, runs=20, warmup=3, max_seconds=60,
                                   delegate="none")
    assert argv[0] == "/d/bm" and "--graph=/d/m 1.tflite" in argv and "--num_threads=4" in argv
    assert "--num_runs=20" in argv and "--warmup_runs=3" in argv and "--use_xnnpack=false" in argv
    assert "--use_xnnpack=true" in benchmark_model.command("b", "m", threads=None, runs=1, warmup=0, max_seconds=1)


def test_fake_benchmark_model_output_parses(tmp_path):
    """The adb tests' stand-in prints exactly what the parser reads."""
    import subprocess

    model = tmp_path / "m.tflite"
    model.write_bytes(b"\x1c\x00\x00\x00TFL3" + b"\x00" * 32)
    out = subprocess.run(["sh", str(FAKE_BM), f"--graph={model}", "--num_runs=7", "--warmup_runs=2"],
                         capture_output=True, text=True, check=True).stdout
    d = benchmark_model.parse(out)
    assert d["latency_ms"]["count"] == 7 and d["warmup"]["count"] == 2


def test_summarize_matches_numpy_and_empty():
    ns = [1_000_000 * v for v in range(1, 101)]  # 1..100 ms
    s = runner.summarize(np, ns)
    assert s["count"] == 100 and s["mean"] == pytest.approx(50.5) and s["min"] == 1 and s["max"] == 100
    assert s["p50"] == pytest.approx(50.5) and s["p90"] == pytest.approx(np.percentile(np.arange(1, 101), 90))
    assert s["std"] == pytest.approx(np.std(np.arange(1, 101)))
    assert runner.summarize(np, [])["mean"] is None


def test_timed_loop_respects_max_time():
    clock = iter(range(0, 10**9, 10)).__next__  # a fake clock: +10 ns per reading
    lat = runner.timed_loop(lambda: None, 1000, 95, clock=clock)
    assert 1 <= len(lat) < 1000 and all(v == 10 for v in lat)


@pytest.mark.parametrize("dtype,lo,hi", [("int8", -128, 127), ("uint8", 0, 255), ("int16", -32768, 32767),
                                         ("float32", 0.0, 1.0)])
def test_random_inputs_cover_the_dtype_range(dtype, lo, hi):
    spec = {"name": "x", "shape": [4096], "dtype": dtype}
    (x,) = runner.make_inputs(np, [spec], None, seed=0)
    assert x.dtype == np.dtype(dtype) and x.shape == (4096,)
    assert x.min() >= lo and x.max() <= hi
    if dtype != "float32":
        assert x.min() < lo + (hi - lo) * 0.05 and x.max() > hi - (hi - lo) * 0.05  # full integer range


def test_inputs_from_npy_are_checked(tmp_path):
    spec = {"name": "x", "shape": [1, 2], "dtype": "float32"}
    good = tmp_path / "good.npy"
    np.save(good, np.ones((1, 2), np.float32))
    (x,) = runner.make_inputs(np, [spec], str(good), 0)
    assert x.tolist() == [[1.0, 1.0]]
    bad = tmp_path / "bad.npy"
    np.save(bad, np.ones((1, 2), np.float64))
    with pytest.raises(runner.RunnerError, match="float64"):
        runner.make_inputs(np, [spec], str(bad), 0)


def test_runner_probe_does_not_import_interpreters():
    import subprocess
    import sys

    code = ("import sys, json, runpy; sys.argv=['runner.py','--probe']; "
            "import io, contextlib; buf=io.StringIO()\n"
            "with contextlib.redirect_stdout(buf):\n"
            "    try: runpy.run_path(%r, run_name='__main__')\n"
            "    except SystemExit: pass\n"
            "heavy = ('tensorflow', 'ai_edge_litert', 'onnxruntime', 'edgekit')\n"
            "print(json.dumps([m for m in heavy if m in sys.modules]))"
            % str(runner.__file__))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out.strip().splitlines()[-1]) == []


def test_runner_source_is_self_contained_and_py39_syntax():
    import ast

    src = Path(runner.__file__).read_text()
    tree = ast.parse(src, feature_version=(3, 9))  # no match statements etc.
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert "edgekit" not in imported and "tensorflow" not in imported
    assert "from __future__ import annotations" not in src  # runtime annotations would need 3.10 on device
    for node in ast.walk(tree):  # no PEP 604 unions evaluated at runtime
        assert not (isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr)
                    and isinstance(node.left, ast.Name) and node.left.id in ("str", "int", "float", "None"))


# ------------------------------------------------------------------------------ device specs and profiles
@pytest.mark.parametrize("text,transport,attrs", [
    ("local", "local", {}),
    ("ssh://pi@raspberrypi.local", "ssh", {"user": "pi", "host": "raspberrypi.local", "port": 22}),
    ("ssh://root@127.0.0.1:2222", "ssh", {"user": "root", "host": "127.0.0.1", "port": 2222}),
    ("adb://R58M123", "adb", {"serial": "R58M123"}),
    ("adb://127.0.0.1:5555", "adb", {"serial": "127.0.0.1:5555"}),
    ("adb://", "adb", {"serial": None}),
])
def test_parse_device_urls(text, transport, attrs):
    spec = parse_device(text)
    assert spec.transport == transport and spec.transport in TRANSPORTS
    for k, v in attrs.items():
        assert getattr(spec, k) == v


@pytest.mark.parametrize("text", ["ssh://", "ftp://x", "ssh://h:notaport", ""])
def test_parse_device_rejects_bad_specs(text):
    with pytest.raises(InvalidArgument):
        parse_device(text)


def test_unknown_device_gets_did_you_mean():
    with pytest.raises(UnknownNameError) as info:
        parse_device("rpi")
    assert "rpi4" in str(info.value.hint)


def test_unknown_device_hint_lists_each_known_device_once(tmp_path):
    """local.yaml ships in devices/ and `local` is built in: the hint listed it twice."""
    with pytest.raises(UnknownNameError) as info:
        parse_device("zzzz")
    known = info.value.hint.removeprefix("known: ").removesuffix(" ...").split(", ")
    assert "local" in known and len(known) == len(set(known)), info.value.hint
    assert info.value.known.count("local") == 1
    (tmp_path / "m.tflite").write_bytes(b"x")
    r = CliRunner().invoke(main, ["bench", str(tmp_path / "m.tflite"), "-d", "zzzz"])
    assert r.exit_code == 2 and "unknown device" in r.output and r.output.count("local") == 1, r.output


def test_parity_rows_of_a_two_output_tflite_show_the_signature_names(tmp_path):
    """TFLite output tensors are named StatefulPartitionedCall:k; the parity table shows the signature keys."""
    pytest.importorskip("ai_edge_litert")
    from tflite_files import build

    from edgekit import _verify_data as verify_data
    from edgekit.devices import bench

    c1, c2 = np.arange(4, dtype=np.float32), np.full(4, -2.0, np.float32)
    tensors = [("serving_default_x:0", [1, 4], "float32", None), ("c1", [4], "float32", c1),
               ("StatefulPartitionedCall:0", [1, 4], "float32", None), ("c2", [4], "float32", c2),
               ("StatefulPartitionedCall:1", [1, 4], "float32", None)]
    art = tmp_path / "twohead_float32.tflite"
    art.write_bytes(build([("ADD", [0, 1], [2]), ("ADD", [0, 3], [4])], tensors, [0], [2, 4],
                          signature=({"x": 0}, {"score": 2, "box": 4})))
    x = np.random.default_rng(0).standard_normal((6, 4)).astype(np.float32)
    entry = verify_data.write(tmp_path / (art.name + verify_data.VERIFY_SUFFIX), inputs=[x], reference=[x + c1, x + c2],
                              input_names=["serving_default_x:0"],
                              output_names=["StatefulPartitionedCall:0", "StatefulPartitionedCall:1"],
                              output_keys=["score", "box"], precision="float32")
    assert verify_data.read(tmp_path / entry["file"]).output_keys == ["score", "box"] == entry["output_keys"]
    (tmp_path / (art.name + ".json")).write_text(json.dumps({"model": {"name": "twohead"}, "precision": "float32",
                                                             "verification_inputs": entry}))
    (row,) = bench([art], "local", verify=True, runs=2, warmup=0)
    assert row.parity["status"] == "passed", row.parity
    assert [o["name"] for o in row.parity["outputs"]] == ["score", "box"], row.parity["outputs"]
    r = CliRunner().invoke(main, ["bench", str(art), "--verify", "--runs", "2", "--warmup", "0", "--no-history"])
    assert r.exit_code == 0 and "score" in r.output and "StatefulPartitionedCall" not in r.output, r.output


@pytest.mark.parametrize("name", list_profiles())
def test_shipped_profiles_load(name):
    spec = parse_device(name)
    assert spec.transport in TRANSPORTS and spec.source and spec.name == name
    if spec.transport == "adb" and not spec.python:
        assert spec.benchmark_binary, "adb profiles without python need benchmark_binary"


def test_shipped_profiles_cover_the_brief():
    assert {"local", "rpi4", "rpi5", "pixel7", "android"} <= set(list_profiles())
    assert parse_device("pixel7").cpu_mask == "f0"


def test_profile_search_path_env_first_and_typos_rejected(tmp_path, monkeypatch):
    (tmp_path / "rpi4.yaml").write_text("transport: ssh\nhost: mypi\nuser: me\ncpu_mask: 0xF\n")
    (tmp_path / "typo.yaml").write_text("transport: ssh\nhots: mypi\n")
    monkeypatch.setenv("EDGEKIT_DEVICES_DIR", str(tmp_path))
    spec = parse_device("rpi4")
    assert spec.host == "mypi" and spec.cpu_mask == "f" and Path(spec.source).parent == tmp_path
    with pytest.raises(InvalidArgument, match="hots"):
        parse_device("typo")
    with pytest.raises(InvalidArgument, match="transport"):
        (tmp_path / "bad.yaml").write_text("transport: usb\n")
        load_profile(tmp_path / "bad.yaml")


@pytest.mark.parametrize("exc,status", [(HostKeyError("x"), "host_key_error"), (AuthError("x"), "auth_error"),
                                        (DeviceTimeout("x"), "timeout"), (ConnectError("x"), "connect_error"),
                                        (RuntimeMissing("x"), "runtime_missing"),
                                        (ModelLoadError("x"), "model_load_error"),
                                        (RemoteCommandError("x"), "remote_error")])
def test_status_of(exc, status):
    assert status_of(exc) == status


# ------------------------------------------------------------------------------ artifacts, history
def test_artifact_info_reads_manifest_or_file_name(tmp_path):
    a = tmp_path / "mobilenet_v1_0.25_32_int8.tflite"
    a.write_bytes(b"x" * 10)
    info = artifact_info(a)
    assert info.precision == "int8" and info.model == "mobilenet_v1_0.25_32" and info.format == "tflite"
    (tmp_path / (a.name + ".json")).write_text(json.dumps({"model": {"name": "mnv1"}, "precision": "float16"}))
    info = artifact_info(a)
    assert (info.model, info.precision) == ("mnv1", "float16") and info.manifest
    with pytest.raises(InvalidArgument):
        artifact_info(tmp_path / "missing.tflite")
    (tmp_path / "m.pb").write_bytes(b"")
    with pytest.raises(InvalidArgument, match="tflite or .onnx"):
        artifact_info(tmp_path / "m.pb")


def test_history_appends_whole_lines_concurrently(tmp_path):
    path = tmp_path / "h" / "hist.jsonl"

    def writer(k):
        for i in range(20):
            history.append(path, [{"writer": k, "i": i, "pad": "x" * 5000}, {"writer": k, "i": -i}])

    ts = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    lines = path.read_text().splitlines()
    assert len(lines) == 4 * 20 * 2 and all(json.loads(line) for line in lines)
    assert len(history.read(path)) == 160


def test_cli_devices_list_and_show_json():
    r = CliRunner().invoke(main, ["devices", "list", "--json"])
    assert r.exit_code == 0, r.output
    assert {"rpi4", "pixel7"} <= {d["name"] for d in json.loads(r.output)}
    r = CliRunner().invoke(main, ["devices", "show", "rpi5", "--json"])
    assert r.exit_code == 0 and json.loads(r.output)["transport"] == "ssh"
    r = CliRunner().invoke(main, ["devices", "show", "pixel"])
    assert r.exit_code == 2 and "pixel7" in r.output


def test_bench_rejects_bad_input_before_running(tmp_path):
    from edgekit.devices import bench

    with pytest.raises(InvalidArgument):
        bench([tmp_path / "nope.tflite"], "local")
    a = tmp_path / "a.tflite"
    a.write_bytes(b"x")
    for kw in ({"runs": 0}, {"warmup": -1}, {"threads": 0}, {"max_seconds": 0}, {"delegate": "gpu"}):
        with pytest.raises(InvalidArgument):
            bench([a], "local", **kw)
    with pytest.raises(UnknownNameError):
        bench([a], "rpi3")
    with pytest.raises(InvalidArgument, match="twice"):
        bench([a], ["local", "local"])


@pytest.mark.parametrize("option", ["--json", "--csv", "--history"])
def test_cli_bench_checks_output_paths_before_running(tmp_path, monkeypatch, option):
    import edgekit.devices

    def boom(*a, **k):
        raise AssertionError("the benchmark ran although its results could not be written")

    monkeypatch.setattr(edgekit.devices, "bench", boom)
    a = tmp_path / "a.tflite"
    a.write_bytes(b"x")
    blocker = tmp_path / "file"
    blocker.write_text("")  # a regular file where a directory is needed: unwritable, even for root
    r = CliRunner().invoke(main, ["bench", str(a), option, str(blocker / "out")])
    assert r.exit_code == 2 and f"cannot write {option}" in r.output, r.output


@pytest.mark.parametrize("kind", ["chardev", "fifo", "symlink", "dangling"])
@pytest.mark.parametrize("option", ["--json", "--csv", "--history"])
def test_cli_bench_refuses_a_device_fifo_or_link_as_output(tmp_path, monkeypatch, option, kind):
    """Issue 18: the temp-file rename turned a character device into a regular file and replaced a symlink (as
    root, ``--csv /dev/null`` would replace /dev/null). Now refused before the run; the target is untouched."""
    import os
    import stat

    import edgekit.devices

    monkeypatch.setattr(edgekit.devices, "bench", lambda *a, **k: pytest.fail("ran although the output is refused"))
    a = tmp_path / "a.tflite"
    a.write_bytes(b"x")
    target, kept = tmp_path / "target", tmp_path / "kept.csv"
    kept.write_text("old\n")
    if kind == "chardev":
        if os.geteuid() != 0:
            pytest.skip("mknod needs root")
        os.mknod(target, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # a /dev/null of our own
    elif kind == "fifo":
        os.mkfifo(target)
    else:
        target.symlink_to(kept if kind == "symlink" else tmp_path / "missing")
    before = os.lstat(target)
    r = CliRunner().invoke(main, ["bench", str(a), option, str(target)])
    words = {"chardev": "is a character device", "fifo": "is a FIFO"}.get(kind, "is a symbolic link")
    assert r.exit_code == 2 and words in r.output and "hint:" in r.output, r.output
    after = os.lstat(target)
    assert (after.st_mode, after.st_ino) == (before.st_mode, before.st_ino) and kept.read_text() == "old\n"


@pytest.mark.parametrize("kind", ["chardev", "fifo", "symlink"])
def test_atomic_outputs_never_replace_a_device_fifo_or_link(tmp_path, kind):
    """The one mechanism (edgekit._io.atomic_path) refuses, also when the thing appears while the file is written."""
    import os
    import stat

    from edgekit._io import write_text_atomic

    target = tmp_path / "t"

    def make():
        if kind == "chardev":
            os.mknod(target, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        elif kind == "fifo":
            os.mkfifo(target)
        else:
            target.symlink_to(tmp_path / "elsewhere")
    if kind == "chardev" and os.geteuid() != 0:
        pytest.skip("mknod needs root")
    make()
    with pytest.raises(InvalidArgument, match="regular files or new names|symbolic link"):
        write_text_atomic(target, "x")
    target.unlink()
    from edgekit._io import atomic_path

    with pytest.raises(InvalidArgument):
        with atomic_path(target) as tmp:
            tmp.write_text("x")
            make()  # appeared meanwhile
    assert not target.is_file() and [p.name for p in tmp_path.iterdir()] == ["t"]
    target.unlink()
    assert write_text_atomic(target, "ok").read_text() == "ok"
    assert write_text_atomic(target, "again").read_text() == "again"  # a regular file is replaced


def test_history_torn_line_does_not_eat_the_next_record(tmp_path):
    """Issue 18: a torn last line (a full disk, a kill) glued the next record onto it and `history` never showed
    it; bytes that are not UTF-8 made `history` an internal error."""
    path = tmp_path / "hist.jsonl"
    rec = {"sha256": "ab" * 32, "device": "local", "artifact": "m.tflite", "status": "ok", "p50_ms": 1.0}
    history.append(path, [rec])
    with open(path, "ab") as fh:
        fh.write(b'{"sha256": "torn", "p5')  # the torn write
    history.append(path, [dict(rec, p50_ms=2.0)])
    assert [r["p50_ms"] for r in history.read(path)] == [1.0, 2.0]
    assert path.read_bytes().count(b"\n") == 3  # the torn line was ended before the append
    # a file glued by an older edgekit: the record is recovered from the end of the line
    glued = tmp_path / "old.jsonl"
    glued.write_bytes(b'{"sha256": "torn", "p5' + json.dumps(dict(rec, p50_ms=3.0)).encode() + b"\n"
                      + b"\xff\xfe not utf-8\n" + b"[" * 100000 + b"\n" + json.dumps(rec).encode() + b"\n")
    assert [r["p50_ms"] for r in history.read(glued)] == [3.0, 1.0]
    r = CliRunner().invoke(main, ["history", "--history", str(glued), "--json"])
    assert r.exit_code == 0, r.output
    assert [x["p50_ms"] for x in json.loads(r.output)] == [3.0, 1.0]


@pytest.mark.parametrize("where", ["bench", "compare", "profile", "export", "doctor"])
def test_absurd_thread_counts_are_refused_up_front(tmp_path, monkeypatch, where):
    """Issue 18: `bench --threads 100000` segfaulted the runner (no hint) or ran for minutes."""
    a = tmp_path / "a.tflite"
    a.write_bytes(b"x")  # not a model: the bound is checked before the file is read
    args = {"bench": ["bench", str(a), "--threads", "100000", "--no-history"],
            "compare": ["compare", str(a), str(a), "--threads", "100000"],
            "export": ["export", "mobilenet_v1", "--threads", "100000", "--out", str(tmp_path / "o")],
            "doctor": ["doctor", "mobilenet_v1", "--threads", "100000"]}.get(where)
    if where == "profile":
        (tmp_path / "big.yaml").write_text("transport: local\nthreads: 100000\n")
        (tmp_path / "huge.yaml").write_text("transport: local\nthreads: '" + "9" * 100000 + "'\n")
        for name in ("big", "huge"):
            with pytest.raises(InvalidArgument, match="threads (must be <= 64|.* is out of range)"):
                load_profile(tmp_path / f"{name}.yaml")
        return
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2 and "100000" in r.stderr and "hint:" in r.stderr and "internal" not in r.stderr, r.output
    assert not (tmp_path / "o").exists()


def test_device_spec_roundtrip():
    spec = DeviceSpec(name="x", transport="ssh", host="h")
    assert spec.replace(host=None, port=2).port == 2 and spec.replace(host=None).host == "h"
    assert json.loads(spec.to_json())["host"] == "h"


# ------------------------------------------------------------------------------ issue 8: bad profiles, bench hints
@pytest.mark.parametrize("text,match", [
    ("transport: ssh\nhost: pi\nport: abc\n", "port must be a whole number"),
    ("transport: ssh\nhost: pi\nport: 70000\n", "port must be 1-65535"),
    ("transport: local\nthreads: [1, 2]\n", "threads must be a whole number"),
    ("transport: local\nthreads: 0\n", "threads must be >= 1"),
    ("transport: ssh\nuser: pi\n", "needs host"),
    ("transport: ssh\nhost: pi\nconnect_timeout: 0\n", "connect_timeout must be a number of seconds > 0"),
    ("transport: ssh\nhost: pi\nconnect_timeout: -3\n", "connect_timeout"),
    ("transport: ssh\nhost: [a, b]\n", "host must be a single value"),
    ("transport: ssh\nhost: pi\n  port: 22\n", "not valid YAML"),
    ("- transport: ssh\n", "must be a YAML mapping"),
])
def test_bad_profiles_are_clear_errors_naming_the_file(tmp_path, monkeypatch, text, match):
    (tmp_path / "bad.yaml").write_text(text)
    monkeypatch.setenv("EDGEKIT_DEVICES_DIR", str(tmp_path))
    with pytest.raises(InvalidArgument, match=match) as info:
        parse_device("bad")
    assert str(tmp_path / "bad.yaml") in info.value.message and info.value.hint
    r = CliRunner().invoke(main, ["bench", str(REPO / "README.md"), "-d", "bad"])  # CLI: exit 2 + hint
    assert r.exit_code == 2 and "hint:" in r.output and "Traceback" not in r.output


def test_one_bad_profile_does_not_break_devices_list(tmp_path, monkeypatch):
    (tmp_path / "good.yaml").write_text("transport: ssh\nhost: mypi\n")
    (tmp_path / "broken.yaml").write_text("transport: ssh\nhost: pi\nport: abc\n")
    monkeypatch.setenv("EDGEKIT_DEVICES_DIR", str(tmp_path))
    r = CliRunner().invoke(main, ["devices", "list"])
    assert r.exit_code == 0 and "good" in r.output and "rpi4" in r.output, r.output
    assert "broken skipped" in r.output and "broken.yaml" in r.output and "port" in r.output
    r = CliRunner().invoke(main, ["devices", "list", "--json"])
    rows = {d["name"]: d for d in json.loads(r.stdout)}
    assert rows["good"]["host"] == "mypi" and "port" in rows["broken"]["error"]


def test_connect_timeout_option_must_be_positive(tmp_path):
    a = tmp_path / "a.tflite"
    a.write_bytes(b"x")
    from edgekit.devices import bench

    with pytest.raises(InvalidArgument, match="connect-timeout"):
        bench([a], "local", connect_timeout=0)


def test_bench_hints_for_missing_non_model_artifact_and_zero_runs(tmp_path):
    a = tmp_path / "m_int8.tflite"
    a.write_bytes(b"x")
    (tmp_path / "m_int8.tflite.json").write_text("{}")
    cases = [([str(tmp_path / "nope.tflite")], "does not exist", "artifacts/"),
             ([str(tmp_path / "m_int8.tflite.json")], "not a .tflite or .onnx model", "m_int8.tflite"),
             ([str(tmp_path)], "is a directory", "*.tflite"),
             ([str(a), "--runs", "0"], "--runs must be >= 1", "--runs 50")]
    for args, msg, hint in cases:
        r = CliRunner().invoke(main, ["bench", *args, "--no-history"])
        assert r.exit_code == 2 and msg in r.output and "hint:" in r.output and hint in r.output, r.output


def test_runtime_from_the_profile_reaches_the_runner(tmp_path, monkeypatch):
    """Issue 9 item 7: `runtime:` was documented and set in rpi4.yaml but never read."""
    assert parse_device("rpi4").runtime == "ai-edge-litert"
    (tmp_path / "onnxbox.yaml").write_text("transport: local\nruntime: onnxruntime\n")
    monkeypatch.setenv("EDGEKIT_DEVICES_DIR", str(tmp_path))
    from edgekit.devices import bench

    (row,) = bench([_tiny(tmp_path)], "onnxbox",
                   runs=2, warmup=0)
    assert row.status == "invalid_argument" and "onnxruntime cannot run a .tflite" in row.error
    (tmp_path / "tfbox.yaml").write_text("transport: local\nruntime: tflite-runtime\n")
    (row,) = bench([_tiny(tmp_path)], "tfbox", runs=2, warmup=0)  # not installed here: named in the error
    assert row.status == "runtime_missing" and "tflite_runtime" in row.error and "runtime:" in row.hint


def _tiny(tmp_path):
    import os

    devlab = Path(os.environ.get("EDGEKIT_DEVLAB", REPO.parent / "shared" / "devlab"))
    if not (devlab / "tiny.tflite").is_file():
        pytest.skip("devlab tiny.tflite not found")
    return devlab / "tiny.tflite"


# ------------------------------------------------------------------------------ issue 13: per-op times
# benchmark_model --enable_op_profiling, two vintages (an older one with a [start] column, tab-separated; a newer
# one with XNNPACK's own per-op rows, whose node types contain spaces)
OPS_OLD = """Operator-wise Profiling Info for Regular Benchmark Runs:
============================== Run Order ==============================
\t             [node type]\t          [start]\t  [first]\t [avg ms]\t     [%]\t  [cdf%]\t  [mem KB]\t[times called]\t[Name]
\t                 CONV_2D\t            0.066\t   87.754\t   60.957\t  2.066%\t  2.066%\t     0.000\t        1\t[MobilenetV1/MobilenetV1/Conv2d_0/Relu6]:0
\t       DEPTHWISE_CONV_2D\t           61.033\t   53.628\t   49.870\t  1.691%\t  3.757%\t     0.000\t        1\t[MobilenetV1/MobilenetV1/Conv2d_1_depthwise/Relu6]:1

============================== Top by Computation Time ==============================
"""
OPS_NEW = """INFO: Operator-wise Profiling Info for Regular Benchmark Runs:
============================== Run Order ==============================
                                     [node type]          [first]        [avg ms]            [%]          [cdf%]          [mem KB]        [times called]  [Name]
                                        QUANTIZE            0.199           0.203         1.328%          1.328%             0.000                1       [tfl.quantize]:0
                   Convolution (NHWC, QC8) IGEMM            0.398           0.407         2.658%          3.986%             0.000                1       Delegate/Convolution (NHWC, QC8) IGEMM:0
"""


def test_parse_op_profiling_tables_of_both_vintages():
    old = benchmark_model.parse_op_profile(OPS_OLD)
    assert [(o["op"], o["avg_ms"]) for o in old["ops"]] == [("CONV_2D", 60.957), ("DEPTHWISE_CONV_2D", 49.87)]
    assert old["ops"][0]["name"] == "MobilenetV1/MobilenetV1/Conv2d_0/Relu6"
    new = benchmark_model.parse_op_profile(OPS_NEW)
    assert [(o["op"], o["avg_ms"]) for o in new["ops"]] == [("Convolution (NHWC, QC8) IGEMM", 0.407),
                                                            ("QUANTIZE", 0.203)]
    assert benchmark_model.parse_op_profile(BM_NEW) is None
    assert "--enable_op_profiling=true" in benchmark_model.command("b", "m", threads=None, runs=1, warmup=0,
                                                                   max_seconds=1, op_profiling=True)


def test_op_join_with_mult_adds_flags_ops_slow_for_their_cost():
    from edgekit.devices import opprofile

    prof = {"ops": [{"name": "net/conv_big/Conv2D", "op": "QLinearConv", "avg_ms": 1.0},
                    {"name": "net/conv_small/Conv2D", "op": "Conv", "avg_ms": 1.0},  # float kernel, little work
                    {"name": "net/softmax/Softmax", "op": "Softmax", "avg_ms": 0.2},
                    {"name": "tfl.quantize", "op": "QUANTIZE", "avg_ms": 0.01}],
            "runtime": "x", "source": "y"}
    layers = {"conv_big": 90_000_000, "conv_small": 10_000_000, "softmax": 0}
    j = opprofile.join(prof, layers, precision="int8")
    by = {o["name"]: o for o in j["ops"]}
    assert by["net/conv_big/Conv2D"]["layer"] == "conv_big" and not by["net/conv_big/Conv2D"]["flags"]
    small = by["net/conv_small/Conv2D"]
    assert small["ms_per_mmac"] == pytest.approx(0.1) and small["share"] == pytest.approx(1 / 2.21)
    assert any("slow for its cost" in f for f in small["flags"]) and "float kernel in an int8 model" in small["flags"]
    assert any("without mult-adds" in f for f in by["net/softmax/Softmax"]["flags"])
    assert j["flagged"] == 2
    xnn = {"ops": [{"name": "a, b", "op": "TfLiteXNNPackDelegate", "avg_ms": 1.0},
                   {"name": "model/gap/Mean", "op": "AVERAGE_POOL_2D", "avg_ms": 0.5}]}
    j = opprofile.join(xnn, None, precision="float32")
    assert [o["flags"] for o in j["ops"]] == [[], ["not taken by XNNPACK"]]


def test_litert_says_it_exposes_no_per_op_times(tmp_path):
    from edgekit.devices import bench

    (row,) = bench([_tiny(tmp_path)], "local", runs=3, warmup=0, profile_ops=True)
    assert row.ok and row.op_profile["available"] is False and "no per-op timings" in row.op_profile["reason"]
    assert "benchmark_model" in row.op_profile["reason"]
    assert row.init_ms > 0 and row.first_inference_ms > 0  # model load time and first inference, as benchmark_model


def test_unknown_runtime_in_a_profile_or_option_is_rejected(tmp_path, monkeypatch):
    (tmp_path / "odd.yaml").write_text("transport: local\nruntime: tensorrt\n")
    monkeypatch.setenv("EDGEKIT_DEVICES_DIR", str(tmp_path))
    with pytest.raises(InvalidArgument, match="odd.yaml: runtime: unknown runtime 'tensorrt'") as info:
        parse_device("odd")
    assert "ai_edge_litert" in info.value.hint
    from edgekit.devices import bench

    a = tmp_path / "a.tflite"
    a.write_bytes(b"x")
    with pytest.raises(InvalidArgument, match="--runtime"):
        bench([a], "local", runtime="tensorrt")


def test_devices_check_reports_a_missing_profile_runtime(tmp_path, monkeypatch):
    from edgekit.devices import check

    (tmp_path / "tfbox.yaml").write_text("transport: local\nruntime: tflite-runtime\n")
    monkeypatch.setenv("EDGEKIT_DEVICES_DIR", str(tmp_path))
    rep = check("tfbox")
    assert rep.reachable and not rep.ready and any("runtime tflite-runtime" in f for f in rep.fixes), rep.fixes
    assert check("local").ready


def test_bad_input_and_verify_data_files_are_checked_on_the_host_before_connecting(tmp_path, monkeypatch):
    """Issue 8: an .npz holding an object array, an empty .npy or a truncated .npz were device rows (rc 1,
    ``remote_error: ValueError: Object arrays cannot be loaded...``, no hint). Now: exit 2, error + hint, no device."""
    import sys

    from tflite_files import build

    bench_mod = sys.modules["edgekit.devices.bench"]  # the package re-exports the function under the same name

    def boom(*a, **k):
        raise AssertionError("connected to a device although the input file is unusable")

    monkeypatch.setattr(bench_mod, "create", boom)
    art = tmp_path / "add_float32.tflite"
    art.write_bytes(build([("ADD", [0, 1], [2])], [("x", [1, 4], "float32", None),
                                                   ("c", [4], "float32", np.ones(4, np.float32)),
                                                   ("y", [1, 4], "float32", None)], [0], [2]))
    np.savez(tmp_path / "obj.npz", x=np.array([{"a": 1}, None], dtype=object))
    (tmp_path / "empty.npy").write_bytes(b"")
    np.save(tmp_path / "none.npy", np.zeros((0, 4), np.float32))
    np.savez(tmp_path / "good.npz", x=np.zeros((1, 4), np.float32))
    (tmp_path / "cut.npz").write_bytes((tmp_path / "good.npz").read_bytes()[:100])
    cases = {"obj.npz": "object", "empty.npy": "empty", "none.npy": "empty", "cut.npz": "truncated or corrupt"}
    for name, what in cases.items():
        for extra in (["--input", str(tmp_path / name)], ["--verify", "--verify-data", str(tmp_path / name)]):
            r = CliRunner().invoke(main, ["bench", str(art), "--runs", "2", "--no-history", *extra])
            lines = r.output.strip().splitlines()
            assert r.exit_code == 2, (name, r.output)
            assert lines[0].startswith("error: ") and what in lines[0] and name in lines[0], lines
            assert lines[1].startswith("hint: ") and len(lines) == 2, lines


@pytest.mark.parametrize("depth", [150, 100_000])
def test_deeply_nested_json_from_files_and_devices_is_bad_json(tmp_path, depth):
    """Issue 18: a manifest beside an artifact (or a device's answer) nesting 100,000 brackets was a RecursionError
    (`internal error:`); 150 levels parsed but broke the walks after it. Both are now just unusable JSON."""
    from edgekit._io import json_loads
    from edgekit.devices.protocol import runner_doc
    from edgekit.devices.transports import Completed
    from edgekit.errors import RemoteCommandError

    deep = "[" * depth + "]" * depth
    with pytest.raises(ValueError, match="nest"):
        json_loads(deep)
    a = tmp_path / "net_int8.tflite"
    a.write_bytes(b"x" * 10)
    (tmp_path / "net_int8.tflite.json").write_text('{"model": ' + deep + ', "precision": "float16"}')
    info = artifact_info(a)  # the unusable manifest is ignored, as a broken one is
    assert info.precision == "int8" and info.manifest is None
    with pytest.raises(RemoteCommandError, match="without a result"):
        runner_doc(Completed(0, '{"x": ' + deep + "}\n", ""), "pi")


def test_temporaries_of_killed_writes_are_cleaned(tmp_path):
    """Issue 18 (the staging-folder class, for single files): a SIGKILLed write left `.out.csv.*.part` for ever."""
    import signal
    import subprocess
    import sys

    from edgekit._io import write_text_atomic

    dest = tmp_path / "out.csv"
    child = ("import sys, time; from edgekit._io import atomic_path\n"
             "with atomic_path(sys.argv[1]) as tmp:\n"
             "    tmp.write_text('half'); print(tmp, flush=True); time.sleep(60)\n")
    killed = subprocess.Popen([sys.executable, "-c", child, str(dest)], stdout=subprocess.PIPE, text=True)
    live = subprocess.Popen([sys.executable, "-c", child, str(dest)], stdout=subprocess.PIPE, text=True)
    try:
        dead_tmp, live_tmp = killed.stdout.readline().strip(), live.stdout.readline().strip()
        killed.send_signal(signal.SIGKILL)
        killed.wait()
        other = tmp_path / ".out.csv.someone-elses.part"  # not edgekit's naming: never touched
        other.write_text("x")
        write_text_atomic(dest, "a,b\n")
        names = sorted(p.name for p in tmp_path.iterdir())
        assert names == sorted(["out.csv", other.name, Path(live_tmp).name]) and Path(dead_tmp).name not in names
    finally:
        live.kill()
        live.wait()
