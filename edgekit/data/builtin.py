"""Built-in datasets, read from local files only: Fashion-MNIST from Debian's ``dataset-fashion-mnist`` package
(``/usr/share/datasets/fashion-mnist``) or the Keras cache, ``digits`` from scikit-learn's bundled copy."""
from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import DataError, MissingDependency
from ..registry import Registry

#: Built-in datasets: name -> loader(split) -> (uint8 images NHWC, int labels, class names)
DATASETS: Registry[Callable[[str], tuple[np.ndarray, np.ndarray, list[str]]]] = Registry("dataset")

FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                         "Bag", "Ankle boot"]
FASHION_MNIST_DIRS = ("/usr/share/datasets/fashion-mnist", "~/.keras/datasets/fashion-mnist")


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as fh:
        raw = fh.read()
    magic = int.from_bytes(raw[0:4], "big")
    ndim = magic & 0xFF
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def fashion_mnist_dir() -> Path:
    """The folder holding Fashion-MNIST's four idx files; ``EDGEKIT_FASHION_MNIST_DIR`` overrides."""
    candidates = [os.environ.get("EDGEKIT_FASHION_MNIST_DIR", ""), *FASHION_MNIST_DIRS]
    for cand in candidates:
        if cand and (Path(cand).expanduser() / "t10k-labels-idx1-ubyte.gz").is_file():
            return Path(cand).expanduser()
    raise DataError("Fashion-MNIST is not installed",
                    hint="apt-get install dataset-fashion-mnist (Debian/Ubuntu), or set EDGEKIT_FASHION_MNIST_DIR "
                         "to a folder with the four *-ubyte.gz files")


@DATASETS.register("fashion-mnist", aliases=("fashion_mnist", "fmnist"), classes=10, size=(28, 28, 1),
                   splits=("train", "test"))
def _fashion_mnist(split: str):
    root = fashion_mnist_dir()
    prefix = {"train": "train", "test": "t10k"}[split]
    x = _read_idx(root / f"{prefix}-images-idx3-ubyte.gz")[..., None]
    y = _read_idx(root / f"{prefix}-labels-idx1-ubyte.gz").astype(np.int64)
    return x, y, list(FASHION_MNIST_CLASSES)


@DATASETS.register("digits", classes=10, size=(8, 8, 1), splits=("train", "test"))
def _digits(split: str):
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise MissingDependency("scikit-learn", "data", purpose="for the 'digits' dataset") from exc
    d = load_digits()
    x = np.clip(d.images * 16.0, 0, 255).astype(np.uint8)[..., None]  # 0..16 -> 0..255
    y = d.target.astype(np.int64)
    order = np.random.default_rng(1234).permutation(len(y))  # fixed split: 80% train, 20% test
    cut = int(len(y) * 0.8)
    idx = order[:cut] if split == "train" else order[cut:]
    return x[idx], y[idx], [str(i) for i in range(10)]


def builtin_split(name: str, split: str):
    """(uint8 images, labels, class names, canonical name) of a built-in dataset's ``split``."""
    entry = DATASETS.entry(name)
    if split not in entry.meta["splits"]:
        raise DataError(f"dataset {entry.name!r} has no split {split!r}",
                        hint=f"use one of {', '.join(entry.meta['splits'])}")
    images, labels, names = entry.obj(split)
    return images, labels, names, entry.name
