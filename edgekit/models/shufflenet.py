"""ShuffleNet v2, built here: channel split, depthwise 3x3, concatenation and channel shuffle.

Ma et al., "ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture Design",
https://arxiv.org/abs/1807.11164

Only stock Keras layers are used (split = Reshape + Cropping2D, shuffle = Reshape + Permute + Reshape), so the model
saves, converts and takes tfmot wrappers like any other. ``alpha`` picks the paper's width (0.5, 1.0, 1.5, 2.0);
x1.0 at 224 px: 2.3 M params, 146 M mult-adds (paper, Table 5).
"""
from __future__ import annotations

from ..errors import InvalidArgument
from ._blocks import conv_bn_relu, dropout_option
from ._builder import BuildConfig, finish_built_here, fresh_names, register_model

PAPER = dict(paper="ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture Design",
             arxiv="https://arxiv.org/abs/1807.11164")
#: width -> output channels of stages 2, 3, 4 and conv5 (paper Table 5)
WIDTHS = {0.5: (48, 96, 192, 1024), 1.0: (116, 232, 464, 1024), 1.5: (176, 352, 704, 1024),
          2.0: (244, 488, 976, 2048)}
REPEATS = (4, 8, 4)


def _dw_bn(x, strides: int, name: str):
    from .._keras import layers

    x = layers.DepthwiseConv2D(3, strides=strides, padding="same", use_bias=False, name=name)(x)
    return layers.BatchNormalization(epsilon=1e-3, name=f"{name}_bn")(x)


def _shuffle(x, name: str):
    from .._keras import layers

    h, w, c = x.shape[1:]
    x = layers.Reshape((h, w, 2, c // 2), name=f"{name}_shuffle_split")(x)
    x = layers.Permute((1, 2, 4, 3), name=f"{name}_shuffle_swap")(x)
    return layers.Reshape((h, w, c), name=f"{name}_shuffle_merge")(x)


def _split(x, name: str):
    """Channel halves (first, second) with stock layers: (H, W, C) -> (H*W, 2, C/2) -> crop one row -> (H, W, C/2)."""
    from .._keras import layers

    h, w, c = x.shape[1:]
    r = layers.Reshape((h * w, 2, c // 2), name=f"{name}_split_view")(x)
    first = layers.Cropping2D(((0, 0), (0, 1)), name=f"{name}_split_first")(r)
    second = layers.Cropping2D(((0, 0), (1, 0)), name=f"{name}_split_second")(r)
    first = layers.Reshape((h, w, c // 2), name=f"{name}_split_first_hw")(first)
    second = layers.Reshape((h, w, c // 2), name=f"{name}_split_second_hw")(second)
    return first, second


def _unit(x, out_channels: int, strides: int, name: str):
    from .._keras import layers

    half = out_channels // 2
    if strides == 1:
        keep, x2 = _split(x, name)
    else:
        keep = _dw_bn(x, 2, f"{name}_b1_dw")
        keep = conv_bn_relu(keep, half, 1, f"{name}_b1_pw")
        x2 = x
    x2 = conv_bn_relu(x2, half, 1, f"{name}_b2_pw1")
    x2 = _dw_bn(x2, strides, f"{name}_b2_dw")
    x2 = conv_bn_relu(x2, half, 1, f"{name}_b2_pw2")
    x = layers.Concatenate(name=f"{name}_concat")([keep, x2])
    return _shuffle(x, name)


@register_model("shufflenet_v2", family="shufflenet", resolution=224, min_resolution=32, preprocess="torch",
                options=("alpha", "dropout"), description="ShuffleNet v2; alpha = width 0.5, 1.0, 1.5 or 2.0", **PAPER)
def shufflenet_v2(cfg: BuildConfig):
    from .._keras import keras, layers

    alpha = cfg.get("alpha", 1.0)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or float(alpha) not in WIDTHS:
        raise InvalidArgument(f"ShuffleNet v2 has widths {', '.join(map(str, WIDTHS))}; received alpha={alpha!r}")
    alpha = float(alpha)
    dropout = dropout_option(cfg, 0.0)
    *stage_channels, last = WIDTHS[alpha]
    with fresh_names():
        inputs = layers.Input(shape=cfg.input_shape, name="input_1")
        x = conv_bn_relu(inputs, 24, 3, "conv1", strides=2)
        x = layers.MaxPooling2D(3, strides=2, padding="same", name="pool1")(x)
        for stage, (channels, repeats) in enumerate(zip(stage_channels, REPEATS), start=2):
            for b in range(1, repeats + 1):
                x = _unit(x, channels, 2 if b == 1 else 1, f"stage{stage}_block{b}")
        x = conv_bn_relu(x, last, 1, "conv5")
        if cfg.include_top:
            x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
            if dropout > 0:
                x = layers.Dropout(dropout, name="dropout")(x)
            x = layers.Dense(cfg.classes, activation="softmax", name="predictions")(x)
        model = keras.Model(inputs, x)
    return finish_built_here(model, cfg, f"shufflenet_v2_{alpha:.2f}_{cfg.resolution}")
