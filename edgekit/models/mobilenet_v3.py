"""MobileNet v3 Small and Large (platform-aware NAS + NetAdapt, hard-swish, squeeze-excite; tf-keras application).

Howard et al., "Searching for MobileNetV3", https://arxiv.org/abs/1905.02244

The graph rescales its input itself: feed raw 0-255 pixels. Paper (Table 3): Large 1.0-224 5.4 M params, 219 M
mult-adds; Small 1.0-224 2.5 M, 56 M. Measured on the tf-keras graphs: 5.51 M / 216.6 M and 2.55 M / 56.5 M.
"""
from __future__ import annotations

from ._blocks import dropout_option
from ._builder import ALPHA_RANGE, BuildConfig, Imagenet, check_range, register_model
from ._keras_apps import build_keras_app

PAPER = dict(paper="Searching for MobileNetV3", arxiv="https://arxiv.org/abs/1905.02244")


def _build(size: str, cfg: BuildConfig):
    from .._keras import keras

    alpha = check_range("alpha", cfg.get("alpha", 1.0), *ALPHA_RANGE)
    dropout = dropout_option(cfg, 0.2)
    fn = getattr(keras.applications, f"MobileNetV3{size.capitalize()}")
    return build_keras_app(cfg, fn, f"mobilenet_v3_{size}_{alpha:.2f}_{cfg.resolution}", alpha=alpha,
                           dropout_rate=dropout, include_preprocessing=True)


@register_model("mobilenet_v3_small", family="mobilenet_v3", resolution=224, min_resolution=32, preprocess="raw",
                options=("alpha", "dropout"), imagenet=Imagenet(resolutions=(224,), alphas=(0.75, 1.0)),
                description="MobileNet v3 Small; alpha in (0, 1.5]", **PAPER)
def mobilenet_v3_small(cfg: BuildConfig):
    return _build("small", cfg)


@register_model("mobilenet_v3_large", family="mobilenet_v3", resolution=224, min_resolution=32, preprocess="raw",
                options=("alpha", "dropout"), imagenet=Imagenet(resolutions=(224,), alphas=(0.75, 1.0)),
                description="MobileNet v3 Large; alpha in (0, 1.5]", **PAPER)
def mobilenet_v3_large(cfg: BuildConfig):
    return _build("large", cfg)
