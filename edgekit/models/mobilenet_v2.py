"""MobileNet v2: inverted residuals with linear bottlenecks, width multiplier alpha (tf-keras application).

Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks", https://arxiv.org/abs/1801.04381

1.0-224: 3.5 M params, 300 M mult-adds (paper).
"""
from __future__ import annotations

from ._builder import ALPHA_RANGE, BuildConfig, Imagenet, check_range, register_model
from ._keras_apps import build_keras_app

PAPER = dict(paper="MobileNetV2: Inverted Residuals and Linear Bottlenecks", arxiv="https://arxiv.org/abs/1801.04381")


@register_model("mobilenet_v2", family="mobilenet_v2", resolution=224, min_resolution=32, preprocess="tf",
                options=("alpha",),
                imagenet=Imagenet(resolutions=(96, 128, 160, 192, 224), alphas=(0.35, 0.5, 0.75, 1.0, 1.3, 1.4)),
                description="MobileNet v2; alpha in (0, 1.5]", **PAPER)
def mobilenet_v2(cfg: BuildConfig):
    from .._keras import keras

    alpha = check_range("alpha", cfg.get("alpha", 1.0), *ALPHA_RANGE)
    return build_keras_app(cfg, keras.applications.MobileNetV2, f"mobilenet_v2_{alpha:.2f}_{cfg.resolution}",
                           alpha=alpha)
