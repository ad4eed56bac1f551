"""Walking a Keras model's layers (nested models and tfmot wrappers included) and the one table of tfmot wrapper
classes. Works on any object with ``.layers``; imports no TensorFlow."""
from __future__ import annotations

from typing import Any, Iterator

#: tfmot wrapper layer class -> what it is for (pruning and clustering must be stripped before export; QAT is
#: exported as int8 with its learned ranges)
TFMOT_WRAPPERS = {
    "PruneLowMagnitude": "pruning",
    "ClusterWeights": "clustering", "ClusterWeightsRNN": "clustering", "ClusterWeightsMHA": "clustering",
    "QuantizeWrapper": "qat", "QuantizeWrapperV2": "qat", "QuantizeLayer": "qat", "QuantizeAnnotate": "qat",
}


def walk_layers(model: Any) -> Iterator[Any]:
    """Every layer of ``model``, depth first: nested models are entered, tfmot wrappers are yielded as they are
    (their wrapped layer is ``layer.layer``)."""
    for layer in getattr(model, "layers", ()):
        yield layer
        if hasattr(layer, "layers") and not hasattr(layer, "layer") and layer is not model:
            yield from walk_layers(layer)


def unwrapped(layer: Any) -> Any:
    """The layer inside a wrapper (tfmot's, keras.layers.Wrapper), else the layer itself."""
    return getattr(layer, "layer", layer)


def wrappers(model: Any) -> dict[str, list[str]]:
    """``{pruning|clustering|qat: [layer names]}`` of the tfmot wrappers in ``model`` (empty when plain)."""
    found: dict[str, list[str]] = {}
    for layer in walk_layers(model):
        kind = TFMOT_WRAPPERS.get(type(layer).__name__)
        if kind:
            found.setdefault(kind, []).append(layer.name)
    return found
