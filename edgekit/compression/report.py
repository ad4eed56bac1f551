"""The Deep Compression view (Han et al., 2016, https://arxiv.org/abs/1510.00149): size and accuracy per stage.

For every stage: accuracy, parameters, non-zeros, sparsity, and the size of its kernels as int8 (simulated the
way the TFLite converter quantizes them: symmetric, per output channel, zero stays zero), gzipped, and
Huffman-coded. For the exported artifact the same numbers are read from the ``.tflite`` itself: its constant
weight buffers, so sparsity is the one the device gets. The Huffman size is the real Huffman code length of each
weight tensor's values (sum of count x code length) plus a codebook (value + 8-bit code length per symbol), as in
Deep Compression (which also Huffman-codes sparse indices; here zeros are coded as values, no index is stored).
"""
from __future__ import annotations

import gzip
import heapq
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .._jsonable import JsonMixin

#: TFLite ops whose input #1 is a weight (filter) tensor
WEIGHT_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "CONV_3D")


def huffman_lengths(counts: Sequence[int]) -> list[int]:
    """Huffman code length of each symbol given its count (one symbol: length 1)."""
    counts = [int(c) for c in counts]
    if len(counts) == 1:
        return [1]
    heap = [(c, i, (i,)) for i, c in enumerate(counts)]
    heapq.heapify(heap)
    lengths = [0] * len(counts)
    tie = len(counts)
    while len(heap) > 1:
        c1, _, s1 = heapq.heappop(heap)
        c2, _, s2 = heapq.heappop(heap)
        for s in s1 + s2:
            lengths[s] += 1
        heapq.heappush(heap, (c1 + c2, tie, s1 + s2))
        tie += 1
    return lengths


def huffman_bits(values: np.ndarray, value_bits: int = 8) -> tuple[int, int]:
    """(payload bits, codebook bits) of Huffman-coding ``values``; codebook = per symbol its value + 8-bit length."""
    _, counts = np.unique(values, return_counts=True)
    lengths = huffman_lengths(counts)
    return int(np.dot(counts, lengths)), int(len(counts) * (value_bits + 8))


@dataclass
class WeightStats(JsonMixin):
    """Sizes and sparsity of a set of weight tensors (int8 values)."""

    tensors: int = 0
    weights: int = 0
    zeros: int = 0
    sparsity: float = 0.0
    #: sparsity over the tensors a stage pruned (None when nothing was pruned)
    pruned_tensors: int = 0
    pruned_sparsity: float | None = None
    max_unique: int = 0  # most distinct values in one tensor
    #: most distinct values in one output channel of a clustered tensor (None when nothing was clustered)
    clustered_max_unique: int | None = None
    bytes: int = 0  # raw int8 bytes
    gzip_bytes: int = 0
    huffman_bytes: int = 0
    entropy_bits: float = 0.0  # mean entropy per weight (bits)
    per_tensor: list[dict] = field(default_factory=list)


def _per_channel_huffman(arr: np.ndarray, axis: int | None) -> tuple[int | None, int]:
    """(bits with one Huffman code per output channel incl. codebooks, most distinct values in one channel)."""
    if axis is None or arr.ndim < 2:
        return None, 0
    chans = np.moveaxis(arr, axis, 0).reshape(arr.shape[axis], -1)
    bits, most = 0, 0
    for ch in chans:
        payload, book = huffman_bits(ch, 8 * arr.dtype.itemsize)
        bits += payload + book
        most = max(most, len(np.unique(ch)))
    return bits, most


def weight_stats(tensors: Iterable[tuple], detail: bool = False) -> WeightStats:
    """Stats of (name, int8 array, pruned?[, output-channel axis]) tensors.

    Huffman per tensor is the smaller of one code for the whole tensor and one code per output channel (per-channel
    int8 scales turn N shared float values into up to N distinct int8 values *per channel*).
    """
    st = WeightStats()
    raw = io.BytesIO()
    bits = 0
    ent = 0.0
    pz = pn = 0
    for item in tensors:
        name, arr, pruned = item[:3]
        axis = item[3] if len(item) > 3 else None
        clustered = bool(item[4]) if len(item) > 4 else False
        arr = np.asarray(arr)
        flat = arr.reshape(-1)
        zeros = int(np.count_nonzero(flat == 0))
        uniq, counts = np.unique(flat, return_counts=True)
        payload, book = huffman_bits(flat, 8 * arr.dtype.itemsize)
        ch_bits, ch_unique = _per_channel_huffman(arr, axis)
        if ch_bits is not None and ch_bits < payload + book:
            payload, book = ch_bits, 0
        p = counts / counts.sum()
        ent += float(-(counts * np.log2(p)).sum())
        bits += payload + book
        raw.write(np.ascontiguousarray(flat).tobytes())
        st.tensors += 1
        st.weights += flat.size
        st.zeros += zeros
        st.max_unique = max(st.max_unique, len(uniq))
        if clustered:
            st.clustered_max_unique = max(st.clustered_max_unique or 0, ch_unique or len(uniq))
        if pruned:
            st.pruned_tensors += 1
            pz += zeros
            pn += flat.size
        if detail:
            st.per_tensor.append({"name": name, "shape": list(arr.shape), "weights": int(flat.size),
                                  "sparsity": round(zeros / max(1, flat.size), 4), "unique": int(len(uniq)),
                                  "pruned": bool(pruned), "huffman_bytes": (payload + book + 7) // 8,
                                  "max_unique_per_channel": ch_unique or None})
    data = raw.getvalue()
    st.bytes = len(data)
    st.gzip_bytes = len(gzip.compress(data, 9, mtime=0)) if data else 0
    st.huffman_bytes = (bits + 7) // 8
    st.sparsity = st.zeros / st.weights if st.weights else 0.0
    st.pruned_sparsity = pz / pn if pn else None
    st.entropy_bits = ent / st.weights if st.weights else 0.0
    return st


def quantize_per_channel(kernel: np.ndarray, axis: int = -1) -> np.ndarray:
    """Symmetric int8 quantization per output channel (as the TFLite converter does for conv/dense kernels)."""
    k = np.moveaxis(np.asarray(kernel, np.float32), axis, -1)
    scale = np.abs(k.reshape(-1, k.shape[-1])).max(axis=0) / 127.0
    scale[scale == 0] = 1.0
    q = np.clip(np.rint(k / scale), -127, 127).astype(np.int8)
    return np.moveaxis(q, -1, axis)


def _kernel_value(layer, inner, attr: str) -> np.ndarray:
    """The kernel variable's value; QAT wrappers replace ``inner.kernel`` by a tensor, so search their weights."""
    var = getattr(inner, attr, None)
    if hasattr(var, "numpy"):
        try:
            return var.numpy()
        except (AttributeError, ValueError):
            pass
    for w in layer.weights:
        if w.name.split("/")[-1].split(":")[0] == attr:
            return w.numpy()
    raise ValueError(f"no {attr} variable in layer {layer.name!r}")


def keras_kernels(model) -> list[tuple[str, np.ndarray, str]]:
    """(layer name, kernel, kind) of every Conv2D / DepthwiseConv2D / Dense kernel, unwrapping tfmot wrappers."""
    from .._keras import layers

    out = []
    for layer in model.layers:
        inner = getattr(layer, "layer", layer)
        if isinstance(inner, layers.DepthwiseConv2D):
            out.append((inner.name, _kernel_value(layer, inner, "depthwise_kernel"), "depthwise"))
        elif isinstance(inner, (layers.Conv2D, layers.Dense)):
            out.append((inner.name, _kernel_value(layer, inner, "kernel"),
                        "dense" if isinstance(inner, layers.Dense) else "conv"))
        elif hasattr(inner, "layers"):
            out.extend(keras_kernels(inner))
    return out


def keras_weight_stats(model, pruned_layers: Sequence[str] = (), detail: bool = False,
                       clustered_layers: Sequence[str] = ()) -> WeightStats:
    """WeightStats of a Keras model's kernels quantized to int8 per channel (depthwise: per channel too)."""
    chosen = set(pruned_layers)
    tensors = []
    for name, kernel, kind in keras_kernels(model):
        axis = -2 if kind == "depthwise" else -1
        tensors.append((name, quantize_per_channel(kernel, axis), name in chosen, axis % kernel.ndim,
                        name in set(clustered_layers)))
    return weight_stats(tensors, detail)


def count_params(model) -> tuple[int, int]:
    """(parameters, non-zero parameters) of a Keras model (all weights, BN statistics included)."""
    total = nonzero = 0
    for w in model.weights:
        arr = w.numpy()
        total += arr.size
        nonzero += int(np.count_nonzero(arr))
    return total, nonzero


def _interpreter(path: str | os.PathLike):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # pragma: no cover - the tf extra has ai-edge-litert
        from .._keras import tf

        Interpreter = tf.lite.Interpreter  # noqa: N806
    return Interpreter(model_path=str(path))


def tflite_weight_tensors(path: str | os.PathLike) -> list[tuple[str, np.ndarray, str, int | None]]:
    """(tensor name, values, op, per-channel quantized axis or None) of every constant filter tensor (input #1 of
    conv/depthwise/FC ops)."""
    interp = _interpreter(path)
    details = {d["index"]: d for d in interp.get_tensor_details()}
    seen, out = set(), []
    for op in interp._get_ops_details():  # noqa: SLF001 - the only API listing op inputs
        if op["op_name"] not in WEIGHT_OPS or len(op["inputs"]) < 2:
            continue
        idx = int(op["inputs"][1])
        if idx in seen or idx < 0:
            continue
        seen.add(idx)
        try:
            arr = interp.get_tensor(idx)
        except ValueError:
            continue  # not a constant (e.g. computed at run time)
        qdim = details[idx].get("quantization_parameters", {}).get("quantized_dimension", 0)
        scales = details[idx].get("quantization_parameters", {}).get("scales", ())
        out.append((details[idx]["name"], np.array(arr), op["op_name"], int(qdim) if len(scales) > 1 else None))
    return out


def _match_pruned(tensors, pruned_shapes: dict[str, tuple[int, ...]]) -> list[bool]:
    """Which TFLite filter tensors come from the pruned Keras layers: by layer name in the tensor name, else by
    shape (Keras HWIO / IO -> TFLite OHWI / OI)."""
    flags = [False] * len(tensors)
    pending = dict(pruned_shapes)
    for i, (tname, arr, *_) in enumerate(tensors):
        for lname in list(pending):
            if f"/{lname}/" in tname or tname.endswith(f"/{lname}") or f"{lname}/" in tname.split(";")[0]:
                flags[i] = True
                pending.pop(lname)
                break
    for lname, kshape in pending.items():
        want = (kshape[-1], *kshape[:-1]) if len(kshape) == 4 else (kshape[1], kshape[0])
        for i, (_, arr, *_) in enumerate(tensors):
            if not flags[i] and tuple(arr.shape) == tuple(want):
                flags[i] = True
                break
    return flags


@dataclass
class ArtifactStats(JsonMixin):
    """The exported file itself: size, gzip, weights read from its buffers, accuracy of the artifact."""

    path: str
    precision: str | None = None
    file_bytes: int = 0
    gzip_bytes: int = 0
    weights: WeightStats | None = None
    #: file size with the weight buffers replaced by their Huffman code (graph, biases, scales kept as they are)
    huffman_file_bytes: int = 0
    test_accuracy: float | None = None
    test_samples: int = 0
    latency_ms_p50: float | None = None
    latency_note: str | None = None


def artifact_stats(path: str | os.PathLike, *, pruned_shapes: dict | None = None,
                   clustered_shapes: dict | None = None, test=None,
                   precision: str | None = None, detail: bool = True) -> ArtifactStats:
    """Measure a .tflite artifact: sizes, weight sparsity (all filters and the pruned ones), Huffman estimate,
    and top-1 accuracy on ``test`` (a labelled Dataset) run through the TFLite interpreter."""
    path = Path(path)
    blob = path.read_bytes()
    tensors = tflite_weight_tensors(path)
    flags = _match_pruned(tensors, pruned_shapes or {})
    cflags = _match_pruned(tensors, clustered_shapes or {})
    ws = weight_stats([(n, a, f, ax, c) for (n, a, _, ax), f, c in zip(tensors, flags, cflags)], detail)
    st = ArtifactStats(path=str(path), precision=precision, file_bytes=len(blob),
                       gzip_bytes=len(gzip.compress(blob, 9, mtime=0)), weights=ws,
                       huffman_file_bytes=len(blob) - ws.bytes + ws.huffman_bytes)
    if test is not None and test.y is not None and len(test):
        st.test_accuracy = tflite_accuracy(path, test)
        st.test_samples = len(test)
    return st


def tflite_accuracy(path: str | os.PathLike, ds, batch: int = 1) -> float:
    """Top-1 accuracy of a .tflite model on a labelled Dataset (quantizes the input for int8 I/O)."""
    interp = _interpreter(path)
    inp = interp.get_input_details()[0]
    out = interp.get_output_details()[0]
    interp.allocate_tensors()
    correct = 0
    scale, zero = inp.get("quantization", (0.0, 0))
    for i in range(len(ds)):
        x = ds.x[i:i + 1]
        if np.issubdtype(inp["dtype"], np.integer) and scale:
            info = np.iinfo(inp["dtype"])
            x = np.clip(np.rint(x / scale + zero), info.min, info.max).astype(inp["dtype"])
        interp.set_tensor(inp["index"], x.astype(inp["dtype"]))
        interp.invoke()
        correct += int(np.argmax(interp.get_tensor(out["index"])[0]) == ds.y[i])
    return correct / len(ds)


def local_latency(path: str | os.PathLike, runs: int = 50):
    """(p50 ms, note) from the on-device harness (``edgekit.devices.bench`` on ``local``)."""
    from ..devices import bench
    from ..errors import EdgekitError

    try:
        r = bench([str(path)], ["local"], runs=runs, warmup=5)[0]
    except EdgekitError as exc:  # latency is optional in the report; a bug still surfaces
        return None, f"latency not measured: {exc}"
    if r.status != "ok":
        return None, f"latency not measured: {r.status}: {r.error}"
    return r.p50_ms, (f"local {r.runtime} {r.runtime_version or ''}, {r.threads or 'default'} threads, "
                      f"{r.count} runs")


# -- rendering ------------------------------------------------------------------------------------------------------
COLUMNS = ("stage", "val acc", "test acc", "params", "nonzero", "sparsity", "pruned sp.", "clust. uniq/ch", "int8 KB",
           "gzip KB", "huffman KB", "file KB", "file gzip KB")


def _pct(v):
    return "" if v is None else f"{100 * v:.2f}%"


def _kb(v):
    return "" if not v else f"{v / 1024:.1f}"


def rows(report) -> list[list[str]]:
    """Table rows of a PipelineReport (one per stage, then one per artifact)."""
    out = []
    for st in [report.input, *report.stages]:
        w = WeightStats(**{k: v for k, v in (st.weights or {}).items() if k != "per_tensor"}) if isinstance(
            st.weights, dict) else (st.weights or WeightStats())
        out.append([st.stage, _pct(st.val_accuracy), _pct(st.test_accuracy), f"{st.param_count:,}",
                    f"{st.nonzero:,}", _pct(w.sparsity), _pct(w.pruned_sparsity),
                    str(w.clustered_max_unique or ""), _kb(w.bytes), _kb(w.gzip_bytes), _kb(w.huffman_bytes), "", ""])
    for art in report.artifacts:
        w = art.weights or WeightStats()
        out.append([f"artifact {art.precision or ''}".strip(), "", _pct(art.test_accuracy), "", "",
                    _pct(w.sparsity), _pct(w.pruned_sparsity), str(w.clustered_max_unique or ""), _kb(w.bytes),
                    _kb(w.gzip_bytes),
                    _kb(w.huffman_bytes), _kb(art.file_bytes), _kb(art.gzip_bytes)])
    return out


def plot(report, dest: str | os.PathLike) -> Path:
    """PNG: per stage (and per artifact) grouped bars of size (kernels as int8, gzip, Huffman; the artifact's file
    and file gzip) with test accuracy as a line on the right axis. Atomic write."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .._io import atomic_path

    labels, raw, gz, hf, acc = [], [], [], [], []
    rows_ = [report.input, *report.stages]
    if report.stages and report.stages[0].stage == "train":
        rows_ = rows_[1:]  # the input was untrained: its chance-level accuracy would flatten the accuracy axis
    for st in rows_:
        w = st.weights or {}
        labels.append(st.stage)
        raw.append(w.get("bytes", 0) / 1024)
        gz.append(w.get("gzip_bytes", 0) / 1024)
        hf.append(w.get("huffman_bytes", 0) / 1024)
        a = st.test_accuracy if st.test_accuracy is not None else st.val_accuracy
        acc.append(None if a is None else 100 * a)
    file_kb, file_gz = [0.0] * len(labels), [0.0] * len(labels)
    for art in report.artifacts:
        w = art.weights or WeightStats()
        labels.append(f"{art.precision or 'artifact'}\n.tflite")
        raw.append(w.bytes / 1024)
        gz.append(w.gzip_bytes / 1024)
        hf.append(w.huffman_bytes / 1024)
        file_kb.append(art.file_bytes / 1024)
        file_gz.append(art.gzip_bytes / 1024)
        acc.append(None if art.test_accuracy is None else 100 * art.test_accuracy)
    x = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(max(7.0, 1.5 * len(labels) + 3), 5), dpi=110)
    series = [("kernels int8", raw, "tab:blue"), ("kernels gzip", gz, "tab:orange"),
              ("kernels Huffman", hf, "tab:green"), ("file", file_kb, "tab:gray"), ("file gzip", file_gz, "silver")]
    series = [s for s in series if any(s[1])]
    width = 0.8 / len(series)
    for i, (name, vals, color) in enumerate(series):
        bars = ax.bar(x - 0.4 + width * (i + 0.5), vals, width, label=name, color=color)
        for b, v in zip(bars, vals):
            if v:
                ax.annotate(f"{v:.0f}", (b.get_x() + b.get_width() / 2, v), ha="center", va="bottom", fontsize=7)
    ax.set_xticks(x, labels)
    ax.set_ylabel("size (KB)")
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
