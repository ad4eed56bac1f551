"""Training and fine-tuning on the data module: seeded train/validation split, per-epoch progress, best checkpoint.

Small-data defaults that work: Adam, BatchNorm momentum 0.9 (tf-keras models use 0.99, whose moving statistics
lag far behind the weights in a short run and make validation accuracy look random), best weights restored.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .._jsonable import JsonMixin
from .._layers import unwrapped, walk_layers
from .._progress import Progress, no_progress
from .._spec import takes_spec
from ..errors import DataError, InvalidArgument
from ..registry import Registry
from ..specs.train import TrainSpec


@dataclass
class EpochLog(JsonMixin):
    epoch: int
    loss: float
    accuracy: float | None
    val_loss: float | None
    val_accuracy: float | None
    seconds: float


@dataclass
class TrainReport(JsonMixin):
    """What a training run did: data sizes, per-epoch history, the best epoch and where it was saved."""

    model: str
    data: str
    train_samples: int
    val_samples: int
    epochs: int
    batch_size: int
    lr: float
    seed: int
    bn_momentum: float | None
    history: list[EpochLog] = field(default_factory=list)
    best_epoch: int | None = None
    best_val_accuracy: float | None = None
    test_accuracy: float | None = None
    test_samples: int = 0
    checkpoint: str | None = None
    saved: str | None = None
    seconds: float = 0.0


def resolve_model(model: Any, **options: Any):
    """A keras.Model as given, or a zoo name / model file built by ``edgekit.models.create``; a Keras 3 model is
    translated to tf-keras (training and tfmot need it)."""
    from ..models import resolve

    return resolve(model, tf_keras=True, **options)


def preprocess_for(model: Any, preprocess: str | None = None) -> str:
    """The preprocessing the model expects (``edgekit.models.preprocess_mode``), unless given explicitly."""
    if preprocess is not None:
        return preprocess
    from .. import models

    return models.preprocess_mode(model)


def input_shape_of(model) -> tuple[int, int, int]:
    shape = model.input_shape
    if isinstance(shape, list):
        raise InvalidArgument(f"model {model.name!r} has {len(shape)} inputs; edgekit trains single-input image models")
    dims = tuple(shape[1:])
    if len(dims) != 3 or any(d is None for d in dims):
        raise InvalidArgument(f"model {model.name!r} needs a fixed (H, W, C) input to train; it has {shape}",
                              hint="build it with --resolution and --input-channels")
    return tuple(int(d) for d in dims)  # type: ignore[return-value]


def resolve_data(data: Any, model, *, split: str = "train", limit: int | None = None, seed: int = 0,
                 preprocess: str | None = None):
    """A :class:`edgekit.data.Dataset` as given, or a data source loaded at the model's input shape."""
    from .. import data as data_mod

    if isinstance(data, data_mod.Dataset):
        ds = data if limit is None or limit >= len(data) else data.take(limit, seed)
    elif isinstance(data, (str, os.PathLike)):
        ds = data_mod.load(data, input_shape=input_shape_of(model), preprocess_mode=preprocess_for(model, preprocess),
                           split=split, limit=limit, seed=seed)
    else:
        raise InvalidArgument(f"data must be a source (dataset name, folder, .npz) or a Dataset; "
                              f"received {type(data).__name__}")
    if ds.y is None:
        raise DataError(f"{ds.source} has no labels; training needs labelled data",
                        hint="use a folder with one sub-folder per class, or an .npz with 'x' and 'y'")
    want = input_shape_of(model)
    if tuple(ds.x.shape[1:]) != want:
        raise DataError(f"{ds.source} gives inputs of shape {tuple(ds.x.shape[1:])}, model {model.name!r} takes {want}")
    return ds


def test_split(data: Any, model, *, limit: int | None = None, seed: int = 0, preprocess: str | None = None):
    """The built-in dataset's ``test`` split for ``data`` when it has one, else None."""
    from .. import data as data_mod

    if isinstance(data, (str, os.PathLike)) and str(data) in data_mod.DATASETS:
        if "test" in data_mod.DATASETS.entry(str(data)).meta.get("splits", ()):
            return resolve_data(data, model, split="test", limit=limit, seed=seed, preprocess=preprocess)
    return None


def split_data(data: Any, model, *, val_fraction: float = 0.1, val_data: Any = None, limit: int | None = None,
               test_limit: int | None = None, seed: int = 0, preprocess: str | None = None):
    """(all, train, validation or None, test or None) Datasets for ``model``: ``val_data`` or a seeded
    ``val_fraction`` hold-out of ``data``, and the built-in dataset's test split when it has one."""
    full = resolve_data(data, model, limit=limit, seed=seed, preprocess=preprocess)
    check_classes(model, full)
    if val_data is not None:
        ds_train, ds_val = full, resolve_data(val_data, model, seed=seed, preprocess=preprocess)
    elif val_fraction:
        ds_train, ds_val = full.split(val_fraction, seed)
    else:
        ds_train, ds_val = full, None
    return full, ds_train, ds_val, test_split(data, model, limit=test_limit, seed=seed, preprocess=preprocess)


def set_bn_momentum(model, momentum: float | None) -> int:
    """Set ``momentum`` on every BatchNormalization layer (nested models included); returns how many."""
    from .._keras import layers

    if momentum is None:
        return 0
    if not 0.0 <= momentum < 1.0:
        raise InvalidArgument(f"bn_momentum must be in [0, 1); received {momentum}")
    count = 0
    for layer in walk_layers(model):
        cand = unwrapped(layer)
        if isinstance(cand, layers.BatchNormalization):
            cand.momentum = momentum
            count += 1
    return count


def seed_everything(seed: int) -> None:
    from .._keras import keras

    keras.utils.set_random_seed(int(seed))


#: optimizer name -> factory(keras, learning_rate); the choices of every ``optimizer=`` (checked when a spec is built)
OPTIMIZERS: Registry[Callable[[Any, float], Any]] = Registry("optimizer")
OPTIMIZERS.add("adam", lambda keras, lr: keras.optimizers.Adam(learning_rate=lr))
OPTIMIZERS.add("sgd", lambda keras, lr: keras.optimizers.SGD(learning_rate=lr, momentum=0.9),
               description="SGD with momentum 0.9")
OPTIMIZERS.add("rmsprop", lambda keras, lr: keras.optimizers.RMSprop(learning_rate=lr))


def make_optimizer(name: str, lr: float):
    """A fresh keras optimizer ``name`` (see OPTIMIZERS) with learning rate ``lr``."""
    from .._keras import keras

    if not lr > 0:
        raise InvalidArgument(f"lr must be positive; received {lr}")
    return OPTIMIZERS.get(name)(keras, lr)


def compile_for_training(model, lr: float, optimizer: str = "adam") -> None:
    """Compile with sparse categorical cross-entropy and accuracy (softmax or logits outputs)."""
    from .._keras import keras

    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=not outputs_probabilities(model))
    model.compile(optimizer=make_optimizer(optimizer, lr), loss=loss, metrics=["accuracy"])


def outputs_probabilities(model) -> bool:
    """True when the model's last layer applies softmax (its outputs are probabilities, not logits)."""
    last = model.layers[-1]
    inner = getattr(last, "layer", last)
    act = getattr(inner, "activation", None)
    act = getattr(act, "activation", act)  # tfmot's QAT wraps it in a QuantizeAwareActivation
    return getattr(act, "__name__", "") == "softmax"


def check_classes(model, ds) -> None:
    out = model.output_shape
    classes = int(out[-1]) if out and out[-1] else None
    top = int(ds.y.max()) + 1 if len(ds.y) else 0
    if classes is not None and top > classes:
        raise DataError(f"{ds.source} has labels up to {top - 1} but model {model.name!r} outputs {classes} classes",
                        hint=f"build the model with --classes {ds.num_classes or top}")


def check_model_output(dest: str | os.PathLike, option: str) -> None:
    """Before any training: ``dest`` must be a .keras/.h5 path whose folder can be written."""
    from .._io import ensure_writable_dir

    if Path(dest).suffix not in (".keras", ".h5"):
        raise InvalidArgument(f"{option} {str(dest)!r} must end in .keras or .h5")
    try:
        ensure_writable_dir(Path(dest).expanduser().parent)
    except InvalidArgument as exc:
        raise InvalidArgument(f"cannot write {option} {dest}: {exc.message}",
                              hint=f"choose another path for {option}") from exc


def save_model_atomic(model, dest: str | os.PathLike) -> Path:
    """Save a Keras model to ``dest`` (.keras or .h5) via a temp file in the same folder, then rename."""
    dest = Path(dest)
    if dest.suffix not in (".keras", ".h5"):
        raise InvalidArgument(f"model output {str(dest)!r} must end in .keras or .h5")
    from .._io import atomic_path

    with atomic_path(dest, suffix=f".part{dest.suffix}") as tmp:  # created by the save: the umask's permissions
        model.save(tmp)
    return dest


class BestWeights:
    """Keras callback factory: keeps the best epoch's weights (by val_accuracy), reports progress per epoch."""

    def __new__(cls, task: str, epochs: int, progress: Progress, log: list, monitor: bool = True):
        from .._keras import keras

        class _Cb(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.best = -math.inf
                self.best_epoch: int | None = None
                self.best_weights = None
                self._t0 = time.perf_counter()

            def on_epoch_begin(self, epoch, logs=None):
                self._t0 = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                logs = logs or {}
                val = logs.get("val_accuracy")
                log.append(EpochLog(epoch + 1, float(logs.get("loss", float("nan"))),
                                    _f(logs.get("accuracy")), _f(logs.get("val_loss")), _f(val),
                                    round(time.perf_counter() - self._t0, 3)))
                score = float(val) if (monitor and val is not None) else float(epoch)
                if score > self.best:
                    self.best, self.best_epoch = score, epoch + 1
                    self.best_weights = [w.copy() for w in self.model.get_weights()]
                progress(task, epoch + 1, epochs)

        return _Cb()


def _f(v) -> float | None:
    return None if v is None else float(v)


def fit(model, ds_train, ds_val, *, epochs: int, batch_size: int, task: str, progress: Progress,
        callbacks: Sequence = (), restore_best: bool = True, seed: int = 0):
    """model.fit with seeded shuffling, per-epoch progress and best-weight restore; returns (history, best)."""
    if epochs < 0:
        raise InvalidArgument(f"epochs must be >= 0; received {epochs}")
    if batch_size <= 0:
        raise InvalidArgument(f"batch_size must be positive; received {batch_size}")
    log: list[EpochLog] = []
    if epochs == 0:
        return log, None
    best = BestWeights(task, epochs, progress, log, monitor=ds_val is not None)
    seed_everything(seed)
    progress(task, 0, epochs)
    model.fit(ds_train.x, ds_train.y, batch_size=batch_size, epochs=epochs, shuffle=True, verbose=0,
              validation_data=(ds_val.x, ds_val.y) if ds_val is not None else None,
              callbacks=[best, *callbacks])
    if restore_best and best.best_weights is not None:
        model.set_weights(best.best_weights)
    return log, best


def evaluate(model, ds, batch_size: int = 256) -> float | None:
    """Top-1 accuracy of ``model`` on a labelled Dataset (None when there is no data)."""
    if ds is None or len(ds) == 0:
        return None
    probs = model.predict(ds.x, batch_size=batch_size, verbose=0)
    return float(np.mean(np.argmax(probs, axis=-1) == ds.y))


@takes_spec(TrainSpec, positional=("model", "data"))
def train(spec: TrainSpec, *, progress: Progress = no_progress, callbacks: Sequence = ()):
    """Train (or fine-tune) ``model`` on ``data``; returns ``(model, TrainReport)``. Arguments: :class:`TrainSpec`.

    ``model`` is a keras.Model, a zoo name or a model file (the model options go to ``edgekit.models.create``).
    ``data`` is a data source (``fashion-mnist``, an image folder with one sub-folder per class, an ``.npz``) or
    a Dataset; ``val_fraction`` of it is held out (seeded) unless ``val_data`` is given. The best epoch by
    validation accuracy is restored (``restore_best``) and saved atomically to ``checkpoint_dir/best.keras``
    when given; ``out`` saves the final model. Built-in datasets with a test split also report test accuracy.
    """
    s = spec
    data, epochs, batch_size, lr, optimizer, seed = s.data, s.epochs, s.batch_size, s.lr, s.optimizer, s.seed
    bn_momentum, checkpoint_dir, out, restore_best = s.bn_momentum, s.checkpoint_dir, s.out, s.restore_best
    t0 = time.perf_counter()
    seed_everything(seed)
    model = resolve_model(s.model, **s.model_options())
    full, ds_train, ds_val, ds_test = split_data(data, model, val_fraction=s.val_fraction, val_data=s.val_data,
                                                 limit=s.limit, test_limit=s.test_limit, seed=seed,
                                                 preprocess=s.preprocess)
    if out is not None:
        check_model_output(out, "--out")
    ckpt_path = None
    if checkpoint_dir is not None:
        from .._io import ensure_writable_dir

        ckpt_path = ensure_writable_dir(checkpoint_dir, option="--checkpoint-dir") / "best.keras"
    set_bn_momentum(model, bn_momentum)
    compile_for_training(model, lr, optimizer)
    log, best = fit(model, ds_train, ds_val, epochs=epochs, batch_size=batch_size, task=f"train {model.name}",
                    progress=progress, callbacks=callbacks, restore_best=restore_best, seed=seed)
    if ckpt_path is not None and epochs:
        save_model_atomic(model if restore_best else _with_weights(model, best), ckpt_path)
    if out is not None:
        save_model_atomic(model, out)
    report = TrainReport(
        model=model.name, data=full.source, train_samples=len(ds_train), val_samples=len(ds_val or ()),
        epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, bn_momentum=bn_momentum, history=log,
        best_epoch=best.best_epoch if best else None,
        best_val_accuracy=(max((e.val_accuracy for e in log if e.val_accuracy is not None), default=None)),
        test_accuracy=evaluate(model, ds_test), test_samples=len(ds_test) if ds_test is not None else 0,
        checkpoint=str(ckpt_path) if ckpt_path and epochs else None, saved=str(out) if out else None,
        seconds=round(time.perf_counter() - t0, 2))
    return model, report


def _with_weights(model, best):
    """A clone of ``model`` carrying the best epoch's weights (the live model keeps its last weights)."""
    from .._keras import keras

    clone = keras.models.clone_model(model)
    clone.set_weights(best.best_weights)
    return clone
