"""tf.distribute for every training stage: ``strategy="auto"|"one-device"|"mirrored"|"multi-worker"``.

- ``one-device``: TensorFlow's default strategy (one device, no replication).
- ``mirrored``: ``MirroredStrategy`` over all local GPUs; without GPUs over the logical CPU devices (one unless the
  process configured more with ``tf.config.set_logical_device_configuration``).
- ``multi-worker``: ``MultiWorkerMirroredStrategy`` with the cluster in ``TF_CONFIG``; every worker runs the same
  command, reads its own shard of the data (split before decoding) and the chief alone writes artifacts.
- ``auto``: multi-worker when ``TF_CONFIG`` names more than one task, else mirrored with several GPUs, else
  one-device.

Models live in the strategy's scope only while they train: :meth:`Distribution.to_scope` copies a plain model in,
:meth:`Distribution.copy_back` puts the trained weights into the plain model (or into a plain twin built the same
way, for tfmot-wrapped models), so validation, saving and export never see distributed variables. ``MultiWorkerMirroredStrategy`` must be created before TensorFlow runs anything in the process, so
:func:`setup` is called first thing by ``train``/``compress``; it is created once per process.
"""
from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass
from .._io import json_loads
from .._jsonable import JsonMixin
from ..errors import EdgekitError, InvalidArgument, did_you_mean

from ..specs.train import STRATEGIES
from ..data.stream import tf_dataset

_MULTI_WORKER = None  # the process's MultiWorkerMirroredStrategy (TF allows one)


class ClusterError(EdgekitError):
    """A multi-worker cluster failed (a worker stopped or cannot be reached)."""


@dataclass
class StrategyInfo(JsonMixin):
    """What recipes, reports and manifests record about the distribution of a training run."""

    strategy: str
    replicas: int = 1
    workers: int = 1
    worker: int = 0
    chief: bool = True
    requested: str = "auto"


def cluster_from_env() -> dict | None:
    """The parsed ``TF_CONFIG`` (None when unset); a malformed one is an InvalidArgument."""
    raw = os.environ.get("TF_CONFIG", "").strip()
    if not raw:
        return None
    try:
        cfg = json_loads(raw)
        cluster, task = cfg["cluster"], cfg["task"]
        tasks = {kind: list(addrs) for kind, addrs in cluster.items()}
        kind, index = str(task["type"]), int(task["index"])
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidArgument(f"TF_CONFIG is not a valid cluster description ({exc})",
                              hint='set TF_CONFIG=\'{"cluster": {"worker": ["host1:port", "host2:port"]}, '
                                   '"task": {"type": "worker", "index": 0}}\'') from None
    if kind not in tasks or not 0 <= index < len(tasks[kind]):
        raise InvalidArgument(f"TF_CONFIG task {kind}:{index} is not in its cluster ({', '.join(tasks)})",
                              hint="task.type must be a job of the cluster and task.index one of its positions")
    return {"tasks": tasks, "type": kind, "index": index,
            "size": sum(len(v) for k, v in tasks.items() if k in ("chief", "worker"))}


class Distribution:
    """A resolved strategy and what training needs from it (scope, data sharding, chief, model copies)."""

    def __init__(self, strategy, info: StrategyInfo):
        self.strategy, self.info = strategy, info

    @property
    def distributed(self) -> bool:
        return self.strategy is not None

    @property
    def chief(self) -> bool:
        return self.info.chief

    @property
    def replicas(self) -> int:
        return self.info.replicas

    def scope(self):
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()

    def check_batch(self, batch_size: int) -> None:
        if batch_size % self.replicas:
            raise InvalidArgument(f"batch_size {batch_size} is not divisible by the {self.replicas} replicas of "
                                  f"{self.info.strategy}",
                                  hint=f"use a multiple of {self.replicas} (--batch-size is the global batch)")

    def steps(self, samples: int, batch_size: int) -> int:
        """Optimizer steps of one epoch over ``samples`` with the global ``batch_size``."""
        return max(1, math.ceil(samples / batch_size))

    def train_data(self, source, *, batch_size: int, seed: int, augment: bool, shuffle_buffer: int):
        """The endless, shuffled training stream (per-worker shards and per-replica batches when distributed)."""

        self.check_batch(batch_size)
        kw = dict(shuffle=True, seed=seed, augment=augment, repeat=True, shuffle_buffer=shuffle_buffer)
        if self.strategy is None:
            return tf_dataset(source, batch_size=batch_size, **kw)

        def per_worker(ctx):
            return tf_dataset(source, batch_size=ctx.get_per_replica_batch_size(batch_size),
                              shard=(ctx.num_input_pipelines, ctx.input_pipeline_id), **kw)

        return self.strategy.distribute_datasets_from_function(per_worker)

    def to_scope(self, model):
        """``model`` as a copy whose variables live in the strategy's scope (the model itself when not distributed)."""
        if self.strategy is None:
            return model
        with self.scope():
            return copy_model(model)

    def copy_back(self, plain, trained):
        """Put the weights of ``trained`` (a copy made by :meth:`to_scope`, or a model built like ``plain`` in the
        scope) into the plain model ``plain``; returns ``plain``. Nothing to do when not distributed."""
        if trained is not plain:
            plain.set_weights(trained.get_weights())
        return plain

    @contextlib.contextmanager
    def cluster_errors(self):
        """Translate a failed peer into a ClusterError that says how to resume."""
        if self.info.workers <= 1:
            yield
            return
        from .._keras import tf

        try:
            yield
        except (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.CancelledError,
                tf.errors.AbortedError) as exc:
            first = str(getattr(exc, "message", exc)).strip().splitlines()
            detail = next((ln.strip() for ln in first if "/job:" in ln), first[0] if first else type(exc).__name__)
            raise ClusterError(f"the multi-worker cluster failed on worker {self.info.worker}: {detail}",
                               hint="restart every worker with the same command; with --backup-dir the training "
                                    "resumes from the last completed epoch") from None


def copy_model(model):
    """clone_model + the same weights (a plain model; tfmot-wrapped models are rebuilt by their stage instead)."""
    from .._keras import keras

    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone


def setup(strategy: str = "auto") -> Distribution:
    """Resolve ``strategy`` (one of :data:`STRATEGIES`) for this process."""
    global _MULTI_WORKER
    name = strategy or "auto"
    if name not in STRATEGIES:  # the spec validates this; a direct call gets the same error
        raise InvalidArgument(f"unknown strategy {strategy!r}",
                              hint=did_you_mean(name, STRATEGIES) or f"use one of {', '.join(STRATEGIES)}")
    cluster = cluster_from_env()
    if name == "auto":
        name = "multi-worker" if cluster and cluster["size"] > 1 else (
            "mirrored" if _gpu_count() > 1 else "one-device")
    if name == "one-device":
        return Distribution(None, StrategyInfo("one-device", requested=strategy))
    from .._keras import tf

    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        st = tf.distribute.MirroredStrategy(devices)
        return Distribution(st, StrategyInfo("mirrored", st.num_replicas_in_sync, requested=strategy))
    if cluster is None:
        raise InvalidArgument("strategy multi-worker needs the cluster in TF_CONFIG",
                              hint='on each worker: TF_CONFIG=\'{"cluster": {"worker": ["10.0.0.1:12345", '
                                   '"10.0.0.2:12345"]}, "task": {"type": "worker", "index": I}}\' and the same '
                                   "command; or use --strategy one-device/mirrored on one machine")
    if _MULTI_WORKER is None:
        try:
            _MULTI_WORKER = tf.distribute.MultiWorkerMirroredStrategy()
        except (RuntimeError, ValueError) as exc:
            raise InvalidArgument(f"cannot start the multi-worker strategy: {str(exc).splitlines()[0]}",
                                  hint="start it in a fresh process, before TensorFlow runs anything (edgekit "
                                       "train/compress do this for you)") from None
    st = _MULTI_WORKER
    return Distribution(st, _multi_worker_info(st, cluster, strategy))


def _multi_worker_info(st, cluster: dict, requested: str) -> StrategyInfo:
    resolver = st.cluster_resolver
    workers = int(st.extended._num_workers) if hasattr(st.extended, "_num_workers") else cluster["size"]
    kind, index = resolver.task_type, int(resolver.task_id or 0)
    position = index + (1 if kind == "worker" and "chief" in cluster["tasks"] else 0)
    return StrategyInfo("multi-worker", st.num_replicas_in_sync, workers, position,
                        bool(st.extended.should_checkpoint), requested)


def _gpu_count() -> int:
    from .._keras import tf

    return len(tf.config.list_physical_devices("GPU"))
