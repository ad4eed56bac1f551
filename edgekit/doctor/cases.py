"""Known ways int8 breaks a model, built on purpose so the doctor can be tested and benchmarked on real data.

:func:`outlier_channel` is a function-preserving rescaling (the float model computes the same outputs) that gives
one activation channel a range ``factor`` times larger than the others: a BatchNormalization's gamma and beta of
one channel are multiplied by ``factor`` before an unbounded ReLU (ReLU is positively homogeneous, so the channel
just scales), and the following DepthwiseConv2D's BatchNormalization takes it back (moving mean times ``factor``,
variance so that the normalisation divides the factor out). Per-tensor activation quantization then spends its 256
levels on the one loud channel, and the others collapse onto a few levels, the failure behind most "int8 destroyed
my accuracy" reports (outlier channels, cf. Nagel et al. 2019, "Data-Free Quantization Through Weight Equalization").
:func:`unbounded_relu` turns ReLU6 into ReLU so the rescaling can be applied to the zoo's MobileNets.
"""
from __future__ import annotations

from ..errors import InvalidArgument


def unbounded_relu(model):
    """A copy of ``model`` (same weights) with every ``ReLU(max_value=6)`` replaced by a plain ReLU.

    Not function-preserving on its own: fine-tune or train the copy afterwards.
    """
    from .._keras import keras, layers

    def clone(layer):
        cfg = layer.get_config()
        if isinstance(layer, layers.ReLU) and cfg.get("max_value") is not None:
            cfg["max_value"] = None
        return type(layer).from_config(cfg)

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy


def _next_layers(model, layer):
    """Layers that take ``layer``'s output as input (functional models)."""
    out = []
    for node in layer._outbound_nodes:
        nxt = node.outbound_layer
        if nxt in model.layers:
            out.append(nxt)
    return out


def outlier_channel(model, bn_layer: str, *, channel: int = 0, factor: float = 64.0):
    """A copy of ``model`` computing the same function, with channel ``channel`` after ``bn_layer`` ``factor``
    times louder (see the module docstring). ``bn_layer`` must be BatchNormalization -> ReLU (unbounded) ->
    [ZeroPadding2D] -> DepthwiseConv2D -> BatchNormalization."""
    import numpy as np

    from .._keras import keras, layers

    if not factor > 0:
        raise InvalidArgument(f"factor must be > 0; received {factor}")
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    try:
        bn = copy.get_layer(bn_layer)
    except ValueError as exc:
        raise InvalidArgument(f"model {model.name!r} has no layer {bn_layer!r}") from exc
    def only_next(layer):
        nxt = _next_layers(copy, layer)
        return nxt[0] if len(nxt) == 1 else None

    relu = only_next(bn)
    dw = only_next(relu) if relu is not None else None
    while isinstance(dw, layers.ZeroPadding2D):
        dw = only_next(dw)
    dw_bn = only_next(dw) if dw is not None else None
    if not isinstance(bn, layers.BatchNormalization) or not isinstance(relu, layers.ReLU) \
            or not isinstance(dw, layers.DepthwiseConv2D) or not isinstance(dw_bn, layers.BatchNormalization):
        raise InvalidArgument(f"{bn_layer!r} is not BatchNormalization -> ReLU -> DepthwiseConv2D -> "
                              "BatchNormalization",
                              hint="pick the BatchNormalization of a pointwise block followed by a depthwise block")
    if relu.get_config().get("max_value") is not None or relu.get_config().get("negative_slope", 0.0) != 0.0:
        raise InvalidArgument(f"{relu.name!r} is bounded or leaky: the rescaling would change the function",
                              hint="apply unbounded_relu(model) first (and fine-tune), or pick another layer")
    gamma, beta, mean, var = (w.copy() for w in bn.get_weights())
    if not 0 <= channel < len(gamma):
        raise InvalidArgument(f"channel {channel} is out of range for {bn_layer!r} ({len(gamma)} channels)")
    gamma[channel] *= factor
    beta[channel] *= factor
    bn.set_weights([gamma, beta, mean, var])
    if dw.use_bias:  # the depthwise output of that channel must scale as a whole
        kernel, bias = (w.copy() for w in dw.get_weights())
        bias[channel] *= factor
        dw.set_weights([kernel, bias])
    g2, b2, m2, v2 = (w.copy() for w in dw_bn.get_weights())
    eps = float(dw_bn.epsilon)
    m2[channel] *= factor
    v2[channel] = np.float32(factor ** 2 * (float(v2[channel]) + eps) - eps)
    dw_bn.set_weights([g2, b2, m2, v2])
    return copy
