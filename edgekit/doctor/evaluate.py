"""What the doctor's budget is measured in: top-1 accuracy on labelled eval data, or, without labels, top-1
agreement with the float model; and whether the eval set is large enough to resolve the budget at all.

The standard error of an accuracy ``p`` measured on ``n`` samples is ``sqrt(p (1 - p) / n)``. A drop can only be
held to ``max_drop`` when two standard errors (a ~95 % interval) fit inside it, so the doctor asks for
``n >= 4 p (1 - p) / max_drop^2`` samples (``p`` the float model's accuracy, kept away from 0 and 1 by the budget
itself: a perfect float model does not make one sample enough).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, InvalidArgument
from ..specs.doctor import check_max_drop  # noqa: F401 - its home is the spec; imported from here too
from ..exporters.calibration import _load
from ..exporters.verify import classifier_top1
from ..verification import top1_accuracy

#: how many standard errors must fit in the budget
Z = 2.0


@dataclass
class EvalSet:
    """Held-out samples, their labels (or None) and the float model's top-1 predictions on them."""

    x: np.ndarray
    labels: np.ndarray | None
    source: str
    reference: np.ndarray
    float_accuracy: float  # fraction 0..1; 1.0 when measured as agreement with the float model itself

    @property
    def labelled(self) -> bool:
        return self.labels is not None

    @property
    def metric(self) -> str:
        return "accuracy" if self.labelled else "top-1 agreement with the float model"

    def __len__(self) -> int:
        return int(len(self.x))

    def score(self, top1: np.ndarray) -> float:
        """Accuracy (or agreement with the float model) of ``top1`` predictions, a fraction 0..1."""
        return top1_accuracy(top1, self.labels if self.labels is not None else self.reference)


def standard_error(p: float, n: int) -> float:
    """Standard error of an accuracy ``p`` (fraction) measured on ``n`` samples, as a fraction."""
    return math.sqrt(max(p * (1.0 - p), 0.0) / max(n, 1))


def samples_needed(p: float, max_drop: float) -> int | None:
    """Samples needed so that ``Z`` standard errors of an accuracy near ``p`` (fraction) fit in ``max_drop``
    (points); None when no finite number does (a budget of 0)."""
    d = max_drop / 100.0
    if d <= 0:
        return None
    var = max(p * (1.0 - p), d * (1.0 - d))
    return int(math.ceil(Z * Z * var / (d * d)))


def check_resolution(ev: EvalSet, max_drop: float, *, limited: bool) -> int:
    """Raise InvalidArgument when ``ev`` is too small to resolve ``max_drop``; returns the samples needed."""
    p = ev.float_accuracy if ev.labelled else 1.0 - max_drop / 100.0
    need = samples_needed(p, max_drop)
    more = ("raise --eval-samples or give a larger --eval-data" if limited
            else "give a larger --eval-data (e.g. a built-in dataset's whole test split)")
    if need is None:
        raise InvalidArgument("max_drop=0 cannot be resolved on a finite eval set (any measured drop is noise "
                              "of at least one sample)", hint=f"give a positive budget, e.g. --max-drop 1; {more}")
    if len(ev) < need:
        se = 100.0 * standard_error(p, len(ev))
        what = f"an accuracy of {100 * p:.1f} %" if ev.labelled else f"an agreement of {100 * p:.1f} %"
        raise InvalidArgument(f"{len(ev)} eval samples cannot resolve --max-drop {max_drop:g}: the standard error of "
                              f"{what} on {len(ev)} samples is {se:.2f} points, and {Z:g} standard errors must fit "
                              f"in the budget; that needs at least {need} samples",
                              hint=f"{more}, or a larger --max-drop")
    return need


def load_eval(eval_data, kmodel, *, inputs, preprocess: str | None, eval_samples: int | None, seed: int,
              batch_size: int = 64) -> EvalSet:
    """Eval samples (a built-in dataset's test split, an image folder with one sub-folder per class, an ``.npz``
    with ``x`` and optional ``y``, or Python arrays) and the float model's predictions on them."""

    if eval_data is None:
        raise InvalidArgument("the doctor needs --eval-data (held-out samples to measure accuracy on)",
                              hint="e.g. --eval-data fashion-mnist (its test split), an image folder with one "
                                   "sub-folder per class, or an .npz with x and y")
    if eval_samples is not None and (isinstance(eval_samples, bool) or not isinstance(eval_samples, int)
                                     or eval_samples <= 0):
        raise InvalidArgument(f"eval_samples must be a positive integer; received {eval_samples!r}")
    try:
        ds = _load(eval_data, inputs, preprocess, "test", eval_samples, seed)  # what export verifies on
    except DataError as exc:
        raise type(exc)(f"--eval-data: {exc.message}", hint=exc.hint) from exc
    outs = kmodel.predict(ds.x, batch_size=batch_size, verbose=0)
    outs = [np.asarray(o) for o in (outs if isinstance(outs, (list, tuple)) else [outs])]
    top1 = classifier_top1(outs, f"model {kmodel.name!r}")
    labels = ds.y
    if labels is not None:
        classes = outs[0].shape[1]
        if labels.min() < 0 or labels.max() >= classes:
            raise DataError(f"--eval-data: labels of {ds.source} go from {int(labels.min())} to {int(labels.max())}, "
                            f"the model has {classes} classes",
                            hint="give eval data labelled with the model's own classes, or drop the labels (then the "
                                 "doctor measures agreement with the float model)")
        folder = isinstance(eval_data, (str, os.PathLike)) and Path(str(eval_data)).expanduser().is_dir()
        if folder and ds.num_classes != classes:
            raise DataError(f"--eval-data: {ds.source} has {ds.num_classes} class folders, the model {classes} "
                            "classes", hint="one sub-folder per model class, named so that they sort in the model's "
                                            "class order (or unlabelled images: then agreement with float is measured)")
    ev = EvalSet(ds.x, labels, ds.source, top1, 1.0)
    if labels is not None:
        ev.float_accuracy = ev.score(top1)
    return ev
