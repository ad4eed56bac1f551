"""edgekit sweep --executor ray (issue 23) on a real two-node Ray cluster on loopback, started and stopped here: the
2 alpha x 2 resolutions x 2 precisions grid (random weights, 1 epoch on 128 Fashion-MNIST images: the sweep's
mechanics, not its accuracy) trains on both nodes, the worker node is killed mid-sweep and every row still ends ok,
measurements on a device never overlap (nor does anything else of the sweep on the device's node), the results equal
a local run's, and each executor resumes the other's folder. The refusals (no extra, no cluster) need no cluster."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from conftest import free_ports

GRID = dict(grid={"alpha": [0.25, 0.5], "resolution": [32, 40]}, quantize=("int8", "none"), input_channels=1,
            weights="none", data="fashion-mnist", epochs=1, limit=128, batch_size=32, precise_bn=0, test_limit=64,
            calib_samples=32, runs=5, warmup=1, devices=("local",), verify=False, device_parity=False)
CLI_GRID = ["mobilenet_v1", "--grid", "alpha=0.25,0.5", "--grid", "resolution=32,40", "--quantize", "int8,none",
            "--input-channels", "1", "--weights", "none", "--data", "fashion-mnist", "--epochs", "1", "--limit", "128",
            "--batch-size", "32", "--precise-bn", "0", "--test-limit", "64", "--calib-samples", "32", "--runs", "5",
            "--warmup", "1", "--device", "local", "--no-verify", "--no-device-parity"]
#: the local reference: alpha 0.25's two resolutions (a trained and a fine-tuned model) at int8, the same trainings
#: and exports (same keys) as the Ray sweep's, at a third of its cost
LOCAL_GRID = {**GRID, "grid": {"alpha": [0.25], "resolution": [32, 40]}, "quantize": ("int8",)}
CLI_LOCAL_GRID = [{"alpha=0.25,0.5": "alpha=0.25", "int8,none": "int8"}.get(a, a) for a in CLI_GRID]
#: seconds the cluster may take to come up (both nodes registered)
START_TIMEOUT = 60


# -- refusals before anything is built ---------------------------------------------------------------------------------
def test_executor_ray_without_the_extra_names_it(cli, monkeypatch, tmp_path):
    import edgekit.sweep

    monkeypatch.setitem(sys.modules, "ray", None)            # import ray -> ImportError, as when it is not installed
    monkeypatch.delitem(sys.modules, "edgekit.sweep.ray_run", raising=False)
    monkeypatch.delattr(edgekit.sweep, "ray_run", raising=False)
    res = cli("sweep", *CLI_GRID, "--executor", "ray", "--out", tmp_path / "out")
    assert res.exit_code == 1, res.output
    assert "error: ray is not installed (needed by edgekit sweep --executor ray)" in res.output
    assert "hint: install it with: pip install 'edgekit[ray]'" in res.output
    assert not (tmp_path / "out").exists()


def test_an_unreachable_cluster_fails_before_anything_is_built(cli, monkeypatch, tmp_path):
    pytest.importorskip("ray")
    import edgekit.sweep.plan

    monkeypatch.setattr(edgekit.sweep.plan, "_build_units", lambda *a, **k: pytest.fail("built models"))
    (port,) = free_ports(1)
    t0 = time.monotonic()
    res = cli("sweep", *CLI_GRID, "--executor", "ray", "--ray-address", f"127.0.0.1:{port}", "--out", tmp_path / "o")
    assert res.exit_code == 1 and time.monotonic() - t0 < 10, res.output
    assert f"error: cannot reach the Ray cluster at 127.0.0.1:{port} (--ray-address): Connection refused" in res.output
    assert f"hint: start it on that machine with `ray start --head --port {port}`" in res.output
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")     # the environment's address, named as such
    res = cli("sweep", *CLI_GRID, "--executor", "ray", "--out", tmp_path / "o")
    assert res.exit_code == 1 and f"at 127.0.0.1:{port} (RAY_ADDRESS)" in res.output, res.output
    assert not (tmp_path / "o").exists()


def test_executor_is_one_typed_option(cli, tmp_path):
    """CLI option = API argument = config key; --ray-address without the Ray executor is refused."""
    from edgekit.errors import InvalidArgument
    from edgekit.sweep import SweepSpec, from_config

    res = cli("sweep", *CLI_GRID, "--ray-address", "10.0.0.2:6379", "--out", tmp_path / "o")
    assert res.exit_code == 2 and "--ray-address is for --executor ray" in res.output, res.output
    res = cli("sweep", *CLI_GRID, "--executor", "dask", "--out", tmp_path / "o")
    assert res.exit_code == 2 and "local" in res.output and "ray" in res.output, res.output
    config = tmp_path / "s.sweep.yaml"
    config.write_text("model: mobilenet_v1\ndata: fashion-mnist\nexecutor: ray\nray_address: auto\nray_cpus: 2\n"
                      "out: o\n")
    spec = from_config(config)
    assert (spec.executor, spec.ray_address, spec.ray_cpus) == ("ray", "auto", 2)
    assert SweepSpec.from_dict({"data": "d", "out": "o"}).executor == "local"
    with pytest.raises(InvalidArgument):
        SweepSpec.from_dict({"data": "d", "out": "o", "executor": "ray", "ray_cpus": 0})


def test_node_column_and_step_records_say_where_and_when(tmp_path, monkeypatch):
    """The local runner stamps every record with its machine and times; a row names one node, or each step's."""
    import socket
    from types import SimpleNamespace

    from edgekit.devices import DeviceSpec
    from edgekit.sweep.results import SweepRow
    from edgekit.sweep.run import Runner, node_label

    assert node_label("a", "a", "a") == "a" and node_label("a") == "a" and node_label(None) is None
    assert node_label("a", "b", "a") == "train a, export b, measure a"
    dev = DeviceSpec("local")
    point = SimpleNamespace(id="p", format="tflite")
    plan = SimpleNamespace(spec=SimpleNamespace(out=str(tmp_path)), devices=[dev], on_host={"local"})
    rows = {("p", "local"): SweepRow("p", "m", "m", {}, "int8", "tflite", "local")}
    runner = Runner(plan, rows, publish=lambda: None, event=lambda kind, **info: None)
    runner.point_nodes["p"] = ("trainer", "trainer")
    monkeypatch.setattr(runner, "_bench_now", lambda p, d: {"status": "ok", "result": {"p50_ms": 1.0}})
    t0 = time.time()
    runner.queues["local"].put((point, tmp_path / "bench.json"))
    runner.queues["local"].put(None)
    runner._worker(dev)
    rec = json.loads((tmp_path / "bench.json").read_text())
    host = socket.gethostname()
    assert rec["node"] == host and t0 <= rec["started"] <= rec["ended"] <= time.time()
    assert rows[("p", "local")].node == f"train trainer, export trainer, measure {host}"


# -- the cluster -------------------------------------------------------------------------------------------------------
class _Node:
    """``ray start ... --block`` in its own process group: stopped by killing that group, then whatever process of
    this cluster (its temp dir in the command line) is left, by pid."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path):
        self.log = open(log, "w")
        self.proc = subprocess.Popen([str(Path(sys.executable).parent / "ray"), "start", *args, "--block"],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=env, start_new_session=True)

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(30)
        self.log.close()


def _cluster_pids(marker: str) -> list[int]:
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and int(d.name) != os.getpid():
            try:
                if marker.encode() in (d / "cmdline").read_bytes():
                    found.append(int(d.name))
            except OSError:
                pass
    return found


def _ports(n: int) -> list[str]:
    p = free_ports(n)
    return [str(x) for x in p]


@pytest.fixture(scope="module")
def ray_cluster(fashion_mnist_available):
    """Head ("head", 2 CPUs: the driver's node, where `local` is measured) and worker ("worker", 1 CPU, reaching the
    device "pi": the custom resource device:pi) on 127.0.0.1, no dashboard, their own temp dir and ports; node
    deaths noticed within ~2 s."""
    pytest.importorskip("ray")
    import ray

    temp = tempfile.mkdtemp(prefix="ekray-", dir="/tmp")      # short: Ray's socket paths must fit 107 bytes
    # Ray >= 2.5x turns token authentication on when ~/.ray/auth_token exists (any local ray.init() writes one): this
    # loopback cluster and its driver (this process) run without, whatever the machine's home holds
    auth = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_health_check_period_ms": "500",
           "RAY_health_check_timeout_ms": "1000", "RAY_health_check_failure_threshold": "3",
           "RAY_health_check_initial_delay_ms": "0"}
    gcs, *p = _ports(20)
    common = ["--node-ip-address=127.0.0.1", "--object-store-memory=150000000",
              "--disable-usage-stats"]

    def ports(q: list[str]) -> list[str]:
        return [f"--node-manager-port={q[0]}", f"--object-manager-port={q[1]}",
                f"--dashboard-agent-listen-port={q[2]}", f"--dashboard-agent-grpc-port={q[3]}",
                f"--runtime-env-agent-port={q[4]}", f"--metrics-export-port={q[5]}",
                f"--worker-port-list={','.join(q[6:])}"]

    worker_ports = _ports(18)
    nodes: dict[str, _Node] = {}
    t0 = time.monotonic()
    try:
        nodes["head"] = _Node(["--head", f"--port={gcs}", "--node-name=head", "--num-cpus=2",
                               "--include-dashboard=false",
                               f"--ray-client-server-port={p[-1]}", f"--temp-dir={temp}", *common, *ports(p[:-1])],
                              env, Path(temp) / "head.out")
        address = f"127.0.0.1:{gcs}"
        _wait_started(nodes["head"], t0)
        nodes["worker"] = _Node([f"--address={address}", "--node-name=worker", "--num-cpus=1",
                                 '--resources={"device:pi": 1}',
                                 *common, *ports(worker_ports)], env, Path(temp) / "worker.out")
        _wait_started(nodes["worker"], t0)
        yield {"address": address, "nodes": nodes, "temp": temp, "start_seconds": time.monotonic() - t0}
    finally:
        if ray.is_initialized():
            ray.shutdown()
        for node in nodes.values():
            node.kill()
        deadline = time.monotonic() + 15
        while _cluster_pids(temp) and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid in _cluster_pids(temp):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        subprocess.run(["rm", "-rf", temp])
        if auth is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = auth


def _wait_started(node: _Node, t0: float) -> None:
    """Until ``ray start`` says the node runs (it has registered with the head), bounded by START_TIMEOUT."""
    log = Path(node.log.name)
    while "Ray runtime started" not in log.read_text(errors="replace"):
        assert node.proc.poll() is None, f"ray start exited: {log.read_text()[-2000:]}"
        assert time.monotonic() - t0 < START_TIMEOUT, f"Ray not started after {START_TIMEOUT} s: {log.read_text()}"
        time.sleep(0.2)


def _records(out: Path, pattern: str) -> list[dict]:
    found = []
    for p in sorted(out.glob(pattern)):
        try:
            found.append({**json.loads(p.read_text()), "_path": p})
        except ValueError:
            pass
    return found


@pytest.fixture(scope="module")
def local_run(tmp_path_factory, fashion_mnist_available):
    import edgekit

    out = tmp_path_factory.mktemp("local") / "out"
    t0 = time.monotonic()
    res = edgekit.sweep("mobilenet_v1", **LOCAL_GRID, out=str(out))
    return out, res, time.monotonic() - t0


@pytest.fixture(scope="module")
def ray_run(ray_cluster, tmp_path_factory):
    """The grid on the cluster; the worker node is killed (its process group, SIGKILL) once it has finished a
    training and while rows are still pending."""
    import edgekit

    out = tmp_path_factory.mktemp("ray") / "out"
    killed: dict = {}

    def killer():
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not killed.get("stop"):
            if any(r.get("node") == "worker" for r in _records(out, "runs/*/train.json")):
                results = _records(out, "results.json")
                killed["pending"] = results[0]["summary"]["pending"] if results else None
                killed["at"] = time.time()
                ray_cluster["nodes"]["worker"].kill()
                return
            time.sleep(0.1)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    t0 = time.monotonic()
    try:
        res = edgekit.sweep("mobilenet_v1", **GRID, executor="ray", ray_address=ray_cluster["address"], out=str(out))
    finally:
        killed["stop"] = True
        t.join(30)
    return out, res, time.monotonic() - t0, killed


def _table(out: Path) -> list[tuple]:
    """(step, what, node, start, end) of every train/export/bench record under ``out``."""
    rows = []
    for r in _records(out, "runs/*/train.json"):
        rows.append(("train", r["unit"], r["node"], r["started"], r["ended"]))
    for r in _records(out, "runs/*/*/export.json"):
        rows.append(("export", f"{r['unit']} {r['quantize']}", r["node"], r["started"], r["ended"]))
    for r in _records(out, "runs/*/*/bench/*.json"):
        rows.append(("measure", "/".join(r["_path"].parts[-4:-2]), r["node"], r["started"], r["ended"]))
    return sorted(rows, key=lambda x: x[3])


@pytest.mark.slow
def test_a_device_is_probed_and_measured_on_the_node_declaring_it(ray_cluster):
    """The worker declares device:pi: the pi is reached from there (here its probe fails, and says where it ran);
    `local` belongs to the driver's node."""
    from edgekit.devices import DeviceSpec
    from edgekit.errors import ConnectError
    from edgekit.sweep import SweepSpec
    from edgekit.sweep.ray_run import Cluster

    (port,) = free_ports(1)
    spec = SweepSpec.from_dict({"data": "fashion-mnist", "out": "o", "executor": "ray",
                                "ray_address": ray_cluster["address"], "connect_timeout": 3})
    cluster = Cluster(spec)
    try:
        pi = DeviceSpec("pi", transport="ssh", host="127.0.0.1", port=port, user="pi")
        res, node = cluster.device_node(pi)
        assert res == "device:pi" and cluster.label(node) == "worker"
        assert cluster.device_node(DeviceSpec("local")) == (None, cluster.driver_node)
        assert cluster.label(cluster.driver_node) == "head"
        with pytest.raises(ConnectError, match="probed on Ray node worker, which declares device:pi"):
            cluster.check(spec, [pi])
    finally:
        cluster.close()


@pytest.mark.slow
def test_two_nodes_train_and_a_killed_worker_still_ends_with_every_row(ray_run, ray_cluster):
    out, res, seconds, killed = ray_run
    table = _table(out)
    t0 = min(r[3] for r in table)
    print(f"\ncluster start {ray_cluster['start_seconds']:.1f} s; sweep {seconds:.1f} s; worker killed at "
          f"+{killed.get('at', t0) - t0:.1f} s with {killed.get('pending')} rows pending")
    for step, what, node, a, b in table:
        print(f"  {step:8s} {what:45s} {node:8s} {a - t0:7.1f} {b - t0:7.1f}")
    assert killed.get("pending", 0) > 0, "the worker was not killed mid-sweep"
    assert len(res.rows) == 8 and len({(r.point, r.device) for r in res.rows}) == 8
    assert [r.status for r in res.rows] == ["ok"] * 8, [(r.point, r.status, r.error) for r in res.rows]
    assert res.summary.pending == 0 and not res.summary.interrupted
    trained_on = {r[2] for r in table if r[0] == "train"}
    assert trained_on == {"head", "worker"}, table
    assert all(r.node and r.node.split(", ")[-1].removeprefix("measure ") == "head" for r in res.rows)
    assert any("worker" in r.node for r in res.rows)
    saved = json.loads((out / "results.json").read_text())
    assert [r["node"] for r in saved["rows"]] == [r.node for r in res.rows]
    assert any("executor ray: 2 node(s) (head, worker)" in n for n in saved["notes"])
    assert not [p for p in out.rglob(".*") if p.name != ".sweep.lock"]       # nothing half-written


@pytest.mark.slow
def test_measurements_never_overlap_on_a_device_nor_with_work_on_its_node(ray_run):
    out = ray_run[0]
    table = _table(out)
    measures = sorted((a, b) for step, _, node, a, b in table if step == "measure")
    assert len(measures) == 8
    assert all(measures[i][1] <= measures[i + 1][0] for i in range(len(measures) - 1)), measures
    work_on_head = [(a, b) for step, _, node, a, b in table if step != "measure" and node == "head"]
    assert work_on_head
    for a, b in measures:        # `local` measures while nothing else of the sweep runs on its node
        assert not [w for w in work_on_head if w[0] < b and a < w[1]], (a, b)


@pytest.mark.slow
def test_results_equal_a_local_run(ray_run, local_run):
    ray_rows = {r.point: r for r in ray_run[1].rows}
    local_rows = {r.point: r for r in local_run[1].rows}
    assert len(local_rows) == 2 and local_rows.keys() <= ray_rows.keys()
    print(f"\nlocal sweep {local_run[2]:.1f} s, ray sweep (2 nodes, worker killed) {ray_run[2]:.1f} s")
    for point, lr in local_rows.items():
        rr = ray_rows[point]
        print(f"  {point:45s} acc {lr.accuracy:.4f} {rr.accuracy:.4f}  bytes {lr.size_bytes} {rr.size_bytes}  "
              f"p50 {lr.p50_ms:.4g} {rr.p50_ms:.4g}")
        assert lr.status == rr.status == "ok"
        assert (lr.test_samples, lr.mult_adds, lr.params, lr.training) == (rr.test_samples, rr.mult_adds, rr.params,
                                                                         rr.training)
        assert abs(rr.size_bytes - lr.size_bytes) <= 0.01 * lr.size_bytes
        assert abs(rr.accuracy - lr.accuracy) <= 4 / lr.test_samples      # a few of the 64 test images
        assert 0.2 < rr.p50_ms / lr.p50_ms < 5


@pytest.mark.slow
def test_each_executor_resumes_the_others_folder(ray_run, local_run, ray_cluster, cli):
    """A local run resumed on Ray and a Ray run resumed locally: nothing is trained, exported or measured again."""
    res = cli("sweep", *CLI_LOCAL_GRID, "--executor", "ray", "--ray-address", ray_cluster["address"],
              "--out", local_run[0])
    assert res.exit_code == 0, res.output
    s = json.loads((local_run[0] / "results.json").read_text())["summary"]
    assert (s["rows_reused"], s["trainings_reused"], s["exports_computed"]) == (2, 2, 0), s
    res = cli("sweep", *CLI_GRID, "--out", ray_run[0])
    assert res.exit_code == 0, res.output
    s = json.loads((ray_run[0] / "results.json").read_text())["summary"]
    assert (s["rows_reused"], s["trainings_reused"], s["exports_computed"]) == (8, 4, 0), s
