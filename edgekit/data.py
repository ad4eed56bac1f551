"""Real data for calibration, training and evaluation: built-in datasets, image folders and numpy arrays.

Every loader returns a :class:`Dataset` of float32 NHWC arrays already resized to the model input and
preprocessed the way the model family expects. Nothing here downloads: Fashion-MNIST is read from Debian's
``dataset-fashion-mnist`` package (``/usr/share/datasets/fashion-mnist``) or the Keras cache, ``digits`` from
scikit-learn's bundled copy.
"""
from __future__ import annotations

import gzip
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .errors import DataError, MissingDependency
from .registry import Registry

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
PREPROCESS_MODES = ("unit", "tf", "torch", "caffe", "raw")

#: Built-in datasets: name -> loader(split) -> (uint8 images NHWC, int labels, class names)
DATASETS: Registry[Callable[[str], tuple[np.ndarray, np.ndarray, list[str]]]] = Registry("dataset")

FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                         "Bag", "Ankle boot"]
FASHION_MNIST_DIRS = ("/usr/share/datasets/fashion-mnist", "~/.keras/datasets/fashion-mnist")


@dataclass
class Dataset:
    """Model-ready samples: ``x`` float32 (N, H, W, C), ``y`` int64 labels or None."""

    x: np.ndarray
    y: np.ndarray | None
    source: str
    class_names: list[str] | None = None
    preprocess: str = "unit"
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def num_classes(self) -> int | None:
        if self.class_names:
            return len(self.class_names)
        return int(self.y.max()) + 1 if self.y is not None and len(self.y) else None

    def subset(self, index: np.ndarray | slice) -> "Dataset":
        return Dataset(self.x[index], None if self.y is None else self.y[index], self.source, self.class_names,
                       self.preprocess, dict(self.meta))

    def take(self, n: int | None, seed: int = 0) -> "Dataset":
        """A seeded random subset of at most ``n`` samples (all of them, shuffled, when n is None)."""
        order = np.random.default_rng(seed).permutation(len(self))
        return self.subset(order if n is None else order[:n])

    def split(self, fraction: float, seed: int = 0) -> tuple["Dataset", "Dataset"]:
        """Split into (rest, held-out) with ``fraction`` of the samples held out, seeded."""
        if not 0.0 < fraction < 1.0:
            raise DataError(f"split fraction must be in (0, 1); received {fraction}")
        order = np.random.default_rng(seed).permutation(len(self))
        k = max(1, int(round(len(self) * fraction)))
        return self.subset(order[k:]), self.subset(order[:k])


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


def preprocess(images: np.ndarray, mode: str = "unit") -> np.ndarray:
    """Map 0..255 pixel values (N, H, W, C) to model inputs the way a family expects.

    ``unit``: [0, 1]; ``tf``: [-1, 1] (MobileNet, Inception, Xception); ``torch``: ImageNet mean/std (DenseNet,
    EfficientNet-free families); ``caffe``: RGB->BGR minus ImageNet means (ResNet, VGG); ``raw``: 0..255 for models
    that normalise inside the graph (tf-keras EfficientNet, MobileNet v3).
    """
    x = images.astype(np.float32)
    if mode == "unit":
        return x / 255.0
    if mode == "tf":
        return x / 127.5 - 1.0
    if mode == "raw":
        return x
    if mode == "torch":
        x = x / 255.0
        if x.shape[-1] == 3:
            return (x - np.array([0.485, 0.456, 0.406], np.float32)) / np.array([0.229, 0.224, 0.225], np.float32)
        return (x - 0.449) / 0.226
    if mode == "caffe":
        if x.shape[-1] == 3:
            return x[..., ::-1] - np.array([103.939, 116.779, 123.68], np.float32)
        return x - 116.779
    raise DataError(f"unknown preprocessing {mode!r}", hint=f"use one of {', '.join(PREPROCESS_MODES)}")


def _fit_channels(images: np.ndarray, channels: int) -> np.ndarray:
    have = images.shape[-1]
    if have == channels:
        return images
    if have == 1:
        return np.repeat(images, channels, axis=-1)
    if channels == 1 and have >= 3:
        lum = images[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        return np.clip(np.rint(lum), 0, 255).astype(images.dtype)[..., None]
    raise DataError(f"cannot map {have}-channel images to a {channels}-channel model input")


def resize_images(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of uint8 (N, H, W, C) images to ``size`` = (H, W) with Pillow."""
    if images.shape[1:3] == tuple(size):
        return images
    from PIL import Image

    out = np.empty((images.shape[0], size[0], size[1], images.shape[3]), dtype=np.uint8)
    for i, img in enumerate(images):
        for c in range(images.shape[3]):
            out[i, :, :, c] = np.asarray(Image.fromarray(img[:, :, c]).resize((size[1], size[0]), Image.BILINEAR))
    return out


def to_model_input(images: np.ndarray, input_shape: Sequence[int], mode: str = "unit") -> np.ndarray:
    """uint8 images (N, H, W, C) -> float32 model inputs of ``input_shape`` (H, W, C)."""
    h, w, c = (int(v) for v in input_shape)
    return preprocess(resize_images(_fit_channels(images, c), (h, w)), mode)


def _decode_image(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            return np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"cannot decode image {str(path)!r}: {exc}",
                        hint="remove or replace the file; jpg, png and bmp are supported") from exc


def _load_image_dir(root: Path, input_shape: Sequence[int], mode: str, limit: int | None, seed: int):
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"no images (jpg, png, bmp) under {str(root)!r}",
                        hint="point at a folder of images, one sub-folder per class for training")
    if limit is not None and len(files) > limit:
        order = np.random.default_rng(seed).permutation(len(files))[:limit]
        files = [files[i] for i in sorted(order)]
    rel = [p.relative_to(root).parts for p in files]
    labelled = all(len(parts) >= 2 for parts in rel)
    class_names = sorted({parts[0] for parts in rel}) if labelled else None
    h, w, c = (int(v) for v in input_shape)
    batch = np.stack([resize_images(_fit_channels(_decode_image(p)[None], c), (h, w))[0] for p in files])
    y = np.array([class_names.index(parts[0]) for parts in rel], np.int64) if labelled else None
    return preprocess(batch, mode), y, class_names


def _load_arrays(path: Path, input_shape: Sequence[int]):
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read arrays from {str(path)!r}: {exc}") from exc
    y = None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        keys = list(loaded.keys())
        xkey = next((k for k in ("x", "images", "inputs", "x_test", "x_train") if k in keys), keys[0] if keys else None)
        if xkey is None:
            raise DataError(f"{str(path)!r} holds no arrays")
        ykey = next((k for k in ("y", "labels", "y_test", "y_train") if k in keys), None)
        x = loaded[xkey]
        y = loaded[ykey].astype(np.int64).reshape(-1) if ykey else None
    else:
        x = loaded
    return _model_ready(x, y, repr(str(path)), input_shape)


def _model_ready(x: np.ndarray, y: np.ndarray | None, where: str, input_shape: Sequence[int]):
    """Check already preprocessed inputs ``x`` (and labels ``y``) against the model input; float32 x, int64 y."""
    want = tuple(int(v) for v in input_shape)
    if x.ndim == len(want) and tuple(x.shape[1:]) == want[:-1] and want[-1] == 1:
        x = x[..., None]
    if x.ndim != len(want) + 1 or tuple(x.shape[1:]) != want:
        raise DataError(f"arrays in {where} have shape {tuple(x.shape)}, the model needs (N, {', '.join(map(str, want))})",
                        hint="save model-ready (already preprocessed) inputs, one sample per row")
    if len(x) == 0:
        raise DataError(f"{where} holds no samples")
    if x.dtype.kind not in "biuf":
        raise DataError(f"arrays in {where} have dtype {x.dtype}; model inputs must be real numbers")
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise DataError(f"arrays in {where} hold NaN or infinite values ({int(np.sum(~np.isfinite(x)))} of {x.size})",
                        hint="clean the inputs (np.nan_to_num) or drop those samples")
    if y is not None:
        y = np.asarray(y).astype(np.int64).reshape(-1)
        if len(y) != len(x):
            raise DataError(f"{where}: {len(x)} inputs but {len(y)} labels")
    return x, y


def load(source: str | os.PathLike | Dataset | np.ndarray | tuple, *, input_shape: Sequence[int],
         preprocess_mode: str = "unit", split: str = "train", limit: int | None = None, seed: int = 0) -> Dataset:
    """Load ``source`` as model inputs of ``input_shape`` (H, W, C).

    ``source`` is a built-in dataset name (``fashion-mnist``, ``digits``), a folder of images (recursive; one
    sub-folder per class gives labels) or a ``.npy``/``.npz`` file of already preprocessed inputs; from Python also
    a :class:`Dataset` or a numpy array ``x`` / tuple ``(x, y)`` of already preprocessed inputs. ``split`` picks
    the built-in dataset's ``train`` or ``test`` part; ``limit`` keeps a seeded random subset.
    """
    if preprocess_mode not in PREPROCESS_MODES:
        raise DataError(f"unknown preprocessing {preprocess_mode!r}", hint=f"use one of {', '.join(PREPROCESS_MODES)}")
    if limit is not None and limit <= 0:
        raise DataError(f"limit must be positive; received {limit}")
    if isinstance(source, Dataset):
        if source.preprocess not in ("as-given", preprocess_mode):
            raise DataError(f"dataset {source.source!r} was preprocessed with {source.preprocess!r}, the model "
                            f"expects {preprocess_mode!r}", hint=f"load it with preprocess_mode={preprocess_mode!r}")
        x, y = _model_ready(source.x, source.y, f"dataset {source.source!r}", input_shape)
        ds = Dataset(x, y, source.source, source.class_names, source.preprocess, dict(source.meta))
        return ds.take(limit, seed) if limit is not None and limit < len(ds) else ds
    if isinstance(source, np.ndarray) or (isinstance(source, tuple) and len(source) == 2
                                          and isinstance(source[0], np.ndarray)):
        x, y = (source, None) if isinstance(source, np.ndarray) else source
        x, y = _model_ready(x, y, "the given array", input_shape)
        ds = Dataset(x, y, f"array {tuple(x.shape)}", None, "as-given")
        return ds.take(limit, seed) if limit is not None and limit < len(ds) else ds
    if not isinstance(source, (str, os.PathLike)):
        raise DataError(f"cannot use a {type(source).__name__} as data",
                        hint="give a dataset name, an image folder, a .npy/.npz file, a numpy array or (x, y)")
    text = str(source)
    if text in DATASETS:
        entry = DATASETS.entry(text)
        if split not in entry.meta["splits"]:
            raise DataError(f"dataset {entry.name!r} has no split {split!r}",
                            hint=f"use one of {', '.join(entry.meta['splits'])}")
        images, labels, names = entry.obj(split)
        if limit is not None and limit < len(labels):
            idx = np.sort(np.random.default_rng(seed).permutation(len(labels))[:limit])
            images, labels = images[idx], labels[idx]
        x = to_model_input(images, input_shape, preprocess_mode)
        return Dataset(x, labels, f"{entry.name}:{split}", names, preprocess_mode, {"builtin": entry.name})
    path = Path(text).expanduser()
    if path.is_dir():
        x, y, names = _load_image_dir(path, input_shape, preprocess_mode, limit, seed)
        return Dataset(x, y, str(path), names, preprocess_mode)
    if path.is_file() and path.suffix.lower() in (".npy", ".npz"):
        x, y = _load_arrays(path, input_shape)
        ds = Dataset(x, y, str(path), None, "as-given")
        return ds.take(limit, seed) if limit is not None and limit < len(ds) else ds
    if path.exists():
        raise DataError(f"cannot use {text!r} as data", hint="give a folder of images, a .npy/.npz file or one of: "
                        + ", ".join(DATASETS.list()))
    if any(sep in text for sep in ("/", "\\")) or path.suffix:
        raise DataError(f"data source {text!r} does not exist")
    DATASETS.resolve(text)  # raises UnknownNameError with did-you-mean
    raise AssertionError("unreachable")
