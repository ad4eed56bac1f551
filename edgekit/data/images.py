"""Images: decoding (Pillow, with a decompression-bomb guard), channel mapping, resizing, the families'
preprocessing, augmentation crops, and the log of skipped unreadable images.

The same :func:`decode` serves the in-memory loader and the tf.data pipeline (inside ``tf.numpy_function``), so a
file gives the same pixels for calibration, verification and training.
"""
from __future__ import annotations

import io
import os
import re
import threading
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import DataError, EdgekitWarning

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
PREPROCESS_MODES = ("unit", "tf", "torch", "caffe", "raw")
#: Pillow's own default limit (about 89.5 million pixels); EDGEKIT_MAX_IMAGE_PIXELS overrides
DEFAULT_MAX_PIXELS = 1024 * 1024 * 1024 // 4 // 3
#: augmentation: random-resized crops keep at least this fraction of the image area (Inception uses 0.08; the
#: MobileNet paper trains with fewer distortions by "limiting the size of small crops") and this aspect range
CROP_AREA = (0.25, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)


class ImageError(Exception):
    """An image that cannot be used (undecodable, truncated, too large); ``reason`` says why."""

    def __init__(self, name: str, reason: str):
        super().__init__(f"{name}: {reason}")
        self.name, self.reason = name, reason


def max_pixels() -> int:
    try:
        return int(os.environ.get("EDGEKIT_MAX_IMAGE_PIXELS", DEFAULT_MAX_PIXELS))
    except ValueError:
        return DEFAULT_MAX_PIXELS


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


def fit_channels(images: np.ndarray, channels: int) -> np.ndarray:
    """uint8 (..., C) -> (..., channels): grey replicated to RGB, RGB(A) to luminance (ITU-R 601), RGBA to RGB."""
    have = images.shape[-1]
    if have == channels:
        return images
    if have == 1:
        return np.repeat(images, channels, axis=-1)
    if channels == 1 and have >= 3:
        lum = images[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        return np.clip(np.rint(lum), 0, 255).astype(images.dtype)[..., None]
    if channels == 3 and have == 4:
        return images[..., :3]
    raise DataError(f"cannot map {have}-channel images to a {channels}-channel model input",
                    hint="give images with 1 or 3 channels, or a model with a matching input")


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
    return preprocess(resize_images(fit_channels(images, c), (h, w)), mode)


def crop_box(rng: np.random.Generator, width: int, height: int) -> tuple[float, float, float, float]:
    """A random-resized crop (Inception style, limited small crops): (left, top, right, bottom) in pixels."""
    area = width * height
    for _ in range(10):
        target = area * rng.uniform(*CROP_AREA)
        ratio = float(np.exp(rng.uniform(np.log(CROP_RATIO[0]), np.log(CROP_RATIO[1]))))
        w, h = np.sqrt(target * ratio), np.sqrt(target / ratio)
        if w <= width and h <= height:
            left, top = rng.uniform(0, width - w), rng.uniform(0, height - h)
            return left, top, left + w, top + h
    side = min(width, height)  # fall back to a central square
    left, top = (width - side) / 2, (height - side) / 2
    return left, top, left + side, top + side


def decode(src, size: tuple[int, int] | None, channels: int, *, name: str | None = None,
           augment_seed: int | None = None, shapes: set | None = None) -> np.ndarray:
    """Decode an image file (path) or its encoded bytes to uint8 (H, W, ``channels``), resized to ``size`` (bilinear).

    ``augment_seed`` applies a seeded random-resized crop and horizontal flip (training augmentation); ``shapes``
    collects the image's own (H, W, C) before it was fitted to the model input. Raises
    :class:`ImageError` for anything that is not a usable image, including headers claiming more pixels than
    :func:`max_pixels` (decompression bombs), before any pixel is decoded.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    label = name or (str(src) if not isinstance(src, (bytes, bytearray, memoryview)) else "image bytes")
    try:
        fp = io.BytesIO(bytes(src)) if isinstance(src, (bytes, bytearray, memoryview)) else open(src, "rb")
    except OSError as exc:
        raise ImageError(label, exc.strerror or str(exc)) from None
    with fp:
        try:
            with Image.open(fp) as im:
                w0, h0 = im.size
                if w0 * h0 > max_pixels():
                    raise ImageError(label, f"its header claims {w0}x{h0} pixels ({w0 * h0 / 1e6:.0f} Mpx), more than "
                                            f"the {max_pixels() / 1e6:.0f} Mpx edgekit decodes (decompression bomb?)")
                if shapes is not None:  # as stored (before any draft scaling or EXIF rotation)
                    grey = im.mode in ("1", "L", "LA", "I", "F") or im.mode.startswith("I;16")
                    shapes.add((h0, w0, 1 if grey else 3))
                if size is not None and augment_seed is None and im.format == "JPEG":
                    im.draft(im.mode, (size[1], size[0]))  # decode big JPEGs at a reduced scale (never below size)
                im = ImageOps.exif_transpose(im)
                if im.mode.startswith("I;16") or im.mode in ("I", "F"):  # 16-bit / 32-bit grey to 0..255
                    arr = np.asarray(im, dtype=np.float32)
                    wide = im.mode.startswith("I;16") or float(arr.max(initial=0)) > 255
                    arr = np.clip(np.rint(arr / (257.0 if wide else 1.0)), 0, 255).astype(np.uint8)[..., None]
                else:
                    arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
        except ImageError:
            raise
        except Image.DecompressionBombError as exc:  # Pillow's own hard limit (2x its default) hit inside open()
            found = re.search(r"\((\d+) pixels\)", str(exc))
            px = f"{int(found.group(1)) / 1e6:.0f} Mpx" if found else "too many pixels"
            raise ImageError(label, f"its header claims {px}, more than the {max_pixels() / 1e6:.0f} Mpx edgekit "
                                    "decodes (decompression bomb?)") from None
        except UnidentifiedImageError:
            raise ImageError(label, "not an image Pillow can read (unknown format or corrupt header)") from None
        except Exception as exc:  # noqa: BLE001 - Pillow raises many types on hostile files
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ImageError(label, reason) from None
    if arr.ndim != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageError(label, f"decoded to an empty array {arr.shape}")
    arr = fit_channels(arr, channels)
    if augment_seed is None and size is None:
        return arr
    return _resize_one(arr, size, augment_seed)


def _resize_one(arr: np.ndarray, size, augment_seed: int | None) -> np.ndarray:
    from PIL import Image

    h, w = arr.shape[:2]
    box = (0.0, 0.0, float(w), float(h))
    flip = False
    if augment_seed is not None:
        rng = np.random.default_rng(augment_seed)
        box = crop_box(rng, w, h)
        flip = bool(rng.integers(2))
    target = (size[1], size[0]) if size is not None else (w, h)
    if target == (w, h) and box == (0.0, 0.0, float(w), float(h)):
        out = arr
    else:
        planes = [np.asarray(Image.fromarray(arr[:, :, c]).resize(target, Image.BILINEAR, box=box))
                  for c in range(arr.shape[2])]
        out = np.stack(planes, axis=-1)
    return out[:, ::-1] if flip else out


def list_images(root: Path) -> tuple[list[Path], list[int] | None, list[str] | None]:
    """Image files under ``root`` (recursive, sorted), their labels and class names (one sub-folder per class;
    unlabelled when any image sits directly in ``root``)."""
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise DataError(f"no images ({', '.join(s[1:] for s in IMAGE_SUFFIXES)}) under {str(root)!r}",
                        hint="point at a folder of images, one sub-folder per class for training")
    rel = [p.relative_to(root).parts for p in files]
    if not all(len(parts) >= 2 for parts in rel):
        return files, None, None
    class_names = sorted({parts[0] for parts in rel})
    index = {n: i for i, n in enumerate(class_names)}
    return files, [index[parts[0]] for parts in rel], class_names


class SkipLog:
    """Thread-safe record of skipped unreadable images: a count, the first few names with the reason, and (strict)
    the error to raise. Shared by the loaders and the tf.data pipelines of one source."""

    KEEP = 5

    def __init__(self, strict: bool = False):
        self.strict = strict
        self._lock = threading.Lock()
        self._names: set[str] = set()
        self.examples: list[tuple[str, str]] = []
        self.error: DataError | None = None

    @property
    def count(self) -> int:
        return len(self._names)

    @property
    def names(self) -> set[str]:
        """Every distinct unreadable file (or record) seen."""
        with self._lock:
            return set(self._names)

    def record(self, err: ImageError) -> None:
        """Count ``err``; in strict mode raise it as a DataError naming this file (``error`` keeps the first one
        seen, for pipelines that surface it later). Loaders that decode in parallel raise the first failure in file
        order, so the error does not depend on thread timing."""
        mine = None
        with self._lock:
            if err.name not in self._names:
                self._names.add(err.name)
                if len(self.examples) < self.KEEP:
                    self.examples.append((err.name, err.reason))
            if self.strict:
                mine = DataError(
                    f"unreadable image {err.name}: {err.reason}",
                    hint="remove or replace the file, or drop --strict-data to skip unreadable images with a warning")
                self.error = self.error or mine
        if mine is not None:
            raise mine

    def summary(self, total: int | None, advice: bool = True) -> str:
        of = f" of {total}" if total else ""
        names = "; ".join(f"{Path(n).name if os.sep in n else n} ({r})" for n, r in self.examples)
        more = " ..." if self.count > len(self.examples) else ""
        return (f"skipped {self.count} unreadable image{'s' if self.count != 1 else ''}{of}: {names}{more}"
                + (" (--strict-data / strict_data=True makes the first one an error)" if advice else ""))

    def warn(self, total: int | None, stacklevel: int = 3) -> None:
        if self.count:
            warnings.warn(self.summary(total), EdgekitWarning, stacklevel=stacklevel)

    def to_dict(self) -> dict:
        return {"skipped": self.count, "examples": [f"{n}: {r}" for n, r in self.examples]}


def _quiet_pillow_bomb_warning() -> None:
    """Pillow warns (DecompressionBombWarning) below its hard limit; edgekit checks the size itself first."""
    try:
        from PIL import Image

        warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
    except ImportError:  # pragma: no cover - pillow is a dependency
        pass


_quiet_pillow_bomb_warning()
