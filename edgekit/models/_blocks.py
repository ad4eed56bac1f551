"""Small functional building blocks with deterministic layer names, for the families built here."""
from __future__ import annotations

from typing import Any
from ..errors import InvalidArgument
from ._builder import check_range


def conv_bn_relu(x: Any, filters: int, kernel: int, name: str, *, strides: int = 1, padding: str = "same",
                 relu: bool = True) -> Any:
    """``{name}`` Conv2D (no bias) -> ``{name}_bn`` -> ``{name}_relu``."""
    from .._keras import layers

    x = layers.Conv2D(filters, kernel, strides=strides, padding=padding, use_bias=False, name=name)(x)
    x = layers.BatchNormalization(epsilon=1e-3, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x) if relu else x


def classifier(x: Any, classes: int, dropout: float, *, pool: bool = True) -> Any:
    """Global average pool -> dropout -> ``predictions`` Dense with softmax."""
    from .._keras import layers

    if pool:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if dropout > 0:
        x = layers.Dropout(dropout, name="dropout")(x)
    return layers.Dense(classes, activation="softmax", name="predictions")(x)


def dropout_option(cfg: Any, default: float) -> float:
    """The ``dropout`` option in [0, 1)."""

    rate = check_range("dropout", cfg.get("dropout", default), 0.0, 1.0, low_open=False)
    if rate >= 1.0:
        raise InvalidArgument(f"dropout must be in [0, 1); received dropout={rate!r}",
                              hint="use --dropout in [0, 1), e.g. 0.2 (1 would drop every feature)")
    return rate
