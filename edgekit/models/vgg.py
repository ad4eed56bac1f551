"""VGG-16 and VGG-19 (tf-keras applications).

Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image Recognition",
https://arxiv.org/abs/1409.1556

VGG-16: 138 M params, ~15.5 B mult-adds at 224 px. The classifier flattens the last feature map, so the head's size
depends on the input resolution.
"""
from __future__ import annotations

from ._builder import BuildConfig, Imagenet, register_model
from ._keras_apps import build_keras_app

PAPER = dict(paper="Very Deep Convolutional Networks for Large-Scale Image Recognition",
             arxiv="https://arxiv.org/abs/1409.1556")


@register_model("vgg16", family="vgg", resolution=224, min_resolution=32, preprocess="caffe", imagenet=Imagenet(),
                description="VGG-16 (tf-keras)", **PAPER)
def vgg16(cfg: BuildConfig):
    from .._keras import keras

    return build_keras_app(cfg, keras.applications.VGG16, f"vgg16_{cfg.resolution}")


@register_model("vgg19", family="vgg", resolution=224, min_resolution=32, preprocess="caffe", imagenet=Imagenet(),
                description="VGG-19 (tf-keras)", **PAPER)
def vgg19(cfg: BuildConfig):
    from .._keras import keras

    return build_keras_app(cfg, keras.applications.VGG19, f"vgg19_{cfg.resolution}")
