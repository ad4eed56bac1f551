"""ResNet 18/34/50/101/152 (v1). 50/101/152 are tf-keras applications (bottleneck blocks, ImageNet weights);
18/34 (basic blocks, projection shortcuts when the shape changes) are built here with the same naming scheme.

He et al., "Deep Residual Learning for Image Recognition", https://arxiv.org/abs/1512.03385

ResNet-50: 25.6 M params, ~3.9 B mult-adds at 224 px (the paper's "FLOPs" are mult-adds).
"""
from __future__ import annotations

from ._builder import BuildConfig, Imagenet, finish_built_here, fresh_names, register_model
from ._keras_apps import build_keras_app

PAPER = dict(paper="Deep Residual Learning for Image Recognition", arxiv="https://arxiv.org/abs/1512.03385")
BASIC_DEPTHS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}


def _basic_block(x, filters: int, stride: int, name: str):
    from .._keras import layers

    shortcut = x
    if stride != 1 or x.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=stride, use_bias=False, name=f"{name}_0_conv")(x)
        shortcut = layers.BatchNormalization(epsilon=1.001e-5, name=f"{name}_0_bn")(shortcut)
    if stride != 1:
        x = layers.ZeroPadding2D(((1, 1), (1, 1)), name=f"{name}_1_pad")(x)
    x = layers.Conv2D(filters, 3, strides=stride, padding="valid" if stride != 1 else "same", use_bias=False,
                      name=f"{name}_1_conv")(x)
    x = layers.BatchNormalization(epsilon=1.001e-5, name=f"{name}_1_bn")(x)
    x = layers.Activation("relu", name=f"{name}_1_relu")(x)
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_2_conv")(x)
    x = layers.BatchNormalization(epsilon=1.001e-5, name=f"{name}_2_bn")(x)
    x = layers.Add(name=f"{name}_add")([shortcut, x])
    return layers.Activation("relu", name=f"{name}_out")(x)


def build_basic(depth: int, cfg: BuildConfig):
    """ResNet-18/34 with basic blocks; layer names follow tf-keras ResNet (``conv2_block1_1_conv``...)."""
    from .._keras import keras, layers

    with fresh_names():
        inputs = layers.Input(shape=cfg.input_shape, name="input_1")
        x = layers.ZeroPadding2D(((3, 3), (3, 3)), name="conv1_pad")(inputs)
        x = layers.Conv2D(64, 7, strides=2, use_bias=False, name="conv1_conv")(x)
        x = layers.BatchNormalization(epsilon=1.001e-5, name="conv1_bn")(x)
        x = layers.Activation("relu", name="conv1_relu")(x)
        x = layers.ZeroPadding2D(((1, 1), (1, 1)), name="pool1_pad")(x)
        x = layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)
        for stage, (blocks, filters) in enumerate(zip(BASIC_DEPTHS[depth], (64, 128, 256, 512)), start=2):
            for b in range(1, blocks + 1):
                stride = 2 if b == 1 and stage > 2 else 1
                x = _basic_block(x, filters, stride, f"conv{stage}_block{b}")
        if cfg.include_top:
            x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
            x = layers.Dense(cfg.classes, activation="softmax", name="predictions")(x)
        model = keras.Model(inputs, x)
    return finish_built_here(model, cfg, f"resnet{depth}_{cfg.resolution}")


@register_model("resnet18", family="resnet", resolution=224, min_resolution=32, preprocess="torch",
                description="ResNet-18 (basic blocks), built here; no ImageNet weights", **PAPER)
def resnet18(cfg: BuildConfig):
    return build_basic(18, cfg)


@register_model("resnet34", family="resnet", resolution=224, min_resolution=32, preprocess="torch",
                description="ResNet-34 (basic blocks), built here; no ImageNet weights", **PAPER)
def resnet34(cfg: BuildConfig):
    return build_basic(34, cfg)


def _app(depth: int, cfg: BuildConfig):
    from .._keras import keras

    return build_keras_app(cfg, getattr(keras.applications, f"ResNet{depth}"), f"resnet{depth}_{cfg.resolution}")


@register_model("resnet50", family="resnet", resolution=224, min_resolution=32, preprocess="caffe",
                imagenet=Imagenet(), description="ResNet-50 v1 (tf-keras)", **PAPER)
def resnet50(cfg: BuildConfig):
    return _app(50, cfg)


@register_model("resnet101", family="resnet", resolution=224, min_resolution=32, preprocess="caffe",
                imagenet=Imagenet(), description="ResNet-101 v1 (tf-keras)", **PAPER)
def resnet101(cfg: BuildConfig):
    return _app(101, cfg)


@register_model("resnet152", family="resnet", resolution=224, min_resolution=32, preprocess="caffe",
                imagenet=Imagenet(), description="ResNet-152 v1 (tf-keras)", **PAPER)
def resnet152(cfg: BuildConfig):
    return _app(152, cfg)
