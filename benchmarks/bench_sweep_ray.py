"""Ray's overhead on one machine (issue 23): the same sweep with ``--executor local`` and ``--executor ray`` (a
one-node Ray the sweep starts itself: no --ray-address, RAY_ADDRESS unset), each a fresh ``edgekit sweep`` process
into a fresh folder, alternating, wall time from process start to exit. Goal: Ray <= 10 % extra wall time.

The sweep is the docs' quick one (docs/guides/sweep.md) (MobileNet v1 alpha 0.25/0.5 x 32/48 px x float32/int8 on Fashion-MNIST,
4 trainings, 8 exports, 8 measurements on `local`).

    .venv/bin/python benchmarks/bench_sweep_ray.py [--out artifacts/bench_sweep_ray] [--limit 4000] [--epochs 2]
        [--repeat 1]

Writes OUT/bench_sweep_ray.json; every number printed comes from this run (with the load average before and after:
the figure means something only on an otherwise idle machine).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path


def sweep_args(limit: int, epochs: int) -> list[str]:
    return ["mobilenet_v1", "--grid", "alpha=0.25,0.5", "--grid", "resolution=32,48", "--quantize", "float32,int8",
            "--input-channels", "1", "--weights", "none", "--data", "fashion-mnist", "--epochs", str(epochs),
            "--limit", str(limit), "--lr", "0.003", "--test-limit", "1000", "--device", "local"]


def run(executor: str, out: Path, args: list[str]) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    edgekit = str(Path(sys.executable).parent / "edgekit")
    t0 = time.monotonic()
    p = subprocess.run([edgekit, "sweep", *args, "--executor", executor, "--out", str(out), "--json"],
                       capture_output=True, text=True, env=env)
    wall = time.monotonic() - t0
    if p.returncode != 0:
        raise SystemExit(f"{executor} sweep failed ({p.returncode}): {p.stderr[-3000:]}")
    res = json.loads(p.stdout)
    s = res["summary"]
    return {"executor": executor, "wall_seconds": round(wall, 1), "sweep_seconds": s["seconds"],
            "train_seconds": s["train_seconds"], "export_seconds": s["export_seconds"],
            "bench_seconds": s["bench_seconds"], "ok": s["ok"], "rows": s["rows"],
            "nodes": sorted({r["node"] for r in res["rows"]}),
            "accuracy": {r["point"]: r["accuracy"] for r in res["rows"]},
            "p50_ms": {r["point"]: r["p50_ms"] for r in res["rows"]}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="artifacts/bench_sweep_ray")
    ap.add_argument("--limit", type=int, default=4000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=1, help="local/ray pairs (alternating)")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    args = sweep_args(a.limit, a.epochs)
    load_before = os.getloadavg()
    runs = []
    for i in range(a.repeat):
        for executor in (("local", "ray") if i % 2 == 0 else ("ray", "local")):
            r = run(executor, out / f"{executor}-{i}", args)
            runs.append(r)
            print(f"{executor:5s} run {i}: {r['wall_seconds']:.1f} s wall (train {r['train_seconds']:.1f} s, export "
                  f"{r['export_seconds']:.1f} s, measure {r['bench_seconds']:.1f} s of task time), {r['ok']}/"
                  f"{r['rows']} rows ok, nodes {', '.join(r['nodes'])}", flush=True)
    load_after = os.getloadavg()
    wall = {e: [r["wall_seconds"] for r in runs if r["executor"] == e] for e in ("local", "ray")}
    mean = {e: sum(v) / len(v) for e, v in wall.items()}
    overhead = 100 * (mean["ray"] / mean["local"] - 1)
    first = {e: next(r for r in runs if r["executor"] == e) for e in ("local", "ray")}
    diffs = [abs(first["ray"]["accuracy"][p] - first["local"]["accuracy"][p]) for p in first["local"]["accuracy"]]
    print(f"mean wall: local {mean['local']:.1f} s, ray {mean['ray']:.1f} s: Ray {overhead:+.1f} % "
          f"(goal <= +10 %); largest accuracy difference {max(diffs):.4f}; load average before "
          f"{load_before[0]:.2f}/{load_before[1]:.2f}, after {load_after[0]:.2f}/{load_after[1]:.2f} (1/5 min), "
          f"{os.cpu_count()} CPUs")
    doc = {"args": args, "runs": runs, "mean_wall_seconds": mean, "ray_overhead_percent": round(overhead, 1),
           "max_accuracy_difference": max(diffs), "loadavg_before": load_before, "loadavg_after": load_after,
           "cpus": os.cpu_count()}
    (out / "bench_sweep_ray.json").write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
