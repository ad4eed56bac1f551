"""MobileNet v1 with the paper's two knobs: width multiplier alpha and resolution multiplier rho.

Howard et al., "MobileNets: Efficient Convolutional Neural Networks for Mobile Vision Applications",
https://arxiv.org/abs/1704.04861

The graph and layer names are those of ``tf_keras.applications.MobileNet`` (so its ImageNet weights load), built
here so that any alpha in (0, 1.5] works: a layer never gets fewer than one channel. rho scales the *input
resolution* (``round(224 * rho)``); ``depth_multiplier`` is the depthwise channel multiplier, not rho (the
tf-keras docstring conflates them). At alpha=1.0, 224 px: 4,253,864 params, 568.7 M mult-adds (paper: 4.2 M, 569 M).
"""
from __future__ import annotations

import numbers

from ._blocks import dropout_option
from ._builder import (ALPHA_RANGE, BuildConfig, Imagenet, check_range, finish, fresh_names, imagenet_download,
                       load_weights, register_model)
from ..errors import InvalidArgument

PAPER = dict(paper="MobileNets: Efficient Convolutional Neural Networks for Mobile Vision Applications",
             arxiv="https://arxiv.org/abs/1704.04861")
WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet/"
#: (pointwise filters, stride) of the 13 depthwise-separable blocks
BLOCKS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1), (512, 1), (512, 1),
          (512, 1), (1024, 2), (1024, 1)]


def _channels(filters: int, alpha: float) -> int:
    return max(1, int(filters * alpha))


def build(cfg: BuildConfig):
    """MobileNet v1 graph for ``cfg`` (options alpha, depth_multiplier, dropout)."""
    from .._keras import keras, layers

    alpha = check_range("alpha", cfg.get("alpha", 1.0), *ALPHA_RANGE)
    dm = cfg.get("depth_multiplier", 1)
    if isinstance(dm, bool) or not isinstance(dm, numbers.Integral) or dm < 1:
        raise InvalidArgument(f"depth_multiplier must be an integer >= 1; received depth_multiplier={dm!r}",
                              hint="use --depth-multiplier 1 (the paper's; rho, not this, scales the resolution)")
    dm = int(dm)
    dropout = dropout_option(cfg, 1e-3)
    with fresh_names():
        inputs = layers.Input(shape=cfg.input_shape, name="input_1")
        x = layers.Conv2D(_channels(32, alpha), 3, padding="same", use_bias=False, strides=2, name="conv1")(inputs)
        x = layers.BatchNormalization(name="conv1_bn")(x)
        x = layers.ReLU(6.0, name="conv1_relu")(x)
        for i, (filters, stride) in enumerate(BLOCKS, start=1):
            if stride != 1:
                x = layers.ZeroPadding2D(((0, 1), (0, 1)), name=f"conv_pad_{i}")(x)
            x = layers.DepthwiseConv2D(3, padding="same" if stride == 1 else "valid", depth_multiplier=dm,
                                       strides=stride, use_bias=False, name=f"conv_dw_{i}")(x)
            x = layers.BatchNormalization(name=f"conv_dw_{i}_bn")(x)
            x = layers.ReLU(6.0, name=f"conv_dw_{i}_relu")(x)
            x = layers.Conv2D(_channels(filters, alpha), 1, padding="same", use_bias=False, strides=1,
                              name=f"conv_pw_{i}")(x)
            x = layers.BatchNormalization(name=f"conv_pw_{i}_bn")(x)
            x = layers.ReLU(6.0, name=f"conv_pw_{i}_relu")(x)
        if cfg.include_top:
            x = layers.GlobalAveragePooling2D(keepdims=True, name="global_average_pooling2d")(x)
            x = layers.Dropout(dropout, name="dropout")(x)
            x = layers.Conv2D(cfg.classes, 1, padding="same", name="conv_preds")(x)
            x = layers.Reshape((cfg.classes,), name="reshape_2")(x)
            x = layers.Activation("softmax", name="predictions")(x)
        model = keras.Model(inputs, x)
    stem = f"mobilenet_v1_{alpha:.2f}_{cfg.resolution}" + (f"_dm{dm}" if dm != 1 else "")
    finish(model, cfg.canonical_name(stem))
    if cfg.weights == "imagenet":
        _load_imagenet(model, cfg, alpha)
    elif cfg.weights:
        load_weights(model, cfg.weights, trust_model_code=cfg.trust_model_code)
    return model


def _load_imagenet(model, cfg: BuildConfig, alpha: float) -> None:
    from .._keras import keras

    alpha_text = {1.0: "1_0", 0.75: "7_5", 0.5: "5_0", 0.25: "2_5"}[alpha]
    rows = cfg.resolution if cfg.resolution in (128, 160, 192, 224) else 224   # conv weights fit any size
    fname = f"mobilenet_{alpha_text}_{rows}_tf{'' if cfg.include_top else '_no_top'}.h5"
    with imagenet_download(cfg.model):
        path = keras.utils.get_file(fname, WEIGHTS_URL + fname, cache_subdir="models")
    load_weights(model, path)


@register_model("mobilenet_v1", aliases=("mobilenet",), family="mobilenet_v1", resolution=224, min_resolution=32,
                preprocess="tf", options=("alpha", "depth_multiplier", "dropout"),
                imagenet=Imagenet(resolutions=(128, 160, 192, 224), alphas=(0.25, 0.5, 0.75, 1.0)),
                description="MobileNet v1; alpha in (0, 1.5], rho in (0, 1]; default 1.0-224", **PAPER)
def mobilenet_v1(cfg: BuildConfig):
    return build(cfg)
