"""Build a tf-keras application (MobileNet v2/v3, EfficientNet, ResNet, VGG, DenseNet, Xception) from a BuildConfig."""
from __future__ import annotations

from typing import Any, Callable

from ..errors import InvalidArgument, map_errors
from ._builder import BuildConfig, finish, fresh_names, imagenet_download, load_weights


def build_keras_app(cfg: BuildConfig, fn: Callable[..., Any], stem: str, **kwargs: Any) -> Any:
    """Call ``fn`` (a ``keras.applications`` builder) with the config; name the model ``cfg.canonical_name(stem)``."""
    args = dict(include_top=cfg.include_top, input_shape=cfg.input_shape, classes=cfg.classes, **kwargs)
    with fresh_names(), map_errors({ValueError: InvalidArgument}, f"cannot build {cfg.model}"):
        if cfg.weights == "imagenet":
            with imagenet_download(cfg.model):
                model = fn(weights="imagenet", **args)
        else:
            model = fn(weights=None, **args)
    if cfg.weights not in (None, "imagenet"):
        load_weights(model, cfg.weights, trust_model_code=cfg.trust_model_code)
    return finish(model, cfg.canonical_name(stem))
