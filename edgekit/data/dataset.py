"""The in-memory :class:`Dataset` (model-ready samples) and the check of arrays against a model's input shape(s)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np

from ..errors import DataError

#: one input's shape without the batch dimension; None = any size
Shape = tuple


@dataclass
class Dataset:
    """Model-ready samples: ``x`` float32 (N, ...) for one model input, or a list of such arrays (several inputs);
    ``y`` int64 labels or None."""

    x: np.ndarray | list
    y: np.ndarray | None
    source: str
    class_names: list[str] | None = None
    preprocess: str = "unit"
    meta: dict = field(default_factory=dict)

    @property
    def inputs(self) -> list[np.ndarray]:
        """The input arrays as a list (one per model input)."""
        return list(self.x) if isinstance(self.x, (list, tuple)) else [self.x]

    def __len__(self) -> int:
        return int(self.inputs[0].shape[0])

    @property
    def labelled(self) -> bool:
        return self.y is not None

    @property
    def num_classes(self) -> int | None:
        if self.class_names:
            return len(self.class_names)
        return int(self.y.max()) + 1 if self.y is not None and len(self.y) else None

    def subset(self, index: np.ndarray | slice) -> "Dataset":
        x = [a[index] for a in self.x] if isinstance(self.x, (list, tuple)) else self.x[index]
        return Dataset(x, None if self.y is None else self.y[index], self.source, self.class_names,
                       self.preprocess, dict(self.meta))

    def take(self, n: int | None, seed: int = 0) -> "Dataset":
        """A seeded random subset of at most ``n`` samples (all of them, shuffled, when n is None)."""
        order = np.random.default_rng(seed).permutation(len(self))
        return self.subset(order if n is None else order[:n])

    def split(self, fraction: float, seed: int = 0) -> tuple["Dataset", "Dataset"]:
        """Split into (rest, held-out) with ``fraction`` of the samples held out, seeded."""
        rest, held = split_indices(len(self), fraction, seed)
        return self.subset(rest), self.subset(held)

    def batches(self, batch_size: int) -> Iterator[tuple]:
        """(x, y) numpy batches in order (x a list for several inputs)."""
        for i in range(0, len(self), batch_size):
            sl = slice(i, i + batch_size)
            part = self.subset(sl)
            yield part.x, part.y


def split_indices(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(rest, held-out) positions of a seeded ``fraction`` hold-out of ``n`` samples."""
    if not 0.0 < fraction < 1.0:
        raise DataError(f"split fraction must be in (0, 1); received {fraction}",
                        hint="give val_fraction (--val-fraction) between 0 and 1, e.g. 0.1")
    order = np.random.default_rng(seed).permutation(n)
    k = max(1, int(round(n * fraction)))
    return order[k:], order[:k]


def as_shapes(input_shape) -> list[tuple]:
    """One shape (a sequence of ints/None) or a list of shapes -> a list of shape tuples."""
    if input_shape is None:
        raise DataError("no input shape given", hint="pass input_shape=(H, W, C) or one shape per model input")
    items = list(input_shape)
    if items and all(isinstance(v, (list, tuple)) for v in items):
        return [tuple(None if d is None else int(d) for d in s) for s in items]
    return [tuple(None if d is None else int(d) for d in items)]


def is_image_shape(shape: Sequence) -> bool:
    """(H, W, C) with 1 or 3 channels: an input that image sources (folders, built-ins, TFRecords) can feed."""
    return len(shape) == 3 and shape[-1] in (1, 3)


def check_arrays(xs: list[np.ndarray], y, where: str, shapes: list[tuple]) -> tuple[list[np.ndarray], np.ndarray | None]:
    """Check already preprocessed inputs (one array per model input) and labels; float32 x, int64 y."""
    if len(xs) != len(shapes):
        raise DataError(f"{where} holds {len(xs)} input array(s), the model has {len(shapes)} inputs",
                        hint="give one array per model input (npz keys named after the inputs, or x0, x1, ...)")
    out = []
    for i, (x, want) in enumerate(zip(xs, shapes)):
        label = where if len(shapes) == 1 else f"{where} (input {i})"
        x = np.asarray(x)
        if x.dtype.kind not in "biuf":
            raise DataError(f"arrays in {label} have dtype {x.dtype}; model inputs must be real numbers",
                            hint="save numeric arrays, e.g. x.astype(np.float32)")
        if x.ndim == len(want) and len(want) >= 2 and want[-1] == 1 and _fits(x.shape[1:], want[:-1]):
            x = x[..., None]  # (N, H, W) for a (H, W, 1) input
        if x.ndim != len(want) + 1 or not _fits(x.shape[1:], want):
            dims = ", ".join("?" if d is None else str(d) for d in want)
            raise DataError(f"arrays in {label} have shape {tuple(x.shape)}, the model needs (N, {dims})",
                            hint="save model-ready (already preprocessed) inputs, one sample per row")
        if len(x) == 0:
            raise DataError(f"{label} holds no samples", hint="save at least one sample (one per row)")
        x = x.astype(np.float32, copy=False)
        if not np.isfinite(x).all():
            raise DataError(f"arrays in {label} hold NaN or infinite values ({int(np.sum(~np.isfinite(x)))} of "
                            f"{x.size})", hint="clean the inputs (np.nan_to_num) or drop those samples")
        out.append(x)
    counts = {len(x) for x in out}
    if len(counts) > 1:
        raise DataError(f"{where}: the inputs hold different numbers of samples "
                        f"({' but '.join(f'{len(x)} samples' for x in out)})",
                        hint="give every input the same number of rows")
    if y is not None:
        y = np.asarray(y)
        if y.dtype.kind not in "biu" and not (y.dtype.kind == "f" and np.all(np.mod(y, 1) == 0)):
            raise DataError(f"labels in {where} have dtype {y.dtype}; edgekit trains on integer class labels",
                            hint="save class indices 0..K-1 as integers (not one-hot, not strings)")
        y = y.astype(np.int64).reshape(-1)
        if len(y) != len(out[0]):
            raise DataError(f"{where}: {len(out[0])} inputs but {len(y)} labels",
                            hint="give exactly one label per sample")
        if len(y) and y.min() < 0:
            raise DataError(f"{where}: negative label {int(y.min())}", hint="labels are class indices 0..K-1")
    return out, y


def _fits(have: Sequence[int], want: Sequence) -> bool:
    return len(have) == len(want) and all(w is None or int(h) == w for h, w in zip(have, want))
