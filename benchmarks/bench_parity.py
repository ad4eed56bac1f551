"""On-device parity per precision, x86 (local) vs aarch64 (the devlab's arm64 rootfs over SSH, qemu emulating the
board's CPU: --qemu-cpu, default cortex-a72 = a Raspberry Pi 4, set as QEMU_CPU for the rootfs's sshd and every
session and recorded), and compare of float32 vs int8 locally. Needs root for the rootfs (built once, cached under
/tmp like the tests do).

    EDGEKIT_DEVLAB=../shared/devlab python benchmarks/bench_parity.py --epochs 4 [--qemu-cpu cortex-a72]
        [--out runs/parity]

Trains MobileNet v1 alpha=0.25 32x32x1 on Fashion-MNIST (edgekit train), exports it in every TFLite precision
calibrated/verified on Fashion-MNIST, then runs `bench --verify` on each device and prints per precision the
verdict (edgekit.verification's rule), the device-vs-Keras max abs error, SQNR, top-1 agreement over the samples
whose float margin is above the precision's noise (with their count) and over all samples, the paired accuracy
drop, the device-vs-host-runtime SQNR and the CPU the runner reported. Writes OUT/bench_parity.json.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--out", default="runs/parity")
    ap.add_argument("--precisions", default="none,fp16,dynamic,int8,int16x8")
    ap.add_argument("--qemu-cpu", default="cortex-a72",
                    help="the CPU qemu emulates (cortex-a72: Pi 4, cortex-a76: Pi 5)")
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

    import conftest  # the same cached rootfs + arm64 sshd as the tests

    devlab = Path(os.environ.get("EDGEKIT_DEVLAB", conftest.DEVLAB))
    rootfs = conftest._cached_build(devlab / "arm64-rootfs.sh", "edgekit-rootfs", 1800)
    gen = conftest.arm64_ssh.__wrapped__(devlab, rootfs)
    ssh = next(gen)
    try:
        # what a session on the board really gets (sshd passes QEMU_CPU on to every session: SetEnv)
        seen = subprocess.run(["ssh", "-p", str(ssh["SSHD_PORT"]), "-i", ssh["SSHD_KEY"], "-o", "BatchMode=yes",
                               "-o", f"UserKnownHostsFile={ssh['SSHD_KNOWN_HOSTS']}", "-o", "StrictHostKeyChecking=yes",
                               f"{ssh['SSHD_USER']}@{ssh['SSHD_HOST']}", "echo $QEMU_CPU"], capture_output=True,
                              text=True, timeout=120).stdout.strip()
        if seen != args.qemu_cpu:
            raise SystemExit(f"the board's sessions run with QEMU_CPU={seen!r}, not {args.qemu_cpu!r}")
        rows = []
        for prec, path in arts.items():
            rows += bench([path], "local", runs=20, warmup=2, verify=True)
            for flavour in ("tflite", "litert"):
                for delegate in ("auto", "none"):
                    (r,) = bench([path], ssh["url"], key_file=ssh["SSHD_KEY"], known_hosts=ssh["SSHD_KNOWN_HOSTS"],
                                 python=ssh["python"][flavour], runs=3, warmup=1, verify=True, delegate=delegate)
                    r.device = f"aarch64 qemu {args.qemu_cpu} {r.runtime} {r.runtime_version} delegate={delegate}"
                    rows.append(r)
    finally:
        next(gen, None)
    print(f"aarch64 board: qemu-user with QEMU_CPU={seen} (sessions checked); the runner reports its CPU per row")
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
    (out / "bench_parity.json").write_text(json.dumps({"qemu_cpu": seen, "epochs": args.epochs, "rows": table,
                                                       "compare": c.to_dict()}, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
