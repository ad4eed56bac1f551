"""Xception: depthwise-separable convolutions throughout, with residual connections (tf-keras application).

Chollet, "Xception: Deep Learning with Depthwise Separable Convolutions", https://arxiv.org/abs/1610.02357

22.9 M params, ~8.4 B mult-adds at 299 px; the stem's valid convolutions need at least 71 px.
"""
from __future__ import annotations

from ._builder import BuildConfig, Imagenet, register_model
from ._keras_apps import build_keras_app

PAPER = dict(paper="Xception: Deep Learning with Depthwise Separable Convolutions",
             arxiv="https://arxiv.org/abs/1610.02357")


@register_model("xception", family="xception", resolution=299, min_resolution=71, preprocess="tf",
                imagenet=Imagenet(resolutions=(299,)), description="Xception (tf-keras)", **PAPER)
def xception(cfg: BuildConfig):
    from .._keras import keras

    return build_keras_app(cfg, keras.applications.Xception, f"xception_{cfg.resolution}")
