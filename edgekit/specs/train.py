"""FitSpec (the data a training run uses, shared by ``train`` and ``compress``) and TrainSpec (``train``)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .._spec import option, spec
from . import _choices
from .model import ModelSpec

#: BatchNorm momentum set on every BatchNormalization layer before training (None keeps the model's own)
DEFAULT_BN_MOMENTUM = 0.9
#: training samples the BatchNorm statistics are recomputed on after every epoch (PreciseBN)
DEFAULT_PRECISE_BN = 1024
#: tf.distribute strategies every training stage runs under (edgekit.compression.distribute)
STRATEGIES = ("auto", "one-device", "mirrored", "multi-worker")


@spec
class FitSpec(ModelSpec):
    """A model and the labelled data it trains on: seeded train/validation split, test split of built-in data."""

    data: Any = option(help="Training data: fashion-mnist, digits, an image folder (one sub-folder per class), "
                            "TFRecord files or an .npz with x and y; streamed through tf.data.")
    batch_size: int = option(64, gt=0, help="Batch size.")
    val_fraction: float = option(0.1, ge=0, lt=1, help="Held-out validation fraction of --data.")
    val_data: Any = option(None, help="Separate validation data instead of --val-fraction.")
    limit: int | None = option(None, gt=0, help="Use a seeded random subset of this many training samples.")
    test_limit: int | None = option(None, gt=0, help="Test samples of a built-in dataset to evaluate on.")
    seed: int = option(0, help="Seed for splits, shuffling, initialisation and sample selection.")
    bn_momentum: float | None = option(DEFAULT_BN_MOMENTUM, ge=0, lt=1,
                                       help="BatchNorm momentum set before training.")
    preprocess: str | None = option(None, choices=_choices.PREPROCESS_MODES,
                                    help="Input preprocessing for user models (zoo models know theirs).")
    eval_data: Any = option(None, help="Test data for the reported accuracy (default: a built-in dataset's test "
                                       "split).")
    augment: bool = option(False, help="Random-resized crops and horizontal flips of training images (off by "
                                       "default; recorded in the report).")
    strict_data: bool = option(False, help="An unreadable image is an error (default: skipped, counted and named in "
                                           "a warning).")
    image_key: str | None = option(None, help="TFRecord feature with the encoded image (default image/encoded).")
    label_key: str | None = option(None, help="TFRecord feature with the integer label (default "
                                              "image/class/label).")
    shuffle_buffer: int | None = option(None, gt=0, help="Serialized TFRecord records held for shuffling (default "
                                                         "2048).")
    strategy: str = option("auto", choices=STRATEGIES,
                           help="tf.distribute strategy of every training stage: auto = multi-worker when TF_CONFIG "
                                "names a cluster, mirrored with several GPUs, else one-device.")
    backup_dir: str | None = option(None, help="Back up every epoch here (BackupAndRestore): a killed run restarted "
                                               "with the same command resumes from its last epoch.")


@spec
class TrainSpec(FitSpec):
    """``edgekit.train(model, data, ...)``: train or fine-tune, keep the best epoch by validation accuracy."""

    epochs: int = option(5, ge=0, help="Epochs.")
    lr: float = option(1e-3, gt=0, help="Learning rate.")
    optimizer: str = option("adam", choices=_choices.OPTIMIZERS, help="Optimizer.")
    checkpoint_dir: str | None = option(None, help="Save the best epoch to DIR/best.keras (atomic).")
    out: str | None = option(None, help="Save the trained model to PATH.keras (or .h5).")
    restore_best: bool = option(True, help="Restore the best epoch's weights (by validation accuracy) at the end.")
    trainable: tuple[str, ...] | None = option(None, help="Train only the layers whose names match this pattern "
                                                          "(fnmatch, repeatable); the others are frozen, BatchNorm "
                                                          "statistics included (e.g. conv_preds: retrain the "
                                                          "classifier, so an update package holds only it).")
    precise_bn: int = option(DEFAULT_PRECISE_BN, ge=0,
                             help="After every epoch, recompute the BatchNorm moving statistics on this many "
                                  "training samples with the epoch's final weights, before validation (0, and under "
                                  "a distribution strategy: the running averages, which lag behind the weights in "
                                  "short runs).")

    def validate(self) -> None:
        if self.out is not None and Path(self.out).suffix not in (".keras", ".h5"):
            raise self.fail(f"--out {self.out!r} must end in .keras or .h5", hint="e.g. --out artifacts/model.keras")
