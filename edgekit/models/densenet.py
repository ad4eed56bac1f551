"""DenseNet 121/169/201 (tf-keras applications).

Huang et al., "Densely Connected Convolutional Networks", https://arxiv.org/abs/1608.06993

DenseNet-121: 8.1 M params, 2.83 B mult-adds at 224 px.
"""
from __future__ import annotations

from ._builder import BuildConfig, Imagenet, register_model
from ._keras_apps import build_keras_app

PAPER = dict(paper="Densely Connected Convolutional Networks", arxiv="https://arxiv.org/abs/1608.06993")


def _register(depth: int) -> None:
    @register_model(f"densenet{depth}", family="densenet", resolution=224, min_resolution=32, preprocess="torch",
                    imagenet=Imagenet(), description=f"DenseNet-{depth} (tf-keras)", **PAPER)
    def entry(cfg: BuildConfig):
        from .._keras import keras

        fn = getattr(keras.applications, f"DenseNet{depth}")
        return build_keras_app(cfg, fn, f"densenet{depth}_{cfg.resolution}")


for _d in (121, 169, 201):
    _register(_d)
