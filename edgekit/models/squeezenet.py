"""SqueezeNet 1.1, built here: Fire modules (1x1 squeeze, 1x1 + 3x3 expand), no fully connected layer.

Iandola et al., "SqueezeNet: AlexNet-level accuracy with 50x fewer parameters and <0.5MB model size",
https://arxiv.org/abs/1602.07360 (version 1.1 from the authors' repository: 3x3/64 stem, earlier pooling).

1.24 M params, ~0.35 B mult-adds at 224 px.
"""
from __future__ import annotations

from ._blocks import dropout_option
from ._builder import BuildConfig, finish_built_here, fresh_names, register_model

PAPER = dict(paper="SqueezeNet: AlexNet-level accuracy with 50x fewer parameters and <0.5MB model size",
             arxiv="https://arxiv.org/abs/1602.07360")
#: fire module -> (squeeze, expand 1x1, expand 3x3); a max pool precedes fire4 and fire6
FIRE = {2: (16, 64, 64), 3: (16, 64, 64), 4: (32, 128, 128), 5: (32, 128, 128), 6: (48, 192, 192),
        7: (48, 192, 192), 8: (64, 256, 256), 9: (64, 256, 256)}


def _fire(x, spec, name: str):
    from .._keras import layers

    s, e1, e3 = spec
    x = layers.Conv2D(s, 1, activation="relu", name=f"{name}_squeeze1x1")(x)
    a = layers.Conv2D(e1, 1, activation="relu", name=f"{name}_expand1x1")(x)
    b = layers.Conv2D(e3, 3, padding="same", activation="relu", name=f"{name}_expand3x3")(x)
    return layers.Concatenate(name=f"{name}_concat")([a, b])


@register_model("squeezenet1_1", aliases=("squeezenet",), family="squeezenet", resolution=224, min_resolution=31,
                preprocess="torch", options=("dropout",), description="SqueezeNet 1.1, built here", **PAPER)
def squeezenet1_1(cfg: BuildConfig):
    from .._keras import keras, layers

    dropout = dropout_option(cfg, 0.5)
    with fresh_names():
        inputs = layers.Input(shape=cfg.input_shape, name="input_1")
        x = layers.Conv2D(64, 3, strides=2, activation="relu", name="conv1")(inputs)
        x = layers.MaxPooling2D(3, strides=2, name="pool1")(x)
        for i, spec in FIRE.items():
            if i in (4, 6):
                x = layers.MaxPooling2D(3, strides=2, name=f"pool{i - 1}")(x)
            x = _fire(x, spec, f"fire{i}")
        if cfg.include_top:
            x = layers.Dropout(dropout, name="dropout")(x)
            x = layers.Conv2D(cfg.classes, 1, activation="relu", name="conv10")(x)
            x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
            x = layers.Activation("softmax", name="predictions")(x)
        model = keras.Model(inputs, x)
    return finish_built_here(model, cfg, f"squeezenet1_1_{cfg.resolution}")
