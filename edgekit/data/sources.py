"""Data sources opened for a model input, without holding the data: image folders, built-in datasets, arrays
(TFRecord files live in :mod:`edgekit.data.tfrecord`).

A :class:`Source` knows how many samples it has, their labels and class names; ``take(n, seed)`` decodes just
``n`` of them into an in-memory :class:`~edgekit.data.Dataset` (calibration, verification), ``split`` holds out a
seeded fraction, ``batches`` iterates in order, and :func:`edgekit.data.stream.tf_dataset` streams it through
tf.data for training. Unreadable images are skipped and counted in ``skips`` (or raise with ``strict``).
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ..errors import DataError
from . import images as img
from .dataset import Dataset, split_indices

class Source:
    """Base class. ``kind``: images | builtin | arrays | tfrecord; ``name`` is what reports and manifests show."""

    kind = "source"

    def __init__(self, name: str, shapes: list[tuple], preprocess: str, class_names: list[str] | None,
                 skips: img.SkipLog | None = None, meta: dict | None = None):
        self.name, self.shapes, self.preprocess, self.class_names = name, shapes, preprocess, class_names
        self.skips = skips or img.SkipLog()
        self.meta = dict(meta or {})

    # Dataset-compatible surface ---------------------------------------------------------------------------------
    @property
    def source(self) -> str:
        return self.name

    @property
    def labelled(self) -> bool:
        raise NotImplementedError

    @property
    def num_classes(self) -> int | None:
        return len(self.class_names) if self.class_names else None

    def max_label(self) -> int | None:
        """The largest label, when known without reading the data (None otherwise)."""
        return None

    def __len__(self) -> int:
        raise NotImplementedError

    def take(self, n: int | None, seed: int = 0) -> Dataset:
        """``n`` samples (all when None) chosen at random (seeded), decoded into memory; unreadable ones replaced."""
        raise NotImplementedError

    def split(self, fraction: float, seed: int = 0) -> tuple["Source", "Source"]:
        """(rest, held-out) with a seeded ``fraction`` held out."""
        raise NotImplementedError

    def batches(self, batch_size: int) -> Iterator[tuple]:
        """(x, y) numpy batches over every readable sample, in order."""
        raise NotImplementedError

    def describe(self) -> dict:
        """What reports record about the source."""
        return {"source": self.name, "kind": self.kind, "samples": len(self), "preprocess": self.preprocess,
                **({"classes": len(self.class_names)} if self.class_names else {})}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {len(self)} samples)"


class IndexedSource(Source):
    """A source whose samples are addressed by position (``index`` into the underlying items)."""

    def __init__(self, name, shapes, preprocess, class_names, labels: np.ndarray | None, index: np.ndarray | None,
                 n_items: int, **kw):
        super().__init__(name, shapes, preprocess, class_names, **kw)
        self.labels = labels
        self.index = np.arange(n_items) if index is None else np.asarray(index)

    @property
    def labelled(self) -> bool:
        return self.labels is not None

    def max_label(self) -> int | None:
        return int(self.labels[self.index].max()) if self.labels is not None and len(self.index) else None

    def __len__(self) -> int:
        return int(len(self.index))

    def subset(self, positions) -> "IndexedSource":
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        new.index = self.index[np.asarray(positions, dtype=np.int64)]
        return new

    def split(self, fraction: float, seed: int = 0):
        rest, held = split_indices(len(self), fraction, seed)
        return self.subset(rest), self.subset(held)

    def take(self, n: int | None, seed: int = 0) -> Dataset:
        order = np.random.default_rng(seed).permutation(len(self))
        return self.read(order, n)

    def read(self, positions: Sequence[int], n: int | None = None, keep_order: bool = False) -> Dataset:
        """Decode the samples at ``positions`` until ``n`` are readable (``keep_order``: sorted by position)."""
        want = len(positions) if n is None else min(int(n), len(positions))
        got: list[tuple[int, list[np.ndarray]]] = []
        i = 0
        while len(got) < want and i < len(positions):
            chunk = [int(p) for p in positions[i:i + want - len(got)]]  # only the deficit: no wasted decodes
            i += len(chunk)
            for pos, sample in zip(chunk, self._decode_many([int(self.index[p]) for p in chunk])):
                if sample is not None and len(got) < want:
                    got.append((pos, sample))
        if not got:
            what = "image" if self.kind == "images" else "sample"
            raise DataError(f"no readable {what} in {self.name!r}"
                            + (f": {self.skips.summary(len(self), advice=False)}" if self.skips.count else ""),
                            hint="every file tried failed to decode: remove or replace them")
        if keep_order:
            got.sort(key=lambda t: t[0])
        pos = np.array([p for p, _ in got], dtype=np.int64)
        xs = [np.stack([s[k] for _, s in got]) for k in range(len(got[0][1]))]
        y = None if self.labels is None else self.labels[self.index[pos]].astype(np.int64)
        meta = {"kind": self.kind, **self.meta, **({"skipped": self.skips.count} if self.skips.count else {})}
        if getattr(self, "source_shapes", None):
            meta["source_shapes"] = sorted(self.source_shapes)
        return Dataset(xs[0] if len(xs) == 1 else xs, y, self.name, self.class_names, self.preprocess, meta)

    def batches(self, batch_size: int):
        for i in range(0, len(self), batch_size):
            part = [int(j) for j in self.index[i:i + batch_size]]
            samples = [(j, s) for j, s in zip(part, self._decode_many(part)) if s is not None]
            if samples:
                xs = [np.stack([s[k] for _, s in samples]) for k in range(len(samples[0][1]))]
                y = None if self.labels is None else self.labels[[j for j, _ in samples]].astype(np.int64)
                yield (xs[0] if len(xs) == 1 else xs), y

    def items_at(self, positions, n: int | None = None, keep_order: bool = False) -> np.ndarray:
        """The underlying item numbers of the first ``n`` of ``positions`` (sorted by position: ``keep_order``), for
        sources that cannot fail to read a sample."""
        want = len(positions) if n is None else min(int(n), len(positions))
        pos = np.asarray(positions[:want], dtype=np.int64)
        return self.index[np.sort(pos) if keep_order else pos]

    def _decode_many(self, items: list[int]) -> list[list[np.ndarray] | None]:
        return [self.item(i) for i in items]

    def item(self, i: int, augment_seed: int | None = None) -> list[np.ndarray] | None:
        """The model-ready sample of underlying item ``i`` (one array per input), None when unreadable."""
        raise NotImplementedError


class ImageFolder(IndexedSource):
    """Image files (jpg, png, bmp, ...) under a folder; one sub-folder per class gives labels."""

    kind = "images"

    def __init__(self, root: Path, shape: tuple, preprocess: str, strict: bool = False):
        files, labels, class_names = img.list_images(root)
        self.files = [str(p) for p in files]
        self.root = root
        self.source_shapes: set = set()  # (H, W, C) of the images as stored, for every file decoded
        super().__init__(str(root), [shape], preprocess, class_names,
                         None if labels is None else np.asarray(labels, np.int64), None, len(files),
                         skips=img.SkipLog(strict))

    def pixels(self, i: int, augment_seed: int | None = None) -> np.ndarray | None:
        """uint8 (H, W, C) of file ``i`` at the model's size, None when unreadable (counted in ``skips``)."""
        h, w, c = self.shapes[0]
        try:
            return img.decode(self.files[i], (h, w), c, augment_seed=augment_seed, shapes=self.source_shapes)
        except img.ImageError as err:
            self.skips.record(err)
            return None

    def item(self, i: int, augment_seed: int | None = None):
        px = self.pixels(i, augment_seed)
        return None if px is None else [img.preprocess(px[None], self.preprocess)[0]]

    def _decode_many(self, items):
        if len(items) < 8:
            return [self.item(i) for i in items]
        with ThreadPoolExecutor(max_workers=4) as pool:
            return list(pool.map(self.item, items))


class BuiltinImages(IndexedSource):
    """A built-in dataset's split (uint8 images in memory: Fashion-MNIST's 47 MB), resized per sample."""

    kind = "builtin"

    def __init__(self, name: str, images: np.ndarray, labels: np.ndarray, class_names, shape: tuple,
                 preprocess: str, builtin: str):
        self.images = images
        super().__init__(name, [shape], preprocess, class_names, labels, None, len(labels),
                         meta={"builtin": builtin})

    def pixels(self, i: int, augment_seed: int | None = None) -> np.ndarray:
        h, w, c = self.shapes[0]
        px = img.fit_channels(self.images[i], c)
        if augment_seed is None:
            return img.resize_images(px[None], (h, w))[0]
        return img._resize_one(px, (h, w), augment_seed)

    def item(self, i: int, augment_seed: int | None = None):
        return [img.preprocess(self.pixels(i, augment_seed)[None], self.preprocess)[0]]

    def read(self, positions, n=None, keep_order=False):
        # vectorised: resize a whole selection at once (built-ins have no unreadable samples)
        items = self.items_at(positions, n, keep_order)
        h, w, c = self.shapes[0]
        x = img.to_model_input(self.images[items], (h, w, c), self.preprocess)
        return Dataset(x, self.labels[items].astype(np.int64), self.name, self.class_names, self.preprocess,
                       {"kind": self.kind, **self.meta, "source_shapes": [tuple(int(v) for v in self.images.shape[1:])]})


class Arrays(IndexedSource):
    """Model-ready arrays (one per model input), as given: no resizing, no preprocessing."""

    kind = "arrays"

    def __init__(self, name: str, xs: list[np.ndarray], y: np.ndarray | None, shapes: list[tuple],
                 class_names=None, preprocess: str = "as-given", meta: dict | None = None):
        self.xs = xs
        super().__init__(name, shapes, preprocess, class_names, y, None, len(xs[0]), meta=meta)

    def item(self, i: int, augment_seed: int | None = None):
        return [np.asarray(a[i], dtype=np.float32) for a in self.xs]

    def gather(self, items: np.ndarray) -> list[np.ndarray]:
        """Rows ``items`` of every input (float32)."""
        return [np.asarray(a[items], dtype=np.float32) for a in self.xs]

    def read(self, positions, n=None, keep_order=False):
        items = self.items_at(positions, n, keep_order)
        xs = self.gather(items)
        y = None if self.labels is None else self.labels[items]
        return Dataset(xs[0] if len(xs) == 1 else xs, y, self.name, self.class_names, self.preprocess,
                       {"kind": self.kind, **self.meta})

    def batches(self, batch_size: int):
        for i in range(0, len(self), batch_size):
            items = self.index[i:i + batch_size]
            xs = self.gather(items)
            yield (xs[0] if len(xs) == 1 else xs), (None if self.labels is None else self.labels[items])
