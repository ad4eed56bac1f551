"""Keras layer names <-> the converter's op/tensor names, for layers kept in float in an int8 export.

Both converters keep Keras layer names in what they emit: TFLite tensor names such as
``model/conv_pw_5_relu/Relu;model/conv_pw_5/Conv2D`` (one fused op, two layers), tf2onnx node names such as
``model/conv_pw_5/Conv2D``. A layer is named by a path component equal to the layer's name, or, failing that, by
the component with a name scope's ``_<n>`` suffix stripped when that is a layer's name: Keras 3's export traces the
model again, so its scopes are uniquified (``k3d_1/c1_1/convolution`` is layer ``c1``), and a layer called twice
gets ``c1_1`` for its second call in either Keras.
"""
from __future__ import annotations

import re
from typing import Iterable, Mapping, Sequence

from ..errors import InvalidArgument, did_you_mean
from .._layers import walk_layers

_SPLIT = re.compile(r"[;/:]")
_SCOPE_SUFFIX = re.compile(r"_[0-9]+$")


def keras_layer_names(model) -> list[str]:
    """Every layer name of ``model`` (nested models walked; input layers and the nested models themselves left out:
    their names prefix every op inside them), in model order."""

    names: list[str] = []
    for layer in walk_layers(model):
        if type(layer).__name__ != "InputLayer" and not hasattr(layer, "layers") and layer.name not in names:
            names.append(layer.name)
    return names


def layers_in(name: str, known: Iterable[str] | set[str]) -> list[str]:
    """The Keras layers a converter name mentions, in the order they appear (each once): a component equal to a
    layer's name, else the component without its name scope's ``_<n>`` suffix if that is a layer's name."""
    known = known if isinstance(known, (set, frozenset)) else set(known)
    found: list[str] = []
    for part in _SPLIT.split(name):
        layer = part if part in known else _SCOPE_SUFFIX.sub("", part)
        if layer in known and layer not in found:
            found.append(layer)
    return found


def nodes_for(layers: Sequence[str], nodes: Mapping[str, Sequence[str]], fmt: str) -> dict[str, list[str]]:
    """``{layer: [node names]}`` for the requested ``layers``; ``nodes`` maps each quantizable node to its layers.

    A layer that names no quantizable node is an InvalidArgument with a did-you-mean over the ones that do.
    """
    by_layer: dict[str, list[str]] = {}
    for node, owners in nodes.items():
        for layer in owners:
            by_layer.setdefault(layer, []).append(node)
    out: dict[str, list[str]] = {}
    for layer in layers:
        if layer not in by_layer:
            close = did_you_mean(layer, by_layer)
            raise InvalidArgument(f"float_layers: no quantized {fmt} op comes from a Keras layer named {layer!r}",
                                  hint=(f"{close} " if close else "")
                                  + "give layer names from `edgekit doctor` (its per-layer table)")
        out[layer] = list(by_layer[layer])
    return out
