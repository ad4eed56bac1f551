"""Rendering the Deep Compression view (Han et al., 2016, https://arxiv.org/abs/1510.00149) of a pipeline run: table
rows and the PNG plot of size and accuracy per stage. The numbers come from :mod:`.weights` (stages) and
:mod:`.artifacts` (the exported file)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .._units import kib
from .weights import WeightStats
from .._io import atomic_path


COLUMNS = ("stage", "val acc", "test acc", "params", "nonzero", "sparsity", "pruned sp.", "clust. uniq/ch",
           "int8 KiB", "gzip KiB", "huffman KiB", "file KiB", "file gzip KiB", "package KiB")


def _pct(v):
    return "" if v is None else f"{100 * v:.2f}%"


def _kib(v):
    return "" if not v else f"{kib(v):.1f}"


def rows(report) -> list[list[str]]:
    """Table rows of a PipelineReport (one per stage, then one per artifact)."""
    out = []
    for st in [report.input, *report.stages]:
        w = st.weights or WeightStats()
        out.append([st.stage, _pct(st.val_accuracy), _pct(st.test_accuracy), f"{st.param_count:,}",
                    f"{st.nonzero:,}", _pct(w.sparsity), _pct(w.pruned_sparsity),
                    str(w.clustered_max_unique or ""), _kib(w.bytes), _kib(w.gzip_bytes), _kib(w.huffman_bytes), "", "",
                    ""])
    for art in report.artifacts:
        w = art.weights or WeightStats()
        out.append([f"artifact {art.precision or ''}".strip(), "", _pct(art.test_accuracy), "", "",
                    _pct(w.sparsity), _pct(w.pruned_sparsity), str(w.clustered_max_unique or ""), _kib(w.bytes),
                    _kib(w.gzip_bytes),
                    _kib(w.huffman_bytes), _kib(art.file_bytes), _kib(art.gzip_bytes),
                    _kib(getattr(art, "package_bytes", 0))])
    return out


def plot(report, dest: str | os.PathLike) -> Path:
    """PNG: per stage (and per artifact) grouped bars of size (kernels as int8, gzip, Huffman; the artifact's file
    and file gzip) with test accuracy as a line on the right axis. Atomic write."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, raw, gz, hf, acc = [], [], [], [], []
    rows_ = [report.input, *report.stages]
    if report.stages and report.stages[0].stage == "train":
        rows_ = rows_[1:]  # the input was untrained: its chance-level accuracy would flatten the accuracy axis
    for st in rows_:
        w = st.weights or WeightStats()
        labels.append(st.stage)
        raw.append(kib(w.bytes))
        gz.append(kib(w.gzip_bytes))
        hf.append(kib(w.huffman_bytes))
        a = st.test_accuracy if st.test_accuracy is not None else st.val_accuracy
        acc.append(None if a is None else 100 * a)
    file_kib, file_gz, pkg = [0.0] * len(labels), [0.0] * len(labels), [0.0] * len(labels)
    for art in report.artifacts:
        w = art.weights or WeightStats()
        labels.append(f"{art.precision or 'artifact'}\n.tflite")
        raw.append(kib(w.bytes))
        gz.append(kib(w.gzip_bytes))
        hf.append(kib(w.huffman_bytes))
        file_kib.append(kib(art.file_bytes))
        file_gz.append(kib(art.gzip_bytes))
        pkg.append(kib(getattr(art, "package_bytes", 0)))
        acc.append(None if art.test_accuracy is None else 100 * art.test_accuracy)
    x = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(max(7.0, 1.5 * len(labels) + 3), 5), dpi=110)
    series = [("kernels int8", raw, "tab:blue"), ("kernels gzip", gz, "tab:orange"),
              ("kernels Huffman", hf, "tab:green"), ("file", file_kib, "tab:gray"), ("file gzip", file_gz, "silver"),
              ("package", pkg, "tab:purple")]
    series = [s for s in series if any(s[1])]
    width = 0.8 / len(series)
    for i, (name, vals, color) in enumerate(series):
        bars = ax.bar(x - 0.4 + width * (i + 0.5), vals, width, label=name, color=color)
        for b, v in zip(bars, vals):
            if v:
                ax.annotate(f"{v:.0f}", (b.get_x() + b.get_width() / 2, v), ha="center", va="bottom", fontsize=7)
    ax.set_xticks(x, labels)
    ax.set_ylabel("size (KiB)")
    ax.set_ylim(0, max(max(s[1]) for s in series) * 1.18)
    ax.grid(True, axis="y", alpha=0.3)
    ax2 = ax.twinx()
    pts = [(i, a) for i, a in enumerate(acc) if a is not None]
    if pts:
        ax2.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color="tab:red", label="test accuracy")
        for i, a in pts:
            ax2.annotate(f"{a:.2f}%", (i, a), textcoords="offset points", xytext=(0, 7), ha="center", fontsize=8,
                         color="tab:red")
        lo, hi = min(p[1] for p in pts), max(p[1] for p in pts)
        ax2.set_ylim(max(0.0, lo - max(2.0, hi - lo)), min(100.0, hi + max(1.0, (hi - lo) / 2)))
    ax2.set_ylabel("test accuracy (%)", color="tab:red")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    fig.legend(h1 + h2, l1 + l2, fontsize=7, loc="lower center", ncol=len(l1 + l2), frameon=False)
    ax.set_title(f"{report.model}: size and accuracy per compression stage", fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    dest = Path(dest)
    with atomic_path(dest) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return dest
