"""Training and fine-tuning on streamed data: seeded train/validation split, per-epoch progress, best checkpoint,
tf.distribute (``strategy``) and fault tolerance (``backup_dir``).

Small-data defaults that work: Adam, BatchNorm momentum 0.9 (tf-keras models use 0.99, whose moving statistics
lag far behind the weights in a short run and make validation accuracy look random), best weights restored.
"""
from __future__ import annotations

import os
import shutil
import time
from fnmatch import fnmatchcase
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from .._chance import warn_if_at_chance
from .._jsonable import JsonMixin, model_name
from .._layers import unwrapped, walk_layers
from .._progress import Progress, no_progress
from .._spec import takes_spec
from ..data import same_class_order
from ..errors import DataError, InvalidArgument
from ..registry import Registry
from ..specs.train import TrainSpec
from .fit import BestWeights, EpochLog, evaluate, evaluate_vs_chance, fit  # noqa: F401 - re-exported
from .inputs import (as_source, input_shape_of, input_specs, outputs_probabilities, preprocess_for,  # noqa: F401
                     resolve_data, seed_everything)
from .. import data as data_mod
from .._io import atomic_path, ensure_writable_dir, refuse_folder
from ..models import resolve
from .distribute import setup


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
    precise_bn: int = 0          # training samples the BatchNorm statistics were recomputed on after every epoch
    history: list[EpochLog] = field(default_factory=list)
    best_epoch: int | None = None
    best_val_accuracy: float | None = None
    test_accuracy: float | None = None
    test_samples: int = 0
    #: the test accuracy against the chance accuracy of the test labels (edgekit._chance.ChanceCheck as a dict)
    chance: dict | None = None
    checkpoint: str | None = None
    saved: str | None = None
    seconds: float = 0.0
    augment: bool = False
    strategy: dict = field(default_factory=dict)  # distribute.StrategyInfo: strategy, replicas, workers, chief
    trainable_layers: list[str] | None = None  # --trainable: the layers trained (the others were frozen)
    sources: dict = field(default_factory=dict)  # train/val/test: source, kind, samples; unreadable images
    skipped_images: int = 0
    resumed_from_epoch: int = 0


@dataclass
class TrainResult(JsonMixin):
    """What :func:`train` made: the trained keras.Model and its :class:`TrainReport`. In JSON the model is its
    name."""

    model: Any = field(metadata={"json": model_name})
    report: TrainReport


def resolve_model(model: Any, **options: Any):
    """A keras.Model as given, or a zoo name / model file built by ``edgekit.models.create``; a Keras 3 model is
    translated to tf-keras (training and tfmot need it)."""

    return resolve(model, tf_keras=True, **options)


def test_split(data: Any, model, *, limit: int | None = None, seed: int = 0, preprocess: str | None = None):
    """The built-in dataset's ``test`` split for ``data`` when it has one, else None."""

    if isinstance(data, (str, os.PathLike)) and str(data) in data_mod.DATASETS:
        if "test" in data_mod.DATASETS.entry(str(data)).meta.get("splits", ()):
            return resolve_data(data, model, split="test", limit=limit, seed=seed, preprocess=preprocess)
    return None


def split_data(data: Any, model, *, val_fraction: float = 0.1, val_data: Any = None, eval_data: Any = None,
               limit: int | None = None, test_limit: int | None = None, seed: int = 0, preprocess: str | None = None,
               strict: bool = False, image_key: str | None = None, label_key: str | None = None):
    """(all, train, validation or None, test or None) sources for ``model``: ``val_data`` or a seeded
    ``val_fraction`` hold-out of ``data``; ``eval_data`` or the built-in dataset's test split as the test set."""
    kw = dict(seed=seed, preprocess=preprocess, strict=strict, image_key=image_key, label_key=label_key)
    full = resolve_data(data, model, limit=limit, **kw)
    check_classes(model, full)
    if val_data is not None:
        ds_train, ds_val = full, resolve_data(val_data, model, **kw)
    elif val_fraction:
        ds_train, ds_val = full.split(val_fraction, seed)
    else:
        ds_train, ds_val = full, None
    if eval_data is not None:
        ds_test = resolve_data(eval_data, model, split="test", limit=test_limit, **kw)
    else:
        ds_test = test_split(data, model, limit=test_limit, seed=seed, preprocess=preprocess)
    for extra in (ds_val, ds_test):
        if extra is not None:
            check_classes(model, extra)
            same_class_order(full, extra)
    return full, ds_train, ds_val, ds_test


def sources_report(**parts) -> dict:
    """What reports record about the data: per part, the source, kind and sample count; then the unreadable
    images skipped (count and the first few, over all parts)."""
    out = {k: v.describe() for k, v in parts.items() if v is not None}
    logs = list({id(v.skips): v.skips for v in parts.values() if v is not None}.values())
    examples = list(dict.fromkeys(e for lg in logs for e in lg.to_dict()["examples"]))
    out["unreadable"] = {"skipped": len(set().union(*(lg.names for lg in logs))), "examples": examples[:5]}
    return out


def warn_skipped(*sources) -> int:
    """One warning per source that skipped unreadable images; returns how many distinct files were skipped."""
    logs = list({id(s.skips): s.skips for s in sources if s is not None}.values())
    for log in logs:
        log.warn(None, stacklevel=4)
    return len(set().union(*(log.names for log in logs)))


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


def check_classes(model, ds) -> None:
    """Labels beyond the model's classes, when the source knows its labels (TFRecords are checked in training)."""
    out = model.output_shape
    classes = int(out[-1]) if out and out[-1] else None
    top = ds.max_label() if hasattr(ds, "max_label") else (int(ds.y.max()) if ds.y is not None and len(ds.y) else None)
    if top is None and ds.num_classes:
        top = ds.num_classes - 1
    if classes is not None and top is not None and top + 1 > classes:
        raise DataError(f"{ds.source} has labels up to {top} but model {model.name!r} outputs {classes} classes",
                        hint=f"build the model with --classes {ds.num_classes or top + 1}")


def check_model_output(dest: str | os.PathLike, option: str) -> None:
    """Before any training: ``dest`` must be a .keras/.h5 path whose folder can be written, not an existing folder."""

    if Path(dest).suffix not in (".keras", ".h5"):
        raise InvalidArgument(f"{option} {str(dest)!r} must end in .keras or .h5")
    refuse_folder(dest, option)
    try:
        ensure_writable_dir(Path(dest).expanduser().parent, create=False)  # made when the model is saved
    except InvalidArgument as exc:
        raise InvalidArgument(f"cannot write {option} {dest}: {exc.message}",
                              hint=f"choose another path for {option}") from exc


def save_model_atomic(model, dest: str | os.PathLike) -> Path:
    """Save a Keras model to ``dest`` (.keras or .h5) via a temp file in the same folder, then rename."""
    dest = Path(dest)
    if dest.suffix not in (".keras", ".h5"):
        raise InvalidArgument(f"model output {str(dest)!r} must end in .keras or .h5")

    with atomic_path(dest, suffix=f".part{dest.suffix}") as tmp:  # created by the save: the umask's permissions
        model.save(tmp)
    return dest


def backup_root(backup_dir: str | os.PathLike | None) -> Path | None:
    """Check ``backup_dir`` (--backup-dir) before training; None when not given."""
    if backup_dir is None:
        return None

    return ensure_writable_dir(backup_dir, option="--backup-dir")


def clean_backup(root: Path | None, parts: Sequence[str], chief: bool) -> None:
    """After a completed run, the chief removes the per-fit backups it made (a rerun then starts afresh)."""
    if root is None or not chief:
        return
    for part in parts:
        shutil.rmtree(root / part, ignore_errors=True)


@takes_spec(TrainSpec, positional=("model", "data"))
def train(spec: TrainSpec, *, progress: Progress = no_progress, callbacks: Sequence = ()) -> TrainResult:
    """Train (or fine-tune) ``model`` on ``data``; returns a :class:`TrainResult` (the model and its
    :class:`TrainReport`). Arguments: :class:`TrainSpec`.

    ``model`` is a keras.Model, a zoo name or a model file (the model options go to ``edgekit.models.create``).
    ``data`` is a data source (``fashion-mnist``, an image folder with one sub-folder per class, TFRecord files, an
    ``.npz``) or a Dataset, streamed through tf.data; ``val_fraction`` of it is held out (seeded) unless
    ``val_data`` is given; ``eval_data`` (default: a built-in dataset's test split) gives the test accuracy.
    ``augment`` adds random-resized crops and flips; unreadable images are skipped with a warning unless
    ``strict_data``. ``strategy``: auto, one-device, mirrored, multi-worker (TF_CONFIG); ``backup_dir`` lets a
    killed run resume from its last epoch. The best epoch by validation accuracy is restored (``restore_best``) and
    saved atomically to ``checkpoint_dir/best.keras`` when given; ``out`` saves the final model. Under multi-worker,
    only the chief writes files.
    """

    s = spec
    data, epochs, batch_size, lr, optimizer, seed = s.data, s.epochs, s.batch_size, s.lr, s.optimizer, s.seed
    bn_momentum, checkpoint_dir, out, restore_best = s.bn_momentum, s.checkpoint_dir, s.out, s.restore_best
    t0 = time.perf_counter()
    dist = setup(s.strategy)  # first: multi-worker must start before TensorFlow runs anything
    seed_everything(seed)
    model = resolve_model(s.model, **s.model_options())
    hits = freeze_except(model, s.trainable) if s.trainable else None  # before the data: a bad pattern fails fast
    full, ds_train, ds_val, ds_test = split_data(data, model, val_fraction=s.val_fraction, val_data=s.val_data,
                                                 eval_data=s.eval_data, limit=s.limit, test_limit=s.test_limit,
                                                 seed=seed, preprocess=s.preprocess, strict=s.strict_data,
                                                 image_key=s.image_key, label_key=s.label_key)
    if out is not None:
        check_model_output(out, "--out")
    ckpt_path = None
    if checkpoint_dir is not None:
        ckpt_path = ensure_writable_dir(checkpoint_dir, option="--checkpoint-dir") / "best.keras"
        check_model_output(ckpt_path, "--checkpoint-dir's best.keras")
    root = backup_root(s.backup_dir)
    dist.check_batch(batch_size)
    set_bn_momentum(model, bn_momentum)
    trained = dist.to_scope(model)
    with dist.scope():
        compile_for_training(trained, lr, optimizer)
    log, best = fit(trained, ds_train, ds_val, epochs=epochs, batch_size=batch_size, task=f"train {model.name}",
                    progress=progress, callbacks=callbacks, restore_best=restore_best, seed=seed, augment=s.augment,
                    dist=dist, backup_dir=None if root is None else root / "train", shuffle_buffer=s.shuffle_buffer,
                    shadow=model, precise_bn=s.precise_bn)
    model = dist.copy_back(model, trained)
    if hits is not None:  # freezing was for this run: the saved model trains whole again in a later stage
        for layer in model.layers:
            layer.trainable = True
    if dist.chief and ckpt_path is not None and epochs:
        save_model_atomic(model if restore_best else _with_weights(model, best), ckpt_path)
    if dist.chief and out is not None:
        save_model_atomic(model, out)
    skipped = warn_skipped(ds_train, ds_val, ds_test)
    vs_chance = evaluate_vs_chance(model, ds_test) if dist.chief else None
    report = TrainReport(
        model=model.name, data=full.source, train_samples=len(ds_train), val_samples=len(ds_val or ()),
        epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, bn_momentum=bn_momentum,
        precise_bn=s.precise_bn if not dist.distributed else 0, history=log,
        best_epoch=best.best_epoch if best else None,
        best_val_accuracy=(max((e.val_accuracy for e in log if e.val_accuracy is not None), default=None)),
        test_accuracy=vs_chance.accuracy if vs_chance else None,
        test_samples=len(ds_test) if ds_test is not None else 0, chance=vs_chance.to_dict() if vs_chance else None,
        checkpoint=str(ckpt_path) if ckpt_path and epochs and dist.chief else None,
        saved=str(out) if out and dist.chief else None, augment=bool(s.augment), strategy=dist.info.to_dict(),
        sources=sources_report(train=ds_train, val=ds_val, test=ds_test), skipped_images=skipped,
        resumed_from_epoch=best.resumed_from if best else 0, trainable_layers=hits,
        seconds=round(time.perf_counter() - t0, 2))
    clean_backup(root, ["train"], dist.chief)
    warn_if_at_chance(vs_chance, f"the test accuracy of {model.name}", undecidable=False)  # sweep: test_limit=1
    return TrainResult(model, report)


def freeze_except(model, patterns) -> list[str]:
    """Freeze every layer of ``model`` whose name matches none of ``patterns`` (fnmatch); returns the trainable
    ones. A frozen BatchNormalization also keeps its statistics (tf_keras runs it in inference mode)."""
    names = [layer.name for layer in model.layers]
    hits = [n for n in names if any(fnmatchcase(n, p) for p in patterns)]
    if not hits:
        raise InvalidArgument(f"--trainable {' '.join(patterns)} matches no layer of {model.name}",
                              hint=f"its layers: {', '.join(names[:6])}, ..., {', '.join(names[-3:])}")
    for layer in model.layers:
        layer.trainable = layer.name in hits
    return hits


def _with_weights(model, best):
    """A clone of ``model`` carrying the best epoch's weights (the live model keeps its last weights)."""
    from .._keras import keras

    clone = keras.models.clone_model(model)
    clone.set_weights(best.best_weights)
    return clone
