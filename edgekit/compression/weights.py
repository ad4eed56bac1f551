"""Weight statistics of the Deep Compression view (Han et al., 2016, https://arxiv.org/abs/1510.00149).

The size of a set of kernels as int8 (simulated the way the TFLite converter quantizes them: symmetric, per output
channel, zero stays zero), gzipped, and Huffman-coded: the real Huffman code length of each weight tensor's values
(sum of count x code length) plus a codebook (value + 8-bit code length per symbol), as in Deep Compression (which
also Huffman-codes sparse indices; here zeros are coded as values, no index is stored). Sparsity overall and over
the pruned tensors, distinct values per channel of the clustered ones.
"""
from __future__ import annotations

import gzip
import heapq
import io
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from .._jsonable import JsonMixin
from .._layers import walk_layers


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
    for layer in walk_layers(model):
        inner = getattr(layer, "layer", layer)
        if isinstance(inner, layers.DepthwiseConv2D):
            out.append((inner.name, _kernel_value(layer, inner, "depthwise_kernel"), "depthwise"))
        elif isinstance(inner, (layers.Conv2D, layers.Dense)):
            out.append((inner.name, _kernel_value(layer, inner, "kernel"),
                        "dense" if isinstance(inner, layers.Dense) else "conv"))
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
