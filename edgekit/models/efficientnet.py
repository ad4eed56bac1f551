"""EfficientNet B0-B7: compound scaling of width, depth and resolution (tf-keras applications).

Tan & Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks",
https://arxiv.org/abs/1905.11946

The graph normalises its input itself (``Rescaling`` + ``Normalization``): feed raw 0-255 pixels. B0: 5.3 M params,
0.39 B mult-adds at 224 px.
"""
from __future__ import annotations

from ._blocks import dropout_option
from ._builder import BuildConfig, Imagenet, register_model
from ._keras_apps import build_keras_app

PAPER = dict(paper="EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks",
             arxiv="https://arxiv.org/abs/1905.11946")
#: variant -> (width, depth, default resolution, dropout) as in the paper / tf-keras
VARIANTS = {"b0": (1.0, 1.0, 224, 0.2), "b1": (1.0, 1.1, 240, 0.2), "b2": (1.1, 1.2, 260, 0.3),
            "b3": (1.2, 1.4, 300, 0.3), "b4": (1.4, 1.8, 380, 0.4), "b5": (1.6, 2.2, 456, 0.4),
            "b6": (1.8, 2.6, 528, 0.5), "b7": (2.0, 3.1, 600, 0.5)}


def _build(variant: str, cfg: BuildConfig):
    from .._keras import keras

    dropout = dropout_option(cfg, VARIANTS[variant][3])
    fn = getattr(keras.applications, f"EfficientNet{variant.upper()}")
    model = build_keras_app(cfg, fn, f"efficientnet_{variant}_{cfg.resolution}")
    if cfg.include_top:  # the B0-B7 builders fix the rate; the layer reads it at call time
        model.get_layer("top_dropout").rate = dropout
    return model


def _register(variant: str) -> None:
    width, depth, res, _ = VARIANTS[variant]

    @register_model(f"efficientnet_{variant}", family="efficientnet", resolution=res, min_resolution=32,
                    preprocess="raw", options=("dropout",), imagenet=Imagenet(resolutions=(res,)),
                    description=f"EfficientNet-{variant.upper()} (width {width}, depth {depth}, {res} px)", **PAPER)
    def entry(cfg: BuildConfig):
        return _build(variant, cfg)


for _v in VARIANTS:
    _register(_v)
