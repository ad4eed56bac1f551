"""Reading an exported artifact for the compression report: its size, gzip size, the weights in its constant
buffers (so sparsity and clusters are the ones the device gets) and its top-1 accuracy, run through
:mod:`edgekit.runtimes` like every other artifact run on this machine."""
from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._jsonable import JsonMixin
from .weights import WeightStats, weight_stats
from ..exporters.verify import artifact_accuracy
from ..packaging.build import build as build_package
from ..devices.bench import local_latency  # noqa: F401 - one home (devices); the pipeline reads it here

#: TFLite ops whose input #1 is a weight (filter) tensor
WEIGHT_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "CONV_3D")


def tflite_weight_tensors(path: str | os.PathLike) -> list[tuple[str, np.ndarray, str, int | None]]:
    """(tensor name, values, op, per-channel quantized axis or None) of every constant filter tensor (input #1 of
    conv/depthwise/FC ops)."""
    from ..runtimes import load

    interp = load(path, runtime="litert").interpreter  # the session's interpreter (tensors allocated)
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
    #: bytes of its update package (``edgekit package``: codebook indices, zero masks, entropy-coded; exact restore)
    package_bytes: int = 0
    test_accuracy: float | None = None
    test_samples: int = 0
    #: test_accuracy against the chance accuracy of the test labels (edgekit._chance.ChanceCheck as a dict)
    chance: dict | None = None
    p50_ms: float | None = None
    latency_note: str | None = None


def _package_bytes(blob: bytes, path: Path) -> int:
    return len(build_package(blob, "onnx" if path.suffix.lower() == ".onnx" else "tflite", name=path.name)[0])


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
                       huffman_file_bytes=len(blob) - ws.bytes + ws.huffman_bytes,
                       package_bytes=_package_bytes(blob, path))
    if test is not None and test.labelled and len(test):
        st.test_accuracy, st.test_samples = artifact_accuracy(path, test, counted=True)
    return st
