"""The sweep's plan (no training): families, training shared across precisions and resolutions, stable keys,
devices on this machine, the host gate."""
from __future__ import annotations

import threading
import time

import pytest

from edgekit.devices import DeviceSpec
from edgekit.sweep.plan import make_plan, on_this_machine
from edgekit.sweep.runner import HostGate
from edgekit.sweep.spec import SweepSpec


@pytest.fixture(autouse=True)
def no_device_probe(monkeypatch):
    """Plans here are not run: skip reaching the devices (the end-to-end tests do)."""
    import edgekit.sweep.plan

    monkeypatch.setattr(edgekit.sweep.plan, "_check_devices", lambda spec, devices: None)


def spec(tmp_path, **kw):
    base = dict(model="mobilenet_v1", grid={"alpha": [0.25, 0.5], "resolution": [40, 32]}, input_channels=1,
                weights="none", data="fashion-mnist", epochs=2, out=str(tmp_path / "out"))
    base.update(kw)
    return SweepSpec(**base)


@pytest.mark.slow
def test_training_is_shared_across_precisions_and_resolutions(tmp_path, fashion_mnist_available):
    plan = make_plan(spec(tmp_path))
    assert len(plan.units) == 4 and len(plan.points) == 8      # 2 alpha x 2 resolutions x (float32, int8)
    by = {(u.combo.option_dict["alpha"], u.resolution): u for u in plan.units}
    for alpha in (0.25, 0.5):
        base, tuned = by[(alpha, 32)], by[(alpha, 40)]
        assert base.base is None and tuned.base is base          # the smallest resolution trains
        assert base.how == "trained 2 epoch(s) at 32 px"
        assert tuned.how == "fine-tuned 1 epoch(s) at 40 px from the 32 px model"
        assert plan.units.index(base) < plan.units.index(tuned)
    assert {p.precision for p in plan.points} == {"float32", "int8"}
    assert len({p.unit.key for p in plan.points}) == 4           # two precisions per trained model
    assert by[(0.25, 32)].mult_adds < by[(0.25, 40)].mult_adds < by[(0.5, 40)].mult_adds
    assert "fine-tuned" in plan.sharing and plan.notes == ["classes=10 (the number of classes of fashion-mnist)"]
    assert not (tmp_path / "out").exists()                                   # planning writes nothing
    # keys: stable across plans and grids; the base's key does not depend on the sharing mode, a fine-tune's does
    small = {"alpha": [0.25], "resolution": [32, 40]}
    again = make_plan(spec(tmp_path, grid=small))
    assert {u.resolution: u.key for u in again.units} == {32: by[(0.25, 32)].key, 40: by[(0.25, 40)].key}
    alone = make_plan(spec(tmp_path, grid=small, share_training="none"))
    keys = {u.resolution: u.key for u in alone.units}
    assert keys[32] == by[(0.25, 32)].key and keys[40] != by[(0.25, 40)].key
    assert all(u.base is None for u in alone.units) and "independently" in alone.sharing
    longer = make_plan(spec(tmp_path, grid=small, epochs=3))
    assert not {u.key for u in longer.units} & {u.key for u in plan.units}   # the fine-tune follows its base


@pytest.mark.slow
def test_families_and_keys_they_do_not_take(tmp_path, fashion_mnist_available):
    plan = make_plan(spec(tmp_path, model=None, grid={"model": ["mobilenet_v1", "mobilenet_v2", "squeezenet"],
                                                      "alpha": [0.5, 1.0], "resolution": [32]}, quantize=("int8",)))
    fams = [u.model for u in plan.units]
    assert fams.count("mobilenet_v1") == 2 and fams.count("mobilenet_v2") == 2 and fams.count("squeezenet1_1") == 1
    assert any("squeezenet1_1 does not take alpha" in n for n in plan.notes)
    assert len({u.name for u in plan.units}) == 5


def test_names_stay_unique_when_the_canonical_name_hides_an_option(tmp_path, fashion_mnist_available):
    plan = make_plan(spec(tmp_path, grid={"dropout": [0.1, 0.3]}, resolution=32, quantize=("int8",)))
    assert sorted(u.name for u in plan.units) == ["mobilenet_v1_1.00_32_1ch_10cls[dropout=0.1]",
                                                  "mobilenet_v1_1.00_32_1ch_10cls[dropout=0.3]"]


@pytest.mark.parametrize("device, expected", [
    (DeviceSpec("local"), True),
    (DeviceSpec("ssh://root@127.0.0.1:2223", transport="ssh", host="127.0.0.1", port=2223), True),
    (DeviceSpec("pi", transport="ssh", host="localhost"), True),
    (DeviceSpec("pi6", transport="ssh", host="::1"), True),
    (DeviceSpec("pi", transport="ssh", host="raspberrypi.local"), False),
    (DeviceSpec("pi", transport="ssh", host="192.168.1.20"), False),
    (DeviceSpec("emu", transport="adb", serial="emulator-5554"), True),
    (DeviceSpec("fake", transport="adb", serial="127.0.0.1:5555"), True),
    (DeviceSpec("phone", transport="adb", serial="R58M12345"), False),
])
def test_devices_sharing_this_machine(device, expected):
    assert on_this_machine(device) is expected


def test_host_gate_is_first_come_first_served():
    gate, order, started = HostGate(), [], []

    def worker(i):
        started.append(i)
        with gate:
            order.append(i)

    with gate:                      # hold it while three threads queue up in a known order
        threads = []
        for i in range(3):
            t = threading.Thread(target=worker, args=(i,))
            t.start()
            threads.append(t)
            while len(started) <= i:
                time.sleep(0.01)
            time.sleep(0.05)        # let the thread take its ticket
    for t in threads:
        t.join(5)
    assert order == [0, 1, 2]


def test_devices_run_in_parallel_one_job_at_a_time_each(tmp_path, monkeypatch):
    """Two remote devices measure at the same time, each one job at a time; a device on this machine waits for the
    host gate (held here as training would hold it)."""
    from types import SimpleNamespace

    from edgekit.sweep.results import SweepRow
    from edgekit.sweep.runner import Runner

    devices = [DeviceSpec("pi-a", transport="ssh", host="10.0.0.1"), DeviceSpec("pi-b", transport="ssh", host="10.0.0.2"),
               DeviceSpec("local")]
    points = [SimpleNamespace(id=f"p{i}", format="tflite") for i in range(3)]
    plan = SimpleNamespace(spec=SimpleNamespace(out=str(tmp_path)), devices=devices, on_host={"local"})
    rows = {(p.id, d.name): SweepRow(p.id, "m", "m", {}, "int8", "tflite", d.name) for p in points for d in devices}
    runner = Runner(plan, rows, publish=lambda: None, event=lambda kind, **info: None)
    spans, lock = [], threading.Lock()

    def fake_bench(point, device):
        t0 = time.monotonic()
        time.sleep(0.3)
        with lock:
            spans.append((device.name, t0, time.monotonic()))
        return {"status": "ok", "result": {"p50_ms": 1.0, "p90_ms": 1.1}}

    monkeypatch.setattr(runner, "_bench_now", fake_bench)
    with runner.gate:                     # the host is busy (training): local must wait, the remotes must not
        for w in runner.workers:
            w.start()
        for p in points:
            for d in devices:
                runner.queues[d.name].put((p, tmp_path / f"{p.id}-{d.name}.json"))
        time.sleep(1.2)
        assert {s[0] for s in spans} == {"pi-a", "pi-b"} and len(spans) == 6
    for q in runner.queues.values():
        q.put(None)
    for w in runner.workers:
        w.join(5)
    by = {d.name: sorted((a, b) for n, a, b in spans if n == d.name) for d in devices}
    for name, s in by.items():
        assert len(s) == 3 and all(s[i][1] <= s[i + 1][0] for i in range(2)), name      # one at a time
    a, b = by["pi-a"], by["pi-b"]
    assert any(x[0] < y[1] and y[0] < x[1] for x in a for y in b)                        # in parallel
    assert all(r.status == "ok" and r.p50_ms == 1.0 for r in rows.values())


def test_host_gate_skips_a_waiter_that_gave_up():
    """A thread interrupted while waiting for its turn must not block the ones queued behind it."""
    gate, got = HostGate(), []

    class Stop(Exception):
        pass

    def quitter():
        try:
            with gate:
                got.append("quitter")
        except Stop:
            got.append("gave up")

    with gate:
        t = threading.Thread(target=quitter)
        t.start()
        time.sleep(0.1)
        # interrupt the waiting thread inside its wait (as Ctrl-C would) by raising from its condition wait
        import ctypes

        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(t.ident), ctypes.py_object(Stop))
        with gate._cv:
            gate._cv.notify_all()          # wake it so the pending exception is raised in its wait
        t.join(5)

        def later_job():
            with gate:
                got.append("later")

        later = threading.Thread(target=later_job, daemon=True)
        later.start()
    later.join(5)
    assert got == ["gave up", "later"]


def test_a_huge_grid_is_refused_before_any_model_is_built(tmp_path, monkeypatch):
    """Issue 18: a 1000 x 1000 grid built models silently; now refused up front, saying how many."""
    import edgekit.sweep.plan
    from edgekit.errors import InvalidArgument

    monkeypatch.setattr(edgekit.sweep.plan, "_build_units", lambda *a, **k: pytest.fail("built models"))
    grid = [f"alpha={','.join(str(0.1 + i / 1000) for i in range(1000))}",
            f"resolution={','.join(str(32 + i) for i in range(1000))}"]
    t0 = time.monotonic()
    with pytest.raises(InvalidArgument, match=r"the grid has 1,000,000 models to train \(1000 alpha x 1000 "
                                              r"resolution\); a sweep trains at most 200") as info:
        make_plan(spec(tmp_path, grid=grid))
    assert "coarse grid" in info.value.hint and time.monotonic() - t0 < 5
    with pytest.raises(InvalidArgument, match="100,000 values"):
        make_plan(spec(tmp_path, grid=[f"dropout={','.join(str(i / 1e6) for i in range(100_000))}"]))


def test_a_link_or_device_where_the_results_go_is_refused_before_any_work(tmp_path, monkeypatch):
    """Issue 18's output rule, checked up front: a sweep refused it only when writing results.csv, after training."""
    import edgekit.sweep.plan
    from edgekit.errors import InvalidArgument

    monkeypatch.setattr(edgekit.sweep.plan, "_build_units", lambda *a, **k: pytest.fail("built models"))
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.csv").symlink_to(tmp_path / "elsewhere.csv")
    with pytest.raises(InvalidArgument, match="results.csv.*is a symbolic link"):
        make_plan(spec(tmp_path))
