"""On-device parity per precision, x86 (local) vs an aarch64 board under qemu-user emulating the board's CPU
(--qemu-cpu, default cortex-a72 = a Raspberry Pi 4's; set as QEMU_CPU explicitly, checked and recorded), and compare
of float32 vs int8 locally. The board (--board):

- ``sysroot`` (default, no root): the devlab's arm64-sysroot.sh, an aarch64 CPython 3.11 with tflite-runtime 2.14 /
  ai-edge-litert 2.3 and a Pi 4's /proc/cpuinfo, run by ``bench`` as a device Python on this machine (the tests'
  cached build under /tmp, built in seconds when missing);
- ``rootfs`` (root): the devlab's arm64 Debian rootfs over SSH (its own arm64 sshd; QEMU_CPU passed on to every
  session), as the tests' arm64_ssh fixture.

    EDGEKIT_DEVLAB=../shared/devlab python benchmarks/bench_parity.py --epochs 4 [--qemu-cpu cortex-a72]
        [--board sysroot|rootfs] [--out runs/parity]

Trains MobileNet v1 alpha=0.25 32x32x1 on Fashion-MNIST (edgekit train), exports it in every TFLite precision
calibrated/verified on Fashion-MNIST, then runs `bench --verify` on each device and prints per precision the
verdict (edgekit.verification's rule), the device-vs-Keras max abs error, SQNR, top-1 agreement over the samples
whose float margin is above the precision's noise (with their count) and over all samples, the paired accuracy
drop, the device-vs-host-runtime SQNR and the CPU the runner reported. Writes OUT/bench_parity.json.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--out", default="runs/parity")
    ap.add_argument("--precisions", default="none,fp16,dynamic,int8,int16x8")
    ap.add_argument("--qemu-cpu", default="cortex-a72",
                    help="the CPU qemu emulates (cortex-a72: Pi 4, cortex-a76: Pi 5)")
    ap.add_argument("--board", choices=("sysroot", "rootfs"), default="sysroot")
    args = ap.parse_args()
    os.environ["QEMU_CPU"] = args.qemu_cpu  # devroot.sh and the rootfs sshd's sessions (SetEnv) take it from here
    import edgekit
    from edgekit.devices import bench, compare

    out = Path(args.out)
    model_file = out / "fmnist.keras"
    if not model_file.is_file():
        edgekit.train("mobilenet_v1", "fashion-mnist", epochs=args.epochs, limit=20000, out=str(model_file),
                      alpha=0.25, resolution=32, input_channels=1, classes=10, weights="none")
    arts = {}
    for q in args.precisions.split(","):
        calib = {"calib_data": "fashion-mnist"} if q in ("int8", "int16x8") else {"verify_data": "fashion-mnist"}
        # verify=False: a failed host check is recorded, not fatal (the device figures below are the point)
        r = edgekit.export(str(model_file), quantize=q, out=str(out), verify_samples=100, verify=False, **calib)
        arts[r.artifacts[0].precision] = r.artifacts[0].path

    import conftest  # the same cached builds as the tests

    devlab = Path(os.environ.get("EDGEKIT_DEVLAB", conftest.DEVLAB))
    with board(args.board, devlab, conftest) as (where, pythons, kw, check):
        seen = check()  # what a process on the board really gets
        if seen != args.qemu_cpu:
            raise SystemExit(f"the board's processes run with QEMU_CPU={seen!r}, not {args.qemu_cpu!r}")
        rows = []
        for prec, path in arts.items():
            rows += bench([path], "local", runs=20, warmup=2, verify=True)
            for flavour in ("tflite", "litert"):
                for delegate in ("auto", "none"):
                    (r,) = bench([path], where, python=pythons[flavour], runs=3, warmup=1, verify=True,
                                 delegate=delegate, **kw)
                    r.device = f"aarch64 qemu {args.qemu_cpu} {r.runtime} {r.runtime_version} delegate={delegate}"
                    rows.append(r)
    print(f"aarch64 board ({args.board}): qemu-user with QEMU_CPU={seen} (checked on the board); the runner reports "
          "the CPU from the board's /proc/cpuinfo per row")
    print(f"{'precision':10} {'device':60} {'cpu':12} {'verdict':13} {'max|err|':>9} {'SQNR dB':>8} "
          f"{'top-1 sure (n)':>15} {'top-1 all':>9} {'acc drop':>9} {'vs host SQNR':>12}")
    table = []
    for r in rows:
        p = r.parity or {}
        o = (p.get("outputs") or [{}])[0]
        dev = r.device if r.device != "local" else f"x86_64 {r.runtime} {r.runtime_version}"
        nan = float("nan")
        drop = o.get("accuracy_drop")
        sure = (f"{o['top1_agreement']:.3f} ({o.get('confident_samples')})" if o.get("top1_agreement") is not None
                else "-")
        print(f"{r.precision:10} {dev:60} {(r.cpu or '-')[:12]:12} {(p.get('status') or r.status):13} "
              f"{o.get('max_abs_err', nan):9.3g} {o.get('sqnr_db', nan):8.1f} {sure:>15} "
              f"{o.get('top1_agreement_all') or nan:9.3f} {(100 * drop if drop is not None else nan):+9.2f} "
              f"{o.get('host_sqnr_db') if o.get('host_sqnr_db') is not None else nan:12.1f}")
        table.append({"precision": r.precision, "device": dev, "cpu": r.cpu, "status": r.status, "parity": p})
    c = compare([arts["float32"], arts["int8"]], "local", runs=300, rounds=10, threads=1)
    print(f"compare float32 vs int8 locally (1 thread, 300 runs each, 10 rounds): p50 {c.a_p50_ms:.4f} vs "
          f"{c.b_p50_ms:.4f} ms; ratio {c.ratio:.3f} (95% CI {c.ci[0]:.3f}-{c.ci[1]:.3f}): {c.verdict}")
    (out / "bench_parity.json").write_text(json.dumps({"qemu_cpu": seen, "board": args.board, "epochs": args.epochs,
                                                       "rows": table,
                                                       "compare": c.to_dict()}, indent=2, default=str) + "\n")


@contextmanager
def board(kind: str, devlab: Path, conftest):
    """(device, {flavour: python}, bench keywords, check() -> the QEMU_CPU a process on the board sees)."""
    if kind == "sysroot":
        script = devlab / "arm64-sysroot.sh"
        key = hashlib.sha256(script.read_bytes()).hexdigest()[:12]
        d = Path(os.environ.get("EDGEKIT_A64_DIR", f"/tmp/edgekit-a64-{key}"))
        if not (d / ".edgekit-complete").is_file():
            d = conftest._cached_build(script, "edgekit-a64", 900)
        pythons = {f: str(d / "bin" / f"python-{f}") for f in ("tflite", "litert")}
        probe = [pythons["litert"], "-c", "import os; print(os.environ.get('QEMU_CPU', ''))"]
        yield "local", pythons, {}, lambda: subprocess.run(probe, capture_output=True, text=True,
                                                             timeout=300).stdout.strip()
        return
    rootfs = conftest._cached_build(devlab / "arm64-rootfs.sh", "edgekit-rootfs", 3600)
    gen = conftest.arm64_ssh.__wrapped__(devlab, rootfs)
    ssh = next(gen)
    try:  # sshd passes QEMU_CPU on to every session (SetEnv)
        cmd = ["ssh", "-p", str(ssh["SSHD_PORT"]), "-i", ssh["SSHD_KEY"], "-o", "BatchMode=yes", "-o",
               f"UserKnownHostsFile={ssh['SSHD_KNOWN_HOSTS']}", "-o", "StrictHostKeyChecking=yes",
               f"{ssh['SSHD_USER']}@{ssh['SSHD_HOST']}", "echo $QEMU_CPU"]
        yield ssh["url"], ssh["python"], {"key_file": ssh["SSHD_KEY"], "known_hosts": ssh["SSHD_KNOWN_HOSTS"]}, \
            lambda: subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout.strip()
    finally:
        next(gen, None)


if __name__ == "__main__":
    main()
