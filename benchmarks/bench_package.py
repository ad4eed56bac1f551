"""Update packages on Fashion-MNIST with MobileNet v1 alpha=0.25 (32x32x1, 10 classes), seed 0 everywhere.

Sizes (bytes) and top-1 accuracies on the 10,000 test images:
1. baseline: trained from scratch (--epochs), exported float32 and int8 (post-training, 500 calibration images)
2. deep: 50 % pruning + 16 clusters + int8 (export/fashion_mnist_mobilenet_deep_compression_int8.yaml's chain)
3. ota: 75 % pruning + 8 clusters + int8 (export/fashion_mnist_mobilenet_ota.yaml's chain)
   each artifact: file, gzip -9, the compress report's Huffman estimate and its `edgekit package` bytes; the
   package's streams coded with every stdlib codec (and zstandard/brotli when installed, for comparison)
4. deltas against the deployed ota artifact: the same model re-exported; the classifier alone retrained
   (train --trainable conv_preds, 1 epoch); a cluster-preserving fine-tune (the deployed ota model + 1 epoch of
   sparsity- and cluster-preserving QAT, PCQAT)
5. sparse latency (--only sparse; times: run on an idle machine): the baseline's 1x1 convolutions 70/80/90 % sparse
   (smallest weights zeroed), float .tflite converted dense and with Optimize.EXPERIMENTAL_SPARSITY (DENSIFY ops),
   timed interleaved by `edgekit compare` (1 thread, 200 runs, 10 rounds)

    .venv/bin/python benchmarks/bench_package.py [--out artifacts/bench_package] [--epochs 6]
    .venv/bin/python benchmarks/bench_package.py --only sparse [--device local]   # the sparse latency table

Writes OUT/results.json and prints the tables; every number comes from this run (files already written in OUT are
reused: delete them to start over).
"""
from __future__ import annotations

import argparse
import json
import struct
import time
from pathlib import Path

OPTS = dict(alpha=0.25, resolution=32, input_channels=1, classes=10)
COMMON = dict(data="fashion-mnist", test_limit=10000, seed=0, calib_samples=500, verify=True)


def art_row(res) -> dict:
    """Sizes and accuracy of a compress() result's artifact, and of its update package."""
    from edgekit.packaging import package

    art = res.report.artifacts[0]
    pkg = package(art.path, out=art.path + ".ekpkg")
    return {"artifact": art.path, "test_acc": art.test_accuracy, "test_samples": art.test_samples,
            "file_bytes": art.file_bytes, "gzip_bytes": art.gzip_bytes, "huffman_file_bytes": art.huffman_file_bytes,
            "package_bytes": pkg.package_bytes, "package": pkg.to_dict(), "codecs": codec_table(pkg.path)}


def codec_table(pkg_path: str) -> dict:
    """Bytes of the package's streams under each entropy coder (the package keeps the best stdlib one per
    stream); zstandard/brotli only when installed (the restore must not need them)."""
    import bz2
    import lzma
    import zlib

    from edgekit.packaging import format as fmt

    header, body = fmt.read_header(Path(pkg_path).read_bytes())
    (n,) = struct.unpack("<I", body[:4])
    table = json.loads(fmt.decompress(body[4:4 + n], "lzma", header["body"]["table_bytes"]))
    streams = []
    for codec, off, length, size, zd in table["streams"]:
        if not zd:
            streams.append(fmt.decompress(body[4 + n + off:4 + n + off + length], codec, size))
    coders = {"lzma": lambda d: len(fmt.compress(d, "lzma")), "xz": lambda d: len(lzma.compress(d, preset=9)),
              "zlib": lambda d: len(zlib.compress(d, 9)), "bz2": lambda d: len(bz2.compress(d, 9)),
              "huffman (order-0 bound)": huffman_bytes}
    try:
        import zstandard

        coders["zstd -19"] = lambda d: len(zstandard.ZstdCompressor(level=19).compress(d))
    except ImportError:
        pass
    try:
        import brotli

        coders["brotli -11"] = lambda d: len(brotli.compress(d, quality=11))
    except ImportError:
        pass
    return {name: sum(f(s) for s in streams) for name, f in coders.items()}


def huffman_bytes(data: bytes) -> int:
    """Bytes of a canonical Huffman code of ``data``'s bytes (code lengths from the counts; table not counted)."""
    import heapq

    import numpy as np

    counts = np.bincount(np.frombuffer(data, dtype=np.uint8), minlength=256)
    heap = [(int(c), i, None) for i, c in enumerate(counts) if c]
    if len(heap) <= 1:
        return (len(data) + 7) // 8
    depth = {i: 0 for _, i, _ in heap}
    members = {i: [i] for _, i, _ in heap}
    heapq.heapify(heap)
    nxt = 256
    while len(heap) > 1:
        c1, i1, _ = heapq.heappop(heap)
        c2, i2, _ = heapq.heappop(heap)
        members[nxt] = members.pop(i1) + members.pop(i2)
        for s in members[nxt]:
            depth[s] += 1
        heapq.heappush(heap, (c1 + c2, nxt, None))
        nxt += 1
    return (sum(int(counts[s]) * d for s, d in depth.items()) + 7) // 8


def delta_row(new: str, base: str, acc=None) -> dict:
    from edgekit.packaging import package, unpack

    d = package(new, base=base, out=new + ".delta.ekpkg")
    back = unpack(d.path, base=base, out=new + ".restored")
    assert back.sha256 == d.sha256
    return {"artifact": new, "test_acc": acc, "package_bytes": d.package_bytes, "changed_segments": d.changed_segments,
            "segments": d.segments, "changed_elements": d.changed_elements, "codings": d.codings,
            "full_package_bytes": __import__("edgekit").package(new, out=new + ".ekpkg").package_bytes}


def sparse(out: Path, base_path: Path, device: str, results: dict) -> None:
    """Float MobileNets with 70/80/90 % sparse 1x1 convolutions (the smallest weights zeroed: latency does not
    depend on accuracy), converted dense and with EXPERIMENTAL_SPARSITY, timed interleaved on ``device``."""
    import numpy as np
    import tensorflow as tf

    from edgekit import _tflite
    from edgekit._keras import keras
    from edgekit.devices.compare import compare

    rows = {}
    for sp in (0.7, 0.8, 0.9):
        key = f"pw{int(sp * 100)}"
        model = keras.models.load_model(base_path)
        for layer in model.layers:
            if layer.name.startswith("conv_pw_") and layer.get_weights():
                w = layer.get_weights()
                w[0][np.abs(w[0]) < np.quantile(np.abs(w[0]), sp)] = 0
                layer.set_weights(w)
        files = {}
        for kind, opts in (("dense", []), ("sparse", [tf.lite.Optimize.EXPERIMENTAL_SPARSITY])):
            conv = tf.lite.TFLiteConverter.from_keras_model(model)
            conv.optimizations = opts
            path = out / f"{key}_{kind}.tflite"
            path.write_bytes(conv.convert())
            files[kind] = str(path)
        info = _tflite.read(Path(files["sparse"]).read_bytes())
        c = compare([files["dense"], files["sparse"]], device, runs=200, rounds=10, threads=1)
        rows[key] = {"sparsity": sp, "densify_ops": sum(op.name == "DENSIFY" for op in info.main.operators),
                     "dense_bytes": Path(files["dense"]).stat().st_size,
                     "sparse_bytes": Path(files["sparse"]).stat().st_size, "dense_p50_ms": c.a_p50_ms,
                     "sparse_p50_ms": c.b_p50_ms, "speedup": c.a_p50_ms / c.b_p50_ms if c.b_p50_ms else None,
                     "verdict": c.verdict, "comparison": c.to_dict()}
        print(f"{key}: dense {c.a_p50_ms:.4f} ms, sparse {c.b_p50_ms:.4f} ms ({rows[key]['densify_ops']} DENSIFY): "
              f"{c.verdict}", flush=True)
    results["sparse"] = {"device": device, "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="artifacts/bench_package")
    ap.add_argument("--epochs", type=int, default=6, help="baseline training epochs")
    ap.add_argument("--only", default="baseline,deep,ota,deltas",
                    help="comma list of: baseline deep ota deltas pcqat repackage sparse")
    ap.add_argument("--device", default="local", help="device of the sparse latency comparison")
    args = ap.parse_args()

    from edgekit.compression import compress, train
    from edgekit.exporters import export

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    prev = out / "results.json"
    results: dict = json.loads(prev.read_text()) if prev.exists() else {}
    results["args"] = vars(args)
    only = set(args.only.split(","))
    t_all = time.perf_counter()
    base_path = out / "baseline.keras"
    if not base_path.exists():
        rep = train("mobilenet_v1", "fashion-mnist", weights="none", epochs=args.epochs, seed=0, test_limit=10000,
                    out=base_path, **OPTS).report
        results["baseline_keras_test_acc"] = rep.test_accuracy
    if "baseline" in only:
        for q in ("float32", "int8"):
            opts = COMMON if q == "int8" else {k: v for k, v in COMMON.items() if k != "calib_samples"}
            results[f"baseline_{q}"] = art_row(compress(str(base_path), quantize=q, out=str(out / q), **opts))
            print(q, {k: results[f"baseline_{q}"][k] for k in ("test_acc", "gzip_bytes", "package_bytes")}, flush=True)
    if "deep" in only:
        res = compress(str(base_path), prune=0.5, prune_epochs=2, cluster=16, cluster_epochs=1, quantize="int8",
                       out=str(out / "deep"), **COMMON)
        results["deep"] = art_row(res)
        print("deep", {k: results["deep"][k] for k in ("test_acc", "gzip_bytes", "package_bytes")}, flush=True)
    ota_keras = out / "ota.keras"
    if "ota" in only:
        res = compress(str(base_path), prune=0.75, prune_epochs=3, cluster=8, cluster_epochs=1, quantize="int8",
                       out=str(out / "ota"), save_model=str(ota_keras), **COMMON)
        results["ota"] = art_row(res)
        print("ota", {k: results["ota"][k] for k in ("test_acc", "gzip_bytes", "package_bytes")}, flush=True)
    if "deltas" in only and "ota" in results:
        v1 = results["ota"]["artifact"]
        again = export(str(ota_keras), quantize="int8", calib_data="fashion-mnist", calib_samples=500,
                       out=str(out / "ota_reexport"), verify=False)
        results["delta_reexport"] = delta_row(str(again.artifacts[0].path), v1, results["ota"]["test_acc"])
        head = out / "ota_head.keras"
        train(str(ota_keras), "fashion-mnist", epochs=1, lr=1e-3, seed=1, trainable=("conv_preds",), test_limit=10000,
              out=head)
        res = compress(str(head), quantize="int8", out=str(out / "ota_head"), **COMMON)
        results["delta_head"] = delta_row(res.report.artifacts[0].path, v1, res.report.artifacts[0].test_accuracy)
    if ("deltas" in only or "pcqat" in only) and "ota" in results:
        from edgekit.compression.qat import QAT

        class PCQAT(QAT):
            """QAT that keeps the deployed model's zeros and clusters (tfmot PCQAT): the model comes from a file,
            so the pipeline did not see its prune and cluster stages."""

            def _scheme_for(self, done):
                return super()._scheme_for([*done, "prune", "cluster"])

        res = compress(str(ota_keras), stages=(PCQAT(epochs=1),), quantize="int8", out=str(out / "ota_pcqat"),
                       **COMMON)
        results["delta_pcqat"] = delta_row(res.report.artifacts[0].path, results["ota"]["artifact"],
                                           res.report.artifacts[0].test_accuracy)
        for k in ("delta_reexport", "delta_head", "delta_pcqat"):
            if k not in results:
                continue
            print(k, {x: results[k][x] for x in ("test_acc", "package_bytes", "changed_segments", "codings")},
                  flush=True)
    if "repackage" in only:  # the artifacts already measured, packaged again (after a change of the format)
        from edgekit.packaging import package

        for key in ("baseline_float32", "baseline_int8", "deep", "ota"):
            if key in results:
                pkg = package(results[key]["artifact"], out=results[key]["artifact"] + ".ekpkg")
                results[key].update(package_bytes=pkg.package_bytes, package=pkg.to_dict(),
                                    codecs=codec_table(pkg.path))
        for key in ("delta_reexport", "delta_head", "delta_pcqat"):
            if key in results:
                results[key] = delta_row(results[key]["artifact"], results["ota"]["artifact"], results[key]["test_acc"])
    if "sparse" in only:
        sparse(out, base_path, args.device, results)
    results["seconds"] = round(time.perf_counter() - t_all, 1)
    prev.write_text(json.dumps(results, indent=2, default=str))
    print_tables(results)


def print_tables(r: dict) -> None:
    fg = r.get("baseline_float32", {}).get("gzip_bytes")
    fa = r.get("baseline_float32", {}).get("test_acc")
    print(f"\n{'artifact':<28}{'top-1 %':>9}{'file B':>10}{'gzip -9 B':>11}{'Huffman B':>11}{'package B':>11}"
          f"{'float gzip / package':>22}")
    for key, label in (("baseline_float32", "float32"), ("baseline_int8", "int8"), ("deep", "prune 50+cluster 16+int8"),
                       ("ota", "prune 75+cluster 8+int8 (ota)")):
        v = r.get(key)
        if v:
            ratio = f"{fg / v['package_bytes']:.2f}x" if fg else "-"
            print(f"{label:<28}{100 * v['test_acc']:>9.2f}{v['file_bytes']:>10,}{v['gzip_bytes']:>11,}"
                  f"{v['huffman_file_bytes']:>11,}{v['package_bytes']:>11,}{ratio:>22}")
    if fa is not None and "ota" in r:
        print(f"ota: {fg / r['ota']['package_bytes']:.2f}x below the float gzip, top-1 "
              f"{100 * (r['ota']['test_acc'] - fa):+.2f} points vs float (goal: >= 10x, at most 1 point lost)")
    print(f"\n{'delta against the ota artifact':<34}{'top-1 %':>9}{'delta B':>10}{'full package B':>16}"
          f"{'changed segments':>18}")
    for key, label in (("delta_reexport", "same model re-exported"), ("delta_head", "classifier retrained"),
                       ("delta_pcqat", "cluster-preserving fine-tune")):
        v = r.get(key)
        if v:
            acc = "-" if v["test_acc"] is None else f"{100 * v['test_acc']:.2f}"
            print(f"{label:<34}{acc:>9}{v['package_bytes']:>10,}{v['full_package_bytes']:>16,}"
                  f"{v['changed_segments']:>12} of {v['segments']}")
    if "ota" in r:
        print("\nota package streams under each coder (bytes):", json.dumps(r["ota"]["codecs"]))
    if "sparse" in r:
        print(f"\nsparse latency on {r['sparse']['device']} (1 thread, interleaved):")
        for key, v in r["sparse"]["rows"].items():
            print(f"  {key}: dense {v['dense_p50_ms']:.4f} ms, sparse {v['sparse_p50_ms']:.4f} ms, "
                  f"speedup {v['speedup']:.3f}x, {v['densify_ops']} DENSIFY ops; {v['verdict']}")


if __name__ == "__main__":
    main()
