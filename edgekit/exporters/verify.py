"""Verification, the Keras side: run the Keras model and the artifact in its runtime on held-out samples; the
judging (pairing, SQNR, per-precision tolerances, verdict, result types) is :mod:`edgekit.verification`'s. Also the
one home of an artifact's top-1 accuracy (:func:`artifact_accuracy`, :func:`artifact_top1`): compress's report and
the doctor's ladder call it.

Converters reorder inputs and outputs (the TFLite converter sorts them by name: MTCNN's ONet comes out as prob,
bbox, landmarks), so inputs are fed and outputs paired by model-level name, else unique shape, else position.
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from .._progress import Progress, no_progress
from ..errors import InferenceError, InvalidArgument
from ..runtimes import load
from ..verification import Verification, pair, top1_accuracy


def classifier_outputs(model) -> list[bool]:
    """Per Keras output: produced by a softmax (a Softmax layer, or a layer whose activation is softmax, maybe
    behind Reshape/Flatten/Activation layers)."""
    flags = []
    for t in model.outputs:
        layer, hops = getattr(t, "_keras_history", (None,))[0], 0
        found = False
        while layer is not None and hops < 4:
            act = getattr(layer, "activation", None)
            if type(layer).__name__ == "Softmax" or getattr(act, "__name__", "") == "softmax":
                found = True
                break
            if type(layer).__name__ not in ("Reshape", "Flatten", "Activation", "Identity"):
                break
            inbound = layer.inbound_nodes[0].inbound_layers if getattr(layer, "inbound_nodes", None) else None
            layer = inbound if not isinstance(inbound, (list, tuple)) else (inbound[0] if len(inbound) == 1 else None)
            hops += 1
        flags.append(found)
    return flags


def _batch_size(xs: Sequence[np.ndarray], budget: int = 64 << 20) -> int:
    """Samples per Keras batch: 32, fewer when inputs are large (a 4096x4096x3 sample is 192 MiB)."""
    per_sample = sum(int(np.prod(x.shape[1:])) * 4 for x in xs) or 1
    return int(max(1, min(32, budget // per_sample)))


def keras_outputs(model, xs: np.ndarray | Sequence[np.ndarray]) -> list[np.ndarray]:
    """Keras outputs (Keras order) on ``xs`` (one array per Keras input, or one array)."""
    xs = [xs] if isinstance(xs, np.ndarray) else list(xs)
    outs = model.predict(xs if len(xs) > 1 else xs[0], batch_size=_batch_size(xs), verbose=0)
    return [np.asarray(o) for o in (outs if isinstance(outs, (list, tuple)) else [outs])]


def feed_order(session, xs: Sequence[np.ndarray], input_names: Sequence[str]) -> list[np.ndarray]:
    """``xs`` (one array per Keras input, named ``input_names``) in the artifact's input order: paired by name
    (TFLite SignatureDef / ONNX input names are the Keras input names), else unique shape, else position."""
    order = pair(list(input_names), [x.shape[1:] for x in xs], [i.key or i.name for i in session.inputs],
                 [list(i.shape[1:]) for i in session.inputs], what="input")
    feed: list[np.ndarray] = [xs[0]] * len(xs)
    for i, j, _ in order:
        feed[j] = xs[i]
    return feed


def run_artifact(session, xs: np.ndarray | Sequence[np.ndarray], progress, batch: int | None = None,
                 input_names: Sequence[str] | None = None) -> list[np.ndarray]:
    """Float outputs of ``session`` (its output order) on ``xs`` (one array per Keras input, see
    :func:`feed_order`). TFLite runs one sample at a time, onnxruntime in batches of 32 (fewer for large inputs)."""
    xs = [xs] if isinstance(xs, np.ndarray) else list(xs)
    feed = feed_order(session, xs, input_names if input_names is not None else [f"input_{i}" for i in range(len(xs))])
    n = len(xs[0])
    shape = list(getattr(session.inputs[0], "shape", None) or [None]) if session.name == "litert" else [None]
    fixed = shape[0] if shape and isinstance(shape[0], int) and shape[0] > 1 else None  # a .tflite with --batch N
    batch = batch or fixed or (1 if session.name == "litert" else _batch_size(xs))
    chunks: list[list[np.ndarray]] = []
    for i in range(0, n, batch):
        part = [x[i:i + batch] for x in feed]
        short = batch - len(part[0]) if fixed else 0
        if short:  # the last samples, padded to the file's fixed batch with copies of the last one
            part = [np.concatenate([p, np.repeat(p[-1:], short, axis=0)]) for p in part]
        outs = session.predict(*part)
        chunks.append([o[:len(o) - short] for o in outs] if short else outs)
        progress(f"verifying {session.path.name}", min(i + batch, n), n)
    return [np.concatenate([c[k] for c in chunks]) for k in range(len(chunks[0]))]


def paired_reference(v: Verification, ref: Sequence[np.ndarray], ref_names: Sequence[str],
                     outputs) -> list[np.ndarray]:
    """The Keras outputs in the artifact's output order, as :func:`edgekit.verification.verify_outputs` paired them
    (Keras order if it could not pair them)."""
    by_art = {c.artifact_name: c.name for c in v.outputs}
    by_name = dict(zip(ref_names, ref))
    if len(by_art) != len(outputs) or any(o.name not in by_art for o in outputs):
        return list(ref)
    return [by_name[by_art[o.name]] for o in outputs]


def classifier_top1(outputs: Sequence[np.ndarray], where: str) -> np.ndarray:
    """Top-1 of the first output, which must be a classifier output (N, classes; unit dimensions squeezed)."""
    first = np.asarray(outputs[0])
    if first.ndim > 2 and all(d == 1 for d in first.shape[1:-1]):
        first = first.reshape(len(first), first.shape[-1])
    if first.ndim != 2 or first.shape[1] < 2:
        raise InvalidArgument(f"{where} has output shape {tuple(first.shape[1:])}; top-1 accuracy needs a classifier "
                              "output (batch, classes)",
                              hint="use a classification model (softmax/logits as its first output)")
    return first.argmax(axis=1)


def artifact_top1(session, xs: np.ndarray | Sequence[np.ndarray], progress: Progress = no_progress,
                  where: str | None = None) -> np.ndarray:
    """Top-1 predictions of an artifact ``session`` (:func:`edgekit.runtimes.load`) on ``xs``: batches of 64 where
    the file takes them, else one sample at a time (a graph with a fixed batch of 1)."""
    try:
        outs = run_artifact(session, xs, progress, batch=64)
    except (InvalidArgument, InferenceError):
        outs = run_artifact(session, xs, progress, batch=1)
    return classifier_top1(outs, where or session.path.name)


def artifact_accuracy(path: str | os.PathLike, data, *, batch: int = 256, threads: int | None = None,
                      counted: bool = False):
    """Top-1 accuracy (a fraction 0..1) of the artifact at ``path`` in its runtime on labelled data: a Dataset or
    data source (``batches(n)`` of ``(x, y)``; a source streams), read ``batch`` samples at a time; integer I/O is
    quantized/dequantized by the session. ``counted``: ``(accuracy, samples)``."""
    session = load(path, threads=threads)
    correct = total = 0
    for xs, ys in data.batches(batch):
        top1 = artifact_top1(session, list(xs) if isinstance(xs, (list, tuple)) else xs)
        correct += int(round(top1_accuracy(top1, ys) * len(ys)))
        total += len(ys)
    acc = correct / total if total else float("nan")
    return (acc, total) if counted else acc
