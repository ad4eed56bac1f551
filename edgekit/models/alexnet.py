"""AlexNet, built here in its single-tower form (Krizhevsky's "one weird trick" variant, as in torchvision):
64-192-384-256-256 convolutions, no local response normalisation, two 4096-unit fully connected layers.

Krizhevsky, "One weird trick for parallelizing convolutional neural networks", https://arxiv.org/abs/1404.5997
(the original: Krizhevsky, Sutskever & Hinton, "ImageNet Classification with Deep Convolutional Neural Networks",
NeurIPS 2012, not on arXiv).

61.1 M params, ~0.71 B mult-adds at 224 px. The head flattens the last feature map (6x6 at 224 px), so its size
depends on the input resolution; the valid pooling needs at least 63 px.
"""
from __future__ import annotations

from ._blocks import dropout_option
from ._builder import BuildConfig, finish_built_here, fresh_names, register_model

PAPER = dict(paper="One weird trick for parallelizing convolutional neural networks",
             arxiv="https://arxiv.org/abs/1404.5997")


@register_model("alexnet", family="alexnet", resolution=224, min_resolution=63, preprocess="torch",
                options=("dropout",), description="AlexNet (single tower, torchvision layout), built here", **PAPER)
def alexnet(cfg: BuildConfig):
    from .._keras import keras, layers

    dropout = dropout_option(cfg, 0.5)
    with fresh_names():
        inputs = layers.Input(shape=cfg.input_shape, name="input_1")
        x = layers.ZeroPadding2D(2, name="conv1_pad")(inputs)
        x = layers.Conv2D(64, 11, strides=4, activation="relu", name="conv1")(x)
        x = layers.MaxPooling2D(3, strides=2, name="pool1")(x)
        x = layers.Conv2D(192, 5, padding="same", activation="relu", name="conv2")(x)
        x = layers.MaxPooling2D(3, strides=2, name="pool2")(x)
        x = layers.Conv2D(384, 3, padding="same", activation="relu", name="conv3")(x)
        x = layers.Conv2D(256, 3, padding="same", activation="relu", name="conv4")(x)
        x = layers.Conv2D(256, 3, padding="same", activation="relu", name="conv5")(x)
        x = layers.MaxPooling2D(3, strides=2, name="pool5")(x)
        if cfg.include_top:
            x = layers.Flatten(name="flatten")(x)
            x = layers.Dropout(dropout, name="fc6_dropout")(x)
            x = layers.Dense(4096, activation="relu", name="fc6")(x)
            x = layers.Dropout(dropout, name="fc7_dropout")(x)
            x = layers.Dense(4096, activation="relu", name="fc7")(x)
            x = layers.Dense(cfg.classes, activation="softmax", name="predictions")(x)
        model = keras.Model(inputs, x)
    return finish_built_here(model, cfg, f"alexnet_{cfg.resolution}")
