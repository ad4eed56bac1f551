"""On-device parity per precision, x86 (local) vs aarch64 (the devlab's arm64 rootfs over SSH), and compare of
float32 vs int8 locally. Needs root for the rootfs (built once, cached under /tmp like the tests do).

    python benchmarks/bench_parity.py [--epochs 1] [--out runs/parity]

Trains MobileNet v1 alpha=0.25 32x32x1 on Fashion-MNIST (edgekit train), exports it in every TFLite precision
calibrated/verified on Fashion-MNIST, then runs `bench --verify` on each device and prints per precision the
device-vs-Keras max abs error, SQNR and top-1 agreement, and the device-vs-host-runtime SQNR.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--out", default="runs/parity")
    ap.add_argument("--precisions", default="none,fp16,dynamic,int8,int16x8")
    args = ap.parse_args()
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
        rows = []
        for prec, path in arts.items():
            rows += bench([path], "local", runs=20, warmup=2, verify=True)
            for flavour in ("tflite", "litert"):
                for delegate in ("auto", "none"):
                    (r,) = bench([path], ssh["url"], key_file=ssh["SSHD_KEY"], known_hosts=ssh["SSHD_KNOWN_HOSTS"],
                                 python=ssh["python"][flavour], runs=3, warmup=1, verify=True, delegate=delegate)
                    r.device = f"aarch64 {r.runtime} {r.runtime_version} delegate={delegate}"
                    rows.append(r)
    finally:
        next(gen, None)
    print(f"{'precision':10} {'device':52} {'status':14} {'max|err|':>10} {'SQNR dB':>8} {'top-1':>6} "
          f"{'vs host SQNR':>12}")
    for r in rows:
        p = r.parity or {}
        o = (p.get("outputs") or [{}])[0]
        dev = r.device if r.device != "local" else f"x86_64 {r.runtime} {r.runtime_version}"
        print(f"{r.precision:10} {dev:52} {(p.get('status') or r.status):14} {o.get('max_abs_err', float('nan')):10.3g} "
              f"{o.get('sqnr_db', float('nan')):8.1f} {o.get('top1_agreement') or float('nan'):6.3f} "
              f"{o.get('host_sqnr_db', float('nan')):12.1f}")
    c = compare([arts["float32"], arts["int8"]], "local", runs=300, rounds=10, threads=1)
    print(f"compare float32 vs int8 locally (1 thread, 300 runs each, 10 rounds): p50 {c.a_p50_ms:.4f} vs "
          f"{c.b_p50_ms:.4f} ms; ratio {c.ratio:.3f} (95% CI {c.ci[0]:.3f}-{c.ci[1]:.3f}): {c.verdict}")


if __name__ == "__main__":
    main()
