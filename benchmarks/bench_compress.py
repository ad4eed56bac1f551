"""Compression benchmark on Fashion-MNIST with MobileNet v1 alpha=0.25 (32x32x1, 10 classes), seed 0 everywhere.

1. float baseline: trained from scratch, saved; exported as plain int8 (post-training, calibrated on train data)
2. 50% pruning + int8 (from the baseline): accuracy vs float, gzip vs the unpruned int8 artifact, sparsity in .tflite
3. 16-cluster + int8 (from the baseline): accuracy, Huffman estimate
4. prune 50% + cluster 16 (sparsity-preserving) + int8: the Deep Compression chain
5. distillation: the same student trained alone vs with a stronger teacher (alpha=1.0, trained first), same
   epochs, data and seed

    .venv/bin/python benchmarks/bench_compress.py [--out artifacts/bench_compress] [--epochs 4] [--limit N]
    .venv/bin/python benchmarks/bench_compress.py --only prune_cluster_pt,reanalyse   # reuses baseline.keras

Writes OUT/results.json and prints a summary; every number comes from this run.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

OPTS = dict(alpha=0.25, resolution=32, input_channels=1, classes=10)


def summary(res) -> dict:
    rep = res.report
    art = rep.artifacts[0] if rep.artifacts else None
    last = rep.stages[-1] if rep.stages else rep.input
    out = {"stages": res.stages, "keras_test_acc": last.test_accuracy, "seconds": rep.seconds}
    if art is not None:
        w = art.weights
        out.update(artifact=art.path, artifact_test_acc=art.test_accuracy, file_bytes=art.file_bytes,
                   gzip_bytes=art.gzip_bytes, weight_bytes=w.bytes, weight_gzip_bytes=w.gzip_bytes,
                   huffman_weight_bytes=w.huffman_bytes, huffman_file_bytes=art.huffman_file_bytes,
                   sparsity_all_kernels=w.sparsity, sparsity_pruned_kernels=w.pruned_sparsity,
                   max_unique=w.max_unique, entropy_bits=w.entropy_bits, report=rep.report_json,
                   pruned_fraction_of_weights=sum(t["weights"] for t in w.per_tensor if t["pruned"])
                   / max(1, w.weights),
                   weight_fraction_of_file=w.bytes / art.file_bytes)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="artifacts/bench_compress")
    ap.add_argument("--epochs", type=int, default=4, help="baseline training epochs")
    ap.add_argument("--limit", type=int, default=None, help="training samples (default: all 60k)")
    ap.add_argument("--prune-epochs", type=int, default=2)
    ap.add_argument("--cluster-epochs", type=int, default=1)
    ap.add_argument("--distill-limit", type=int, default=10000)
    ap.add_argument("--distill-epochs", type=int, default=4)
    ap.add_argument("--extra-sparsity", default="", help="comma list of further pruning targets, e.g. 0.75")
    ap.add_argument("--only", default="baseline,prune,cluster,prune_cluster,distill",
                    help="comma list of: baseline prune cluster prune_cluster prune_cluster_pt distill reanalyse")
    args = ap.parse_args()

    from edgekit.compression import Distill, Pipeline, Train, compress, train

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    prev = out / "results.json"
    results: dict = json.loads(prev.read_text()) if prev.exists() else {}
    results["args"] = vars(args)
    only = set(args.only.split(","))
    common = dict(data="fashion-mnist", limit=args.limit, test_limit=None, seed=0, quantize="int8",
                  calib_samples=500, verify=True)
    t_all = time.perf_counter()

    base_path = out / "baseline.keras"
    if "baseline" in only or not base_path.exists():
        t0 = time.perf_counter()
        rep = train("mobilenet_v1", "fashion-mnist", weights="none", epochs=args.epochs, limit=args.limit, seed=0,
                    out=base_path, **OPTS).report
        results["baseline_train"] = {"test_acc": rep.test_accuracy, "best_epoch": rep.best_epoch,
                                     "history": [e.to_dict() for e in rep.history],
                                     "seconds": round(time.perf_counter() - t0, 1)}
        print("baseline float:", results["baseline_train"]["test_acc"], flush=True)
        res = compress(str(base_path), out=str(out / "int8"), **common)
        results["baseline_int8"] = summary(res)
        print("baseline int8:", results["baseline_int8"], flush=True)
    if "prune" in only:
        res = compress(str(base_path), prune=0.5, prune_epochs=args.prune_epochs, out=str(out / "pruned50_int8"),
                       **common)
        results["pruned50_int8"] = summary(res)
        print("prune 50% + int8:", results["pruned50_int8"], flush=True)
    if "cluster" in only:
        res = compress(str(base_path), cluster=16, cluster_epochs=args.cluster_epochs,
                       out=str(out / "cluster16_int8"), **common)
        results["cluster16_int8"] = summary(res)
        print("cluster 16 + int8:", results["cluster16_int8"], flush=True)
    if "prune_cluster" in only:
        res = compress(str(base_path), prune=0.5, prune_epochs=args.prune_epochs, cluster=16,
                       cluster_epochs=args.cluster_epochs, out=str(out / "pruned50_cluster16_int8"), **common)
        results["pruned50_cluster16_int8"] = summary(res)
        print("prune 50% + cluster 16 + int8:", results["pruned50_cluster16_int8"], flush=True)
    for sp in (float(v) for v in args.extra_sparsity.split(",") if v):
        key = f"pruned{int(round(sp * 100))}_int8"
        res = compress(str(base_path), prune=sp, prune_epochs=args.prune_epochs, out=str(out / key), **common)
        results[key] = summary(res)
        print(f"prune {sp:.0%} + int8:", results[key], flush=True)
    if "prune_cluster_pt" in only:
        # clusters survive int8 only per tensor: per-channel scales turn 16 shared values into up to 16 per channel
        res = compress(str(base_path), prune=0.5, prune_epochs=args.prune_epochs, cluster=16,
                       cluster_epochs=args.cluster_epochs, out=str(out / "pruned50_cluster16_int8_per_tensor"),
                       per_tensor=True, **common)
        results["pruned50_cluster16_int8_per_tensor"] = summary(res)
        print("prune 50% + cluster 16 + int8 per-tensor:", results["pruned50_cluster16_int8_per_tensor"], flush=True)
    if "reanalyse" in only:
        # re-measure every artifact already written (e.g. after a change of the report's Huffman estimate)
        from edgekit.compression.artifacts import artifact_stats

        for key, val in results.items():
            if isinstance(val, dict) and str(val.get("artifact", "")).endswith(".tflite"):
                st = artifact_stats(val["artifact"])
                val.update(huffman_weight_bytes=st.weights.huffman_bytes, huffman_file_bytes=st.huffman_file_bytes,
                           entropy_bits=st.weights.entropy_bits, gzip_bytes=st.gzip_bytes,
                           weight_gzip_bytes=st.weights.gzip_bytes)
                print(key, {k: val[k] for k in ("huffman_weight_bytes", "weight_gzip_bytes", "gzip_bytes")},
                      flush=True)
    if "distill" in only:
        config = dict(limit=args.distill_limit, test_limit=None, seed=0, weights="none", **OPTS)
        # models are built inside run(), after seeding: both students start from the same initial weights
        rep_a = Pipeline([Train(epochs=args.distill_epochs)]).run("mobilenet_v1", "fashion-mnist", config).report
        stage = Distill("mobilenet_v1", teacher_options={"alpha": 1.0}, teacher_epochs=args.distill_epochs,
                        epochs=args.distill_epochs, lr=1e-3)
        rep_d = Pipeline([stage]).run("mobilenet_v1", "fashion-mnist", config).report
        teacher = rep_d.stages[0].params["teacher_report"]
        results["distill"] = {"student_alone_test_acc": rep_a.stages[0].test_accuracy,
                              "student_distilled_test_acc": rep_d.stages[0].test_accuracy,
                              "teacher": {k: v for k, v in teacher.items() if k != "history"},
                              "train_samples": rep_a.train_samples, "epochs": args.distill_epochs,
                              "seconds_alone": rep_a.seconds, "seconds_distill": rep_d.seconds}
        print("distill:", results["distill"], flush=True)

    b = results.get("baseline_int8", {})
    f = results.get("baseline_train", {}).get("test_acc")
    checks = {}
    if b and "pruned50_int8" in results:
        p = results["pruned50_int8"]
        checks["pruned_acc_drop_vs_float_pts"] = None if f is None else round(100 * (f - p["artifact_test_acc"]), 2)
        checks["pruned_gzip_ratio_vs_int8"] = round(p["gzip_bytes"] / b["gzip_bytes"], 3)
        checks["pruned_weight_gzip_ratio_vs_int8"] = round(p["weight_gzip_bytes"] / b["weight_gzip_bytes"], 3)
        checks["pruned_sparsity_in_tflite"] = p["sparsity_pruned_kernels"]
        checks["pruned_fraction_of_weight_bytes"] = round(p["pruned_fraction_of_weights"], 3)
        checks["weight_fraction_of_file_bytes"] = round(p["weight_fraction_of_file"], 3)
    if b and "cluster16_int8" in results and f is not None:
        checks["cluster_acc_drop_vs_float_pts"] = round(100 * (f - results["cluster16_int8"]["artifact_test_acc"]), 2)
    if b and "pruned50_cluster16_int8" in results:
        checks["prune_cluster_gzip_ratio_vs_int8"] = round(results["pruned50_cluster16_int8"]["gzip_bytes"]
                                                           / b["gzip_bytes"], 3)
    if b and "pruned50_cluster16_int8_per_tensor" in results:
        pt = results["pruned50_cluster16_int8_per_tensor"]
        checks["prune_cluster_per_tensor_gzip_ratio_vs_int8"] = round(pt["gzip_bytes"] / b["gzip_bytes"], 3)
        if f is not None:
            checks["prune_cluster_per_tensor_acc_drop_vs_float_pts"] = round(100 * (f - pt["artifact_test_acc"]), 2)
    for key, val in results.items():
        if b and key.startswith("pruned") and key.endswith("_int8") and key not in ("pruned50_int8",):
            checks[f"{key}_gzip_ratio_vs_int8"] = round(val["gzip_bytes"] / b["gzip_bytes"], 3)
            if f is not None:
                checks[f"{key}_acc_drop_vs_float_pts"] = round(100 * (f - val["artifact_test_acc"]), 2)
    results["checks"] = checks
    results["seconds_total"] = round(time.perf_counter() - t_all, 1)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(checks, indent=2))
    print(f"total {results['seconds_total']} s; results in {out / 'results.json'}")


if __name__ == "__main__":
    main()
