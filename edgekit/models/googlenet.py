"""GoogLeNet (Inception v1), built here: nine Inception modules with 1x1/3x3/5x5/pool branches.

Szegedy et al., "Going Deeper with Convolutions", https://arxiv.org/abs/1409.4842

As in common re-implementations (torchvision), every convolution is followed by batch normalisation, local
response normalisation and the two auxiliary classifiers are left out; the 5x5 branch keeps the paper's 5x5 kernel.
7.0 M params (BN included), 1.58 B mult-adds at 224 px as built here (paper: 1.5 B mult-adds).
"""
from __future__ import annotations

from ._blocks import classifier, conv_bn_relu, dropout_option
from ._builder import BuildConfig, finish_built_here, fresh_names, register_model

PAPER = dict(paper="Going Deeper with Convolutions", arxiv="https://arxiv.org/abs/1409.4842")
#: module -> (#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj), paper Table 1
INCEPTION = {"3a": (64, 96, 128, 16, 32, 32), "3b": (128, 128, 192, 32, 96, 64),
             "4a": (192, 96, 208, 16, 48, 64), "4b": (160, 112, 224, 24, 64, 64), "4c": (128, 128, 256, 24, 64, 64),
             "4d": (112, 144, 288, 32, 64, 64), "4e": (256, 160, 320, 32, 128, 128),
             "5a": (256, 160, 320, 32, 128, 128), "5b": (384, 192, 384, 48, 128, 128)}


def _inception(x, spec, name: str):
    from .._keras import layers

    c1, r3, c3, r5, c5, pp = spec
    b1 = conv_bn_relu(x, c1, 1, f"{name}_1x1")
    b2 = conv_bn_relu(conv_bn_relu(x, r3, 1, f"{name}_3x3_reduce"), c3, 3, f"{name}_3x3")
    b3 = conv_bn_relu(conv_bn_relu(x, r5, 1, f"{name}_5x5_reduce"), c5, 5, f"{name}_5x5")
    b4 = layers.MaxPooling2D(3, strides=1, padding="same", name=f"{name}_pool")(x)
    b4 = conv_bn_relu(b4, pp, 1, f"{name}_pool_proj")
    return layers.Concatenate(name=f"{name}_output")([b1, b2, b3, b4])


@register_model("googlenet", aliases=("inception_v1",), family="googlenet", resolution=224, min_resolution=32,
                preprocess="torch", options=("dropout",), description="GoogLeNet / Inception v1 (with BN), built here",
                **PAPER)
def googlenet(cfg: BuildConfig):
    from .._keras import keras, layers

    dropout = dropout_option(cfg, 0.4)
    with fresh_names():
        inputs = layers.Input(shape=cfg.input_shape, name="input_1")
        x = conv_bn_relu(inputs, 64, 7, "conv1_7x7_s2", strides=2)
        x = layers.MaxPooling2D(3, strides=2, padding="same", name="pool1_3x3_s2")(x)
        x = conv_bn_relu(x, 64, 1, "conv2_3x3_reduce")
        x = conv_bn_relu(x, 192, 3, "conv2_3x3")
        x = layers.MaxPooling2D(3, strides=2, padding="same", name="pool2_3x3_s2")(x)
        for key, spec in INCEPTION.items():
            if key == "4a":
                x = layers.MaxPooling2D(3, strides=2, padding="same", name="pool3_3x3_s2")(x)
            elif key == "5a":
                x = layers.MaxPooling2D(3, strides=2, padding="same", name="pool4_3x3_s2")(x)
            x = _inception(x, spec, f"inception_{key}")
        if cfg.include_top:
            x = classifier(x, cfg.classes, dropout)
        model = keras.Model(inputs, x)
    return finish_built_here(model, cfg, f"googlenet_{cfg.resolution}")
