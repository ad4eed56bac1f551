"""Real data for calibration, verification, training and evaluation: built-in datasets, image folders, TFRecord
files and numpy arrays.

:func:`open_source` opens a source for a model's input(s) without reading it (a :class:`Source`); :func:`load`
returns model-ready samples in memory (a :class:`Dataset`); :func:`edgekit.data.stream.tf_dataset` streams a
source through tf.data for training. Image sources are resized to the model input and preprocessed the way the
model family expects; arrays (``.npy``/``.npz``, numpy objects) are taken as already preprocessed, any rank, one
array per model input. Nothing here downloads, and importing this package does not import TensorFlow (TFRecord
files and tf.data pipelines import it when used).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from .._io import check_input_path
from ..errors import DataError
from .arrays import read_arrays, read_class_names
from .builtin import DATASETS, FASHION_MNIST_CLASSES, FASHION_MNIST_DIRS, builtin_split, fashion_mnist_dir
from .dataset import Dataset, as_shapes, check_arrays, is_image_shape
from .images import (IMAGE_SUFFIXES, PREPROCESS_MODES, ImageError, SkipLog, decode, fit_channels, preprocess,
                     resize_images, to_model_input)
from .sources import Arrays, BuiltinImages, ImageFolder, IndexedSource, Source
from .tfrecord import DEFAULT_IMAGE_KEY, DEFAULT_LABEL_KEY, TFRecords, find_tfrecords

#: the public names: what edgekit/__init__.py and the CLI use (the others are importable, not public API)
__all__ = ["load"]

_KINDS = "a dataset name (fashion-mnist, digits), an image folder, TFRecord files, a .npy/.npz file"


def open_source(source, *, input_shape, input_names: Sequence[str] | None = None, preprocess_mode: str = "unit",
                split: str = "train", strict: bool = False, image_key: str = DEFAULT_IMAGE_KEY,
                label_key: str = DEFAULT_LABEL_KEY) -> Source:
    """Open ``source`` for a model whose input(s) have ``input_shape`` (one shape, or a list for several inputs).

    ``source``: a built-in dataset name (its ``split``), an image folder (recursive; one sub-folder per class gives
    labels), TFRecord files (a file, folder or glob; keys ``image_key``/``label_key``), a ``.npy``/``.npz`` file of
    model-ready arrays; from Python also a :class:`Source`, a :class:`Dataset`, an array, a list of arrays (one per
    input) or ``(x, y)``. ``strict`` makes the first unreadable image an error instead of a skipped, counted one.
    """
    if preprocess_mode not in PREPROCESS_MODES:
        raise DataError(f"unknown preprocessing {preprocess_mode!r}", hint=f"use one of {', '.join(PREPROCESS_MODES)}")
    shapes = as_shapes(input_shape)
    if isinstance(source, Source):
        return source
    if isinstance(source, Dataset):
        if source.preprocess not in ("as-given", preprocess_mode):
            raise DataError(f"dataset {source.source!r} was preprocessed with {source.preprocess!r}, the model "
                            f"expects {preprocess_mode!r}", hint=f"load it with preprocess_mode={preprocess_mode!r}")
        xs, y = check_arrays(source.inputs, source.y, f"dataset {source.source!r}", shapes)
        return Arrays(source.source, xs, y, shapes, source.class_names, source.preprocess, dict(source.meta))
    arrays = _as_arrays(source)
    if arrays is not None:
        xs, y = check_arrays(arrays[0], arrays[1], "the given array", shapes)
        return Arrays(f"array {tuple(xs[0].shape)}" if len(xs) == 1 else f"{len(xs)} arrays", xs, y, shapes)
    if not isinstance(source, (str, os.PathLike)):
        raise DataError(f"cannot use a {type(source).__name__} as data",
                        hint=f"give {_KINDS}, a numpy array or (x, y)")
    text = str(source)
    if text in DATASETS:
        images, labels, names, canonical = builtin_split(text, split)
        return BuiltinImages(f"{canonical}:{split}", images, labels, names, _image_shape(shapes, canonical),
                             preprocess_mode, canonical)
    path = check_input_path(text, "data source", error=DataError)   # a FIFO or device: said so, never read
    if path.is_file() and path.suffix.lower() in (".npy", ".npz"):
        xs, y = read_arrays(path, len(shapes), input_names)
        xs, y = check_arrays(xs, y, repr(str(path)), shapes)
        return Arrays(str(path), xs, y, shapes, read_class_names(path))
    records = find_tfrecords(text)
    if path.is_dir() and (records is None or _has_images(path)):
        return ImageFolder(path, _image_shape(shapes, text), preprocess_mode, strict)
    if records is not None:
        return TFRecords(records, _image_shape(shapes, text), preprocess_mode, image_key=image_key,
                         label_key=label_key, strict=strict, name=text)
    if path.exists():
        raise DataError(f"cannot use {text!r} as data", hint=f"give {_KINDS}")
    if any(sep in text for sep in ("/", "\\")) or path.suffix or any(ch in text for ch in "*?["):
        raise DataError(f"data source {text!r} does not exist",
                        hint=f"check the path; data is {_KINDS}, or one of: {', '.join(DATASETS.list())}")
    DATASETS.resolve(text)  # raises UnknownNameError with did-you-mean
    raise AssertionError("unreachable")


def load(source, *, input_shape, preprocess_mode: str = "unit", split: str = "train", limit: int | None = None,
         seed: int = 0, strict: bool = False, input_names: Sequence[str] | None = None,
         image_key: str = DEFAULT_IMAGE_KEY, label_key: str = DEFAULT_LABEL_KEY) -> Dataset:
    """Load ``source`` (see :func:`open_source`) as model-ready samples in memory.

    ``limit`` keeps a seeded random subset and decodes only that many samples (a refill replaces unreadable
    ones). Unreadable images are skipped with one :class:`~edgekit.errors.EdgekitWarning` naming the first few
    (``strict``: the first one is a DataError).
    """
    if limit is not None and limit <= 0:
        raise DataError(f"limit must be positive; received {limit}", hint="give a positive number of samples")
    src = open_source(source, input_shape=input_shape, input_names=input_names, preprocess_mode=preprocess_mode,
                      split=split, strict=strict, image_key=image_key, label_key=label_key)
    if isinstance(source, (Dataset, np.ndarray, tuple, list)) or src.kind == "arrays":
        ds = src.take(limit, seed) if limit is not None and limit < len(src) else _all(src)
    elif isinstance(src, IndexedSource):
        order = np.random.default_rng(seed).permutation(len(src)) if limit is not None else np.arange(len(src))
        ds = src.read(order, limit, keep_order=True)
    else:
        ds = src.take(limit, seed)
    src.skips.warn(len(src) if isinstance(src, IndexedSource) else None)
    return ds


def same_class_order(train_src, other) -> None:
    """Refuse validation/test data (a Source or a Dataset) whose named classes are not the training data's, in the
    same order: label k must mean the same class in both (an image folder sorts its sub-folders by name, the built-in
    datasets keep their own order, so `--eval-data fashion-mnist` after training on a folder of the same images scored
    labels of other classes)."""
    a, b = getattr(train_src, "class_names", None), getattr(other, "class_names", None)
    if not a or not b or list(a) == list(b):
        return
    diff = [f"{i}: {x!r} vs {y!r}" for i, (x, y) in enumerate(zip(a, b)) if x != y]
    if len(a) != len(b):
        diff.append(f"{len(a)} vs {len(b)} classes")
    raise DataError(f"the classes of {_label(other)} are not those of the training data {_label(train_src)} in the "
                    f"same order (label {'; '.join(diff[:4])}{'; ...' if len(diff) > 4 else ''})",
                    hint="give validation and test data with the training data's classes in its order (image folders: "
                         "the same sub-folder names; they are sorted by name), or labelled arrays in that order")


def _label(data) -> str:
    return getattr(data, "name", None) or getattr(data, "source", "?")   # a Source's name, a Dataset's source


def _all(src: Source) -> Dataset:
    return src.read(np.arange(len(src))) if isinstance(src, IndexedSource) else src.take(None)


def _as_arrays(source):
    """(list of input arrays, labels) for numpy objects given from Python, else None."""
    if isinstance(source, np.ndarray):
        return [source], None
    if isinstance(source, list) and source and all(isinstance(a, np.ndarray) for a in source):
        return list(source), None
    if isinstance(source, tuple) and len(source) == 2:
        x, y = source
        if isinstance(x, np.ndarray):
            return [x], y
        if isinstance(x, (list, tuple)) and x and all(isinstance(a, np.ndarray) for a in x):
            return list(x), y
    return None


def _image_shape(shapes: list[tuple], what: str) -> tuple:
    if len(shapes) != 1:
        raise DataError(f"{what!r} holds images, but the model has several inputs",
                        hint="give model-ready arrays for models with several inputs: an .npz with one array per "
                             "input (keys named after the inputs, or x0, x1, ...)")
    shape = shapes[0]
    if not is_image_shape(shape) or any(d is None for d in shape):
        raise DataError(f"{what!r} holds images, but the model input has shape {shape} (not a fixed image "
                        "(H, W, C) with 1 or 3 channels)",
                        hint="give model-ready arrays of the input's shape (.npy/.npz), or a model with an image input")
    return shape


def _has_images(path: Path) -> bool:
    return any(p.suffix.lower() in IMAGE_SUFFIXES for p in path.rglob("*"))
