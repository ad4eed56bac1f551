"""The one fit loop of every training stage: a streamed tf.data input, per-epoch validation, best-epoch restore,
``BackupAndRestore`` fault tolerance, under the run's tf.distribute strategy.

Validation and test accuracy are computed by :func:`evaluate` over the whole held-out source on each worker
(exact, and identical on every worker, so the best epoch is the same everywhere). With ``backup_dir`` each fit
keeps a checkpoint per epoch (Keras' ``BackupAndRestore``) plus the epoch log and best weights, so a run that is
killed and restarted with the same command resumes from the last completed epoch, with the same report.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .._chance import check
from .._jsonable import JsonMixin
from .._layers import unwrapped, walk_layers
from .._progress import Progress, no_progress
from ..errors import InvalidArgument
from .inputs import as_source, outputs_probabilities, seed_everything
from .._io import write_text_atomic
from ..data import Dataset
from ..data.stream import DEFAULT_SHUFFLE_BUFFER, check_readable, data_errors, tf_dataset
from .distribute import Distribution, StrategyInfo, copy_model

STATE_FILE, BEST_FILE = "edgekit-state.json", "edgekit-best.npz"


@dataclass
class EpochLog(JsonMixin):
    epoch: int
    loss: float
    accuracy: float | None
    val_loss: float | None
    val_accuracy: float | None
    seconds: float


def _f(v) -> float | None:
    return None if v is None else float(v)


def _predict_fn(model):
    """A compiled inference function for ``model`` (cached on it)."""
    fn = getattr(model, "_edgekit_predict", None)
    if fn is None:
        from .._keras import tf

        fn = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
        model._edgekit_predict = fn
    return fn


def evaluate(model, data, batch_size: int = 256, *, from_logits: bool | None = None, with_loss: bool = False):
    """Top-1 accuracy of ``model`` on a labelled source or Dataset, streamed in batches (None without data).

    ``with_loss`` returns ``(cross-entropy, accuracy)``; ``from_logits`` defaults to the model's last activation.
    """
    correct, total, nll, _ = _score(model, data, batch_size, from_logits, with_loss)
    acc = correct / total if total else None
    return ((nll / total if total else None), acc) if with_loss else acc


def evaluate_vs_chance(model, data, batch_size: int = 256):
    """``edgekit._chance.check`` of ``model``'s top-1 accuracy on a labelled source or Dataset: the accuracy, the
    chance accuracy of the labels scored, and whether it is significantly above it (None without data)."""
    correct, total, _, labels = _score(model, data, batch_size, None, False)
    return check(correct / total, labels) if total else None


def _score(model, data, batch_size: int, from_logits: bool | None, with_loss: bool):
    """(correct, total, summed cross-entropy, labels scored) of ``model`` on ``data``."""

    if data is None or len(data) == 0:
        return 0, 0, 0.0, np.zeros(0, np.int64)
    source = as_source(data, model) if isinstance(data, Dataset) else data
    if from_logits is None:
        from_logits = not outputs_probabilities(model)
    step = _predict_fn(model)
    correct = total = 0
    nll = 0.0
    labels = []
    with data_errors(source):
        for x, y in tf_dataset(source, batch_size=batch_size):
            out = np.asarray(step(x))
            y = np.asarray(y)
            labels.append(y.reshape(-1))
            correct += int(np.sum(np.argmax(out, axis=-1) == y))
            total += len(y)
            if with_loss:
                logp = _log_softmax(out) if from_logits else np.log(np.clip(out, 1e-7, 1.0))
                nll += float(-np.sum(logp[np.arange(len(y)), y]))
    return correct, total, nll, (np.concatenate(labels) if labels else np.zeros(0, np.int64))


def recompute_bn_statistics(model, source, samples: int, batch_size: int = 64, seed: int = 0) -> int:
    """Precise BatchNorm: replace every BatchNormalization layer's moving mean and variance by their average over
    ``samples`` training samples run through ``model`` as it is now (training mode, weights untouched). Returns the
    samples used (0: no BatchNorm layer or no data).

    The running averages that training keeps lag behind the weights: in a short run (a few dozen steps, weights
    still moving fast) they describe earlier weights, and a model whose training accuracy is well off chance scores
    at chance in inference mode (Wu & Johnson, "Rethinking 'Batch' in BatchNorm", 2021, PreciseBN).
    """
    from .._keras import layers

    bns = [c for c in (unwrapped(layer) for layer in walk_layers(model)) if isinstance(c, layers.BatchNormalization)]
    if not bns or samples <= 0 or source is None or len(source) == 0:
        return 0
    saved = [b.momentum for b in bns]
    used = 0
    try:
        for i, (x, _) in enumerate(tf_dataset(source, batch_size=batch_size, shuffle=True, seed=seed + 1)):
            for b in bns:   # a cumulative average: batch i weighs 1/(i+1)
                b.momentum = 1.0 - 1.0 / (i + 1)
            model(x, training=True)
            used += int(x.shape[0]) if not isinstance(x, (tuple, list)) else int(x[0].shape[0])
            if used >= samples:
                break
    finally:
        for b, m in zip(bns, saved):
            b.momentum = m
    return used


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z.astype(np.float64) - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


class BestWeights:
    """Keras callback factory: per-epoch validation (exact, streamed), epoch log, best weights, progress, and (with
    ``state_dir``) the log and best weights kept on disk for a restarted run (written by the chief, read by all)."""

    def __new__(cls, task: str, epochs: int, progress: Progress, log: list, val=None, *, monitor: bool = True,
                from_logits: bool | None = None, eval_batch: int = 256, state_dir: Path | None = None,
                chief: bool = True, target=None, shadow=None, before_validation=None):
        from .._keras import keras

        class _Cb(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.best = -math.inf
                self.best_epoch: int | None = None
                self.best_weights = None
                self.resumed_from = 0
                self._first = True
                self._t0 = time.perf_counter()

            def on_train_begin(self, logs=None):
                if state_dir is not None and (state_dir / STATE_FILE).is_file():
                    self._load()

            def on_epoch_begin(self, epoch, logs=None):
                self._t0 = time.perf_counter()
                if self._first:  # Keras starts at the restored epoch: forget what is redone from here
                    self._first = False
                    log[:] = [e for e in log if e.epoch <= epoch]
                    if self.best_epoch is not None and self.best_epoch > epoch:
                        self.best, self.best_epoch, self.best_weights = -math.inf, None, None
                    self.resumed_from = epoch

            def on_epoch_end(self, epoch, logs=None):
                logs = logs or {}
                if before_validation is not None:
                    before_validation(self.model)
                val_loss = val_acc = None
                if val is not None:
                    judged = target if target is not None else self.model
                    if shadow is not None:  # a plain copy: inference outside the strategy (QAT hangs inside)
                        shadow.set_weights(judged.get_weights())
                        judged = shadow
                    val_loss, val_acc = evaluate(judged, val, eval_batch, from_logits=from_logits, with_loss=True)
                log.append(EpochLog(epoch + 1, float(logs.get("loss", float("nan"))), _f(logs.get("accuracy")),
                                    val_loss, val_acc, round(time.perf_counter() - self._t0, 3)))
                score = float(val_acc) if (monitor and val_acc is not None) else float(epoch)
                if score > self.best:
                    self.best, self.best_epoch = score, epoch + 1
                    self.best_weights = [w.copy() for w in self.model.get_weights()]
                if state_dir is not None and chief:
                    self._save()
                progress(task, epoch + 1, epochs)

            def _save(self):
                state_dir.mkdir(parents=True, exist_ok=True)
                if self.best_weights is not None and self.best_epoch == log[-1].epoch:
                    tmp = state_dir / f".{BEST_FILE}.part.npz"
                    np.savez(tmp, *self.best_weights)
                    os.replace(tmp, state_dir / BEST_FILE)
                write_text_atomic(state_dir / STATE_FILE, json.dumps(
                    {"task": task, "history": [e.to_dict() for e in log], "best": self.best,
                     "best_epoch": self.best_epoch}))

            def _load(self):
                state = json.loads((state_dir / STATE_FILE).read_text())
                log[:] = [EpochLog(**e) for e in state["history"]]
                self.resumed_from = len(log)
                if state.get("best_epoch") and (state_dir / BEST_FILE).is_file():
                    with np.load(state_dir / BEST_FILE) as npz:
                        self.best_weights = [npz[f"arr_{i}"] for i in range(len(npz.files))]
                    self.best, self.best_epoch = float(state["best"]), int(state["best_epoch"])

        return _Cb()


def fit(model, train, val, *, epochs: int, batch_size: int, task: str, progress: Progress = no_progress,
        callbacks: Sequence = (), restore_best: bool = True, seed: int = 0, augment: bool = False, dist=None,
        backup_dir: str | os.PathLike | None = None, shuffle_buffer: int | None = None,
        from_logits: bool | None = None, eval_model=None, shadow=None, precise_bn: int = 0):
    """``model.fit`` on the streamed ``train`` source (shuffled every epoch, seeded), validating on ``val`` after
    every epoch and restoring the best epoch's weights (``restore_best``); returns ``(epoch log, best callback)``.

    ``model`` must be compiled, inside ``dist``'s scope when distributed. ``backup_dir`` (a folder for this fit
    alone) adds ``BackupAndRestore`` and keeps the epoch log and best weights there, so a restarted run resumes.
    ``eval_model`` is the model validated (default ``model``; e.g. the student inside a distiller); under a
    distribution strategy a plain model built like it (``shadow``, default a clone) is validated instead, with the
    trained weights copied in every epoch (inference inside the strategy's scope can hang, e.g. with QAT).
    ``precise_bn`` (samples; plain models on one device) recomputes the BatchNorm statistics at the end of every
    epoch, before validation (:func:`recompute_bn_statistics`).
    """
    from .._keras import keras

    if epochs < 0:
        raise InvalidArgument(f"epochs must be >= 0; received {epochs}")
    if batch_size <= 0:
        raise InvalidArgument(f"batch_size must be positive; received {batch_size}")
    log: list[EpochLog] = []
    if epochs == 0:
        return log, None
    check_readable(train)  # else an all-unreadable source gives Keras an empty stream ("Empty logs")
    dist = dist or Distribution(None, StrategyInfo("one-device"))
    state_dir = Path(backup_dir) if backup_dir is not None else None
    target = eval_model if eval_model is not None else model
    if not dist.distributed or val is None:
        shadow = None
    elif shadow is None:
        shadow = copy_model(target)
    recompute = None
    if precise_bn and not dist.distributed:
        def recompute(m):
            recompute_bn_statistics(m, train, precise_bn, batch_size, seed)
    best = BestWeights(task, epochs, progress, log, val, monitor=val is not None, from_logits=from_logits,
                       state_dir=state_dir, chief=dist.chief, target=target, shadow=shadow,
                       before_validation=recompute)
    cbs = [best]
    if state_dir is not None:
        cbs.append(keras.callbacks.BackupAndRestore(str(state_dir), delete_checkpoint=False))
    seed_everything(seed)
    data = dist.train_data(train, batch_size=batch_size, seed=seed, augment=augment,
                           shuffle_buffer=shuffle_buffer or DEFAULT_SHUFFLE_BUFFER)
    progress(task, 0, epochs)
    with data_errors(train, val), dist.cluster_errors():
        model.fit(data, epochs=epochs, steps_per_epoch=dist.steps(len(train), batch_size), verbose=0,
                  callbacks=[*cbs, *callbacks])
    if restore_best and best.best_weights is not None:
        model.set_weights(best.best_weights)
    return log, best
