"""Sweep benchmark: MobileNet v1, alpha {0.25, 0.5, 0.75, 1.0} x resolution {32, 48, 64} x {int8, float32} on
Fashion-MNIST, measured on `local` and over SSH on the devlab's arm64 rootfs (aarch64 under qemu: its latencies are
EMULATED, labelled so everywhere). qemu emulates the CPU model given by --qemu-cpu (default cortex-a72, a Pi 4's;
cortex-a76 for a Pi 5), set explicitly as QEMU_CPU for the rootfs's sshd and every session, recorded in the report
and in the device's name (arm64-qemu-cortex-a72), so rows measured under another CPU model are never reused.

1. The sweep (training shared: each alpha trained at 32 px, fine-tuned at 48 and 64 px): table, Pareto front per
   device, the log-linear accuracy fit and its R², the latency model per device; wall time.
2. Its resume (the same call again, now with a budget): wall time, rows reused, the pick per device.
3. What sharing costs: the grid of alpha 0.25 and 1.0 with every resolution trained independently
   (share_training=none, on `local`: accuracy does not depend on the device; the 32 px bases are the same training
   and are reused); accuracy and training time at 48 and 64 px, shared vs independent.

    .venv/bin/python benchmarks/bench_sweep.py [--out artifacts/bench_sweep] [--limit 20000] [--epochs 4]
        [--rootfs /tmp/edgekit-rootfs-XXXX | --no-ssh] [--qemu-cpu cortex-a72]

The rootfs is devlab's arm64-rootfs.sh build (tests/conftest.py caches it under /tmp/edgekit-rootfs-<sha>); its
own arm64 sshd is started here the same way as the tests' arm64_ssh fixture. Writes OUT/bench_sweep.json; every
number printed comes from this run.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import socket
import statistics
import subprocess
import time
import types
from pathlib import Path

DEVLAB = Path(os.environ.get("EDGEKIT_DEVLAB", Path(__file__).resolve().parents[2] / "shared" / "devlab"))


class RootfsSSHD:
    """The rootfs's arm64 sshd on a free loopback port (as tests/conftest.py::arm64_ssh)."""

    def __init__(self, rootfs: Path):
        self.rootfs = rootfs
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.inner = f"/opt/fixture/run-bench-{os.getpid()}"
        self.args = [str(DEVLAB / "devroot.sh"), str(rootfs), "env", f"SSHD_DIR={self.inner}",
                     f"SSHD_PORT={self.port}", "bash", "/opt/fixture/sshd-fixture.sh"]

    def __enter__(self) -> dict:
        subprocess.run([*self.args, "start"], check=True, capture_output=True, timeout=300)
        env = subprocess.run([*self.args, "env"], check=True, capture_output=True, text=True, timeout=120).stdout
        info = dict(line.split("=", 1) for line in env.split() if "=" in line)
        host_dir = self.rootfs / self.inner.lstrip("/")
        return {"host": info["SSHD_HOST"], "port": int(info["SSHD_PORT"]), "user": info["SSHD_USER"],
                "key_file": str(host_dir / Path(info["SSHD_KEY"]).name),
                "known_hosts": str(host_dir / Path(info["SSHD_KNOWN_HOSTS"]).name)}

    def __exit__(self, *exc) -> None:
        subprocess.run([*self.args, "stop"], capture_output=True, timeout=120)


def profile(folder: Path, sshd: dict, qemu_cpu: str) -> str:
    """A device profile for the qemu guest emulating ``qemu_cpu`` (tflite-runtime 2.14, what older Pi images ship);
    returns its name."""
    folder.mkdir(parents=True, exist_ok=True)
    name = f"arm64-qemu-{qemu_cpu}"
    (folder / f"{name}.yaml").write_text(
        f"description: devlab arm64 rootfs (Debian, aarch64 under qemu-user, QEMU_CPU={qemu_cpu}), its own sshd; "
        "EMULATED latencies\n"
        f"transport: ssh\nhost: {sshd['host']}\nport: {sshd['port']}\nuser: {sshd['user']}\n"
        f"key_file: {sshd['key_file']}\nknown_hosts: {sshd['known_hosts']}\narch: aarch64\n"
        "python: /opt/tflite/bin/python\nruntime: tflite-runtime\n")
    os.environ["EDGEKIT_DEVICES_DIR"] = str(folder)
    return name


def budgets(rows, device: str, metric: str = "p50") -> list[float]:
    """Budgets worth reporting on a device: below its fastest point, and its 25th / 50th latency percentile."""
    lat = sorted(getattr(r, f"{metric}_ms") for r in rows if r.device == device and r.status == "ok"
                 and getattr(r, f"{metric}_ms"))
    if not lat:
        return []
    q = statistics.quantiles(lat, n=4) if len(lat) > 1 else [lat[0]] * 3
    return [float(f"{lat[0] * 0.8:.2g}"), float(f"{q[0]:.2g}"), float(f"{q[1]:.2g}")]


def table(result) -> list[str]:
    lines = ["| device | alpha | res | precision | MMACs | KiB | acc % | p50 ms | p90 ms | front | status |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(result.rows, key=lambda r: (r.device, r.p50_ms or 1e9)):
        dev = r.device + (" (emulated)" if r.emulated else "")
        lines.append(f"| {dev} | {r.options['alpha']} | {r.resolution} | {r.precision} | {r.mult_adds / 1e6:.2f} | "
                     f"{(r.size_bytes or 0) / 1024:.1f} | {'-' if r.accuracy is None else f'{100 * r.accuracy:.2f}'} | "
                     f"{'-' if r.p50_ms is None else f'{r.p50_ms:.4g}'} | "
                     f"{'-' if r.p90_ms is None else f'{r.p90_ms:.4g}'} | {'*' if r.pareto else ''} | {r.status} |")
    return lines


def train_seconds(out: Path) -> dict[str, float]:
    """Seconds of every training (train.json records), by unit folder name."""
    found = {}
    for p in glob.glob(str(out / "runs" / "*" / "train.json")):
        rec = json.loads(Path(p).read_text())
        if rec.get("status") == "ok":
            found[Path(p).parent.name] = float(rec["train"]["seconds"])
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="artifacts/bench_sweep")
    ap.add_argument("--limit", type=int, default=20000, help="training images (of 60k)")
    ap.add_argument("--epochs", type=int, default=4, help="epochs at the base resolution (and when independent)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3, help="(fine-tuning too)")
    ap.add_argument("--finetune-epochs", type=int, default=None, help="(default: the sweep's, half of --epochs)")
    ap.add_argument("--test-limit", type=int, default=2000, help="test images scored per artifact (of 10k)")
    ap.add_argument("--runs", type=int, default=30, help="timed runs per measurement")
    ap.add_argument("--rootfs", default=None, help="the arm64 rootfs (default: the newest /tmp/edgekit-rootfs-*)")
    ap.add_argument("--no-ssh", action="store_true", help="measure on local only")
    ap.add_argument("--qemu-cpu", default="cortex-a72",
                    help="the CPU qemu emulates for the arm64 board (cortex-a72: Pi 4, cortex-a76: Pi 5); qemu's "
                         "default `max` has no Pi's features and Debian 12's qemu 7.2 computes XNNPACK int8 wrongly "
                         "on it")
    ap.add_argument("--skip-independent", action="store_true", help="skip part 3")
    ap.add_argument("--independent-alphas", default="0.25,1.0",
                    help="alphas of part 3 (each of their resolutions above the smallest is trained from scratch)")
    ap.add_argument("--sharing-only", action="store_true",
                    help="run part 3 alone, both ways (shared and independent) for --independent-alphas, in "
                         "OUT/sharing; writes OUT/bench_sharing.json")
    ap.add_argument("--summarise", action="store_true",
                    help="re-analyse OUT/sweep/results.json of an earlier (possibly interrupted) run with edgekit's "
                         "own analysis (fronts, fits, latency models, picks at --budget), without training or "
                         "measuring anything")
    ap.add_argument("--budget", action="append", default=[], metavar="DEVICE=MS",
                    help="(with --summarise) a budget to pick within on DEVICE; repeatable")
    ap.add_argument("--alphas", default="0.25,0.5,0.75,1.0", help="(smaller grids for a smoke run)")
    ap.add_argument("--resolutions", default="32,48,64")
    args = ap.parse_args()
    grid = {"alpha": [float(a) for a in args.alphas.split(",")],
            "resolution": [int(r) for r in args.resolutions.split(",")]}
    base_res = min(grid["resolution"])

    import signal
    import sys

    import edgekit
    from edgekit.sweep import analysis

    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))   # a kill still stops the rootfs sshd (finally)

    out = Path(args.out)
    common = dict(grid=grid, quantize=("int8", "none"), input_channels=1, weights="none", data="fashion-mnist",
                  limit=args.limit, epochs=args.epochs, finetune_epochs=args.finetune_epochs,
                  batch_size=args.batch_size, lr=args.lr,
                  test_limit=args.test_limit, calib_samples=200, runs=args.runs, warmup=3, out=str(out / "sweep"))
    report: dict = {"settings": {k: v for k, v in vars(args).items()}, "grid": grid}
    if args.summarise:
        summarise(out / "sweep", dict(b.split("=", 1) for b in args.budget))
        return
    if args.sharing_only:
        # part 3 alone, in OUT/sharing (an earlier run's OUT/sweep is left as it is), both ways with the same code:
        # the alphas' grid with shared training (base at the smallest resolution, fine-tuned at the others), then
        # the resolutions above the base trained independently (the base is the same training either way)
        alphas = [float(a) for a in args.independent_alphas.split(",")]
        where = {"devices": ["local"], "out": str(out / "sharing")}
        res2 = edgekit.sweep.run("mobilenet_v1", **{**common, **where, "grid": {**grid, "alpha": alphas}})
        t0 = time.monotonic()
        res3 = edgekit.sweep.run("mobilenet_v1", **{**common, **where, "share_training": "none",
                                                    "grid": {"alpha": alphas, "resolution": [
                                                        r for r in grid["resolution"] if r != base_res]}})
        wall3 = round(time.monotonic() - t0, 1)
        recs = {p.parent.name: json.loads(p.read_text()) for p in (out / "sharing").glob("runs/*/train.json")}
        secs = {k: float(r["train"]["seconds"]) for k, r in recs.items() if r.get("status") == "ok"}
        base = {k: v for k, v in secs.items() if f"_{base_res}_" in k}
        report["sharing_cost"] = sharing_cost(
            [r.to_dict() for r in res2.rows], [r.to_dict() for r in res3.rows],
            {**base, **{k: v for k, v in secs.items() if recs[k]["how"].startswith("fine-tuned")}},
            {**base, **{k: v for k, v in secs.items() if k not in base and recs[k]["how"].startswith("trained")}},
            alphas, base_res, wall3)
        (out / "bench_sharing.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
        print_sharing(report["sharing_cost"])
        return
    rootfs = None
    if not args.no_ssh:
        cands = sorted(glob.glob("/tmp/edgekit-rootfs-*/.edgekit-complete"), key=os.path.getmtime)
        rootfs = Path(args.rootfs) if args.rootfs else (Path(cands[-1]).parent if cands else None)
        if rootfs is None:
            raise SystemExit("no arm64 rootfs: build it with the device tests (pytest -m device) or pass --no-ssh")

    def run(**kw):
        t0 = time.monotonic()
        res = edgekit.sweep.run("mobilenet_v1", **{**common, **kw})
        return res, round(time.monotonic() - t0, 1)

    os.environ["QEMU_CPU"] = args.qemu_cpu  # devroot.sh and the sshd's sessions (SetEnv) take it from here
    report["qemu_cpu"] = args.qemu_cpu if rootfs else None
    sshd_ctx = RootfsSSHD(rootfs) if rootfs else None
    sshd = sshd_ctx.__enter__() if sshd_ctx else None
    try:
        devices = ["local"] + ([profile(out / "devices", sshd, args.qemu_cpu)] if sshd else [])
        emulated = devices[1:]
        # 1. the sweep
        res, wall = run(devices=devices, emulated=emulated)
        report["sweep"] = {"wall_seconds": wall, "summary": res.summary.to_dict()}
        # 2. the resume, with a budget: the local median latency
        budget = budgets(res.rows, "local")[2]
        res2, wall2 = run(devices=devices, emulated=emulated, budget_ms=budget)
        report["resume"] = {"wall_seconds": wall2, "summary": res2.summary.to_dict(), "budget_ms": budget,
                            "picks": [p.to_dict() for p in res2.picks]}
        report["table"] = table(res2)
        report["fronts"] = res2.fronts
        report["accuracy_fits"] = [f.to_dict() for f in res2.accuracy_fits]
        report["latency_fits"] = [f.to_dict() for f in res2.latency_fits]
        report["picks_at_budgets"] = {
            d: [analysis.pick([r for r in res2.rows if r.device == d], b, emulated=d in emulated).to_dict()
                for b in budgets(res2.rows, d)] for d in devices}
        shared_train = train_seconds(out / "sweep")
    finally:
        if sshd_ctx:
            sshd_ctx.__exit__(None, None, None)
    # 3. independent training per resolution (bases reused: same settings, same keys)
    if not args.skip_independent:
        alphas = [float(a) for a in args.independent_alphas.split(",")]
        res3, wall3 = run(devices=["local"], share_training="none", grid={**grid, "alpha": alphas})
        report["sharing_cost"] = sharing_cost([r.to_dict() for r in res2.rows], [r.to_dict() for r in res3.rows],
                                              shared_train, train_seconds(out / "sweep"), alphas, base_res, wall3)
    (out / "bench_sweep.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    print_report(report)


def summarise(folder: Path, budgets_ms: dict[str, str]) -> None:
    """Fronts, fits, latency models and picks of a sweep folder's rows (edgekit.sweep.analysis), and its counts."""
    from edgekit.sweep import SweepRow, analysis

    doc = json.loads((folder / "results.json").read_text())
    rows = [SweepRow(**r) for r in doc["rows"]]
    missing = [f"{r.point} on {r.device} ({r.status})" for r in rows if r.status != "ok"]
    sm = doc["summary"]
    print(f"{folder}: {len(rows) - len(missing)} of {len(rows)} rows ok; {sm['seconds']} s "
          f"(training {sm['train_seconds']} s, export {sm['export_seconds']} s, bench {sm['bench_seconds']} s)")
    for m in missing:
        print(f"  not measured: {m}")
    fronts, _, acc_fits, lat_fits = analysis.analyze(rows, doc["metric"])
    print("\n".join(table(types.SimpleNamespace(rows=rows))))
    for dev, ids in fronts.items():
        print(f"front {dev}: {', '.join(ids)}")
    for f in acc_fits:
        print(f"accuracy fit {f.model} {f.precision}: R² = {f.r2:.3f}, {100 * f.slope:.2f} points per decade of "
              f"mult-adds (n={f.n})")
    for f in lat_fits:
        print(f"latency model {f.device}: {f.overhead_ms:.4g} ms + mult-adds / {f.gmacs:.3g} GMAC/s, R²(log) "
              f"{f.r2_log:.3f}, measured/predicted {', '.join(f'{k} {v:.2f}x' for k, v in f.ratios.items())}, "
              f"outliers (>2x off): {', '.join(f.outliers) or 'none'}")
    for dev, ms in budgets_ms.items():
        dev_rows = [r for r in rows if r.device == dev]
        print("pick: " + analysis.pick(dev_rows, float(ms), doc["metric"],
                                       emulated=any(r.emulated for r in dev_rows)).statement)


def sharing_cost(shared_rows: list[dict], indep_rows: list[dict], shared_train: dict[str, float],
                 all_train: dict[str, float], alphas: list[float], base_res: int, wall: float) -> dict:
    """Shared (fine-tuned) vs independent accuracy per point above the base resolution (on `local`: accuracy does
    not depend on the device), and the training seconds of both ways for ``alphas``."""
    acc: dict = {}
    for tag, rows in (("shared", shared_rows), ("independent", indep_rows)):
        for r in rows:
            if r["device"] == "local" and r["resolution"] != base_res and r["accuracy"] is not None \
                    and r["options"]["alpha"] in alphas:
                acc.setdefault((r["options"]["alpha"], r["resolution"], r["precision"]), {})[tag] = r["accuracy"]
    diffs = {k: v["shared"] - v["independent"] for k, v in acc.items() if len(v) == 2}
    picked = tuple(f"mobilenet_v1_{a:.2f}_" for a in alphas)
    shared_units = {k: v for k, v in shared_train.items() if k.startswith(picked)}
    indep_units = {k: v for k, v in all_train.items() if k.startswith(picked)
                   and (k not in shared_train or f"_{base_res}_" in k)}
    return {"wall_seconds": wall,
            "per_point": {f"{a}/{res}/{p}": {**acc[(a, res, p)], "diff": d} for (a, res, p), d in sorted(diffs.items())},
            "mean_diff_points": 100 * statistics.mean(diffs.values()) if diffs else None,
            "stdev_diff_points": 100 * statistics.stdev(diffs.values()) if len(diffs) > 1 else None,
            "n": len(diffs), "alphas": alphas,
            "train_seconds_shared": round(sum(shared_units.values()), 1),
            "train_seconds_independent": round(sum(indep_units.values()), 1)}


def print_sharing(sc: dict) -> None:
    print(f"sharing cost (shared - independent, {sc['n']} points above the base resolution, alphas {sc['alphas']}): "
          f"mean {sc['mean_diff_points']:+.2f} points (sd {sc['stdev_diff_points']:.2f}); training "
          f"{sc['train_seconds_shared']} s shared vs {sc['train_seconds_independent']} s independent; "
          f"{sc['wall_seconds']} s wall")
    for k, v in sc["per_point"].items():
        print(f"  {k}: shared {100 * v['shared']:.2f}% independent {100 * v['independent']:.2f}% "
              f"({100 * v['diff']:+.2f})")


def print_report(rep: dict) -> None:
    print(f"sweep: {rep['sweep']['wall_seconds']} s wall; resume: {rep['resume']['wall_seconds']} s wall "
          f"({rep['resume']['summary']['rows_reused']}/{rep['resume']['summary']['rows']} rows reused)")
    print("\n".join(rep["table"]))
    for dev, ids in rep["fronts"].items():
        print(f"front {dev}: {', '.join(ids)}")
    for f in rep["accuracy_fits"]:
        print(f"accuracy fit {f['model']} {f['precision']}: R² = {f['r2']}, slope {f['slope']} per decade "
              f"(n={f['n']})")
    for f in rep["latency_fits"]:
        print(f"latency model {f['device']}: overhead {f['overhead_ms']} ms, {f['gmacs']} GMAC/s, R²(log) "
              f"{f['r2_log']}, ratios {f['ratios']}, outliers {f['outliers']}")
    print(f"resume budget {rep['resume']['budget_ms']} ms:")
    for p in rep["resume"]["picks"]:
        print("  " + p["statement"])
    for dev, picks in rep["picks_at_budgets"].items():
        for p in picks:
            print(f"  [{dev} @ {p['budget_ms']} ms] {p['statement']}")
    if rep.get("sharing_cost"):
        print_sharing(rep["sharing_cost"])

if __name__ == "__main__":
    main()
