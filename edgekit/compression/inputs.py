"""A model's inputs and the data that feeds them: input shapes, preprocessing, the training/eval source for a
model, the seed, and whether the model outputs probabilities (used by training, fitting and evaluation alike)."""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..errors import DataError, InvalidArgument
from .. import data as data_mod, models


def preprocess_for(model: Any, preprocess: str | None = None) -> str:
    """The preprocessing the model expects (``edgekit.models.preprocess_mode``), unless given explicitly."""
    if preprocess is not None:
        return preprocess

    return models.preprocess_mode(model)


def input_specs(model) -> tuple[list[tuple], list[str]]:
    """(shape without batch, name) of every model input; training needs fixed shapes."""
    shapes, names = [], []
    for t in model.inputs:
        dims = tuple(t.shape[1:])
        if any(d is None for d in dims):
            raise InvalidArgument(f"model {model.name!r} has an input of variable shape {tuple(t.shape)}; training "
                                  "needs fixed input shapes",
                                  hint="build it with a fixed size (--resolution, --input-channels)")
        shapes.append(tuple(int(d) for d in dims))
        names.append(t.name.split(":")[0])
    return shapes, names


def input_shape_of(model) -> tuple[int, int, int]:
    """The (H, W, C) of a single-image-input model (zoo-built teachers and students)."""
    shapes, _ = input_specs(model)
    if len(shapes) != 1 or len(shapes[0]) != 3:
        raise InvalidArgument(f"model {model.name!r} needs a single fixed (H, W, C) input here; it has "
                              f"{model.input_shape}", hint="build it with --resolution and --input-channels")
    return shapes[0]  # type: ignore[return-value]


def resolve_data(data: Any, model, *, split: str = "train", limit: int | None = None, seed: int = 0,
                 preprocess: str | None = None, strict: bool = False, image_key: str | None = None,
                 label_key: str | None = None, labelled: bool = True):
    """``data`` opened as a :class:`edgekit.data.Source` for ``model``'s input(s); ``limit`` keeps a seeded
    random subset (TFRecords: the first ``limit`` records)."""

    if not isinstance(data, (str, os.PathLike, data_mod.Dataset, data_mod.Source, np.ndarray, tuple, list)):
        raise InvalidArgument(f"data must be a source (dataset name, folder, TFRecords, .npz), a Dataset or arrays; "
                              f"received {type(data).__name__}")
    shapes, names = input_specs(model)
    keys = {k: v for k, v in (("image_key", image_key), ("label_key", label_key)) if v is not None}
    mode = data.preprocess if isinstance(data, data_mod.Dataset) and data.preprocess != "as-given" else \
        preprocess_for(model, preprocess)
    src = data_mod.open_source(data, input_shape=shapes if len(shapes) > 1 else shapes[0], input_names=names,
                               preprocess_mode=mode, split=split, strict=strict, **keys)
    if limit is not None:
        if limit <= 0:
            raise InvalidArgument(f"limit must be positive; received {limit}", hint="give a positive sample count")
        if isinstance(src, data_mod.IndexedSource):
            if limit < len(src):
                src = src.subset(np.sort(np.random.default_rng(seed).permutation(len(src))[:limit]))
        else:
            src = src.limited(limit)
    if labelled and not src.labelled:
        raise DataError(f"{src.name} has no labels; training needs labelled data",
                        hint="use a folder with one sub-folder per class, an .npz with 'x' and 'y', or TFRecords "
                             "with a label feature (--label-key)")
    return src


def as_source(ds, model):
    """An in-memory Dataset as a Source for ``model`` (its arrays, checked against the model's inputs)."""
    return resolve_data(ds, model, labelled=ds.y is not None)


def seed_everything(seed: int) -> None:
    from .._keras import keras

    keras.utils.set_random_seed(int(seed))


def outputs_probabilities(model) -> bool:
    """True when the model's last layer applies softmax (its outputs are probabilities, not logits)."""
    last = model.layers[-1]
    inner = getattr(last, "layer", last)
    act = getattr(inner, "activation", None)
    act = getattr(act, "activation", act)  # tfmot's QAT wraps it in a QuantizeAwareActivation
    return getattr(act, "__name__", "") == "softmax"
