"""Exact parameters and mult-adds per layer, depthwise-separable savings, and a peak activation memory estimate.

Conventions (those of the MobileNet paper): mult-adds are counted for convolutions and fully connected layers only
(:data:`MULT_ADD_LAYERS`); batch normalisation, activations, pooling, additions and biases count 0. Parameters are
Keras' own count (trainable + non-trainable, so BatchNorm's moving statistics are included); ``conv_fc_params`` is
the papers' count (conv/FC kernels and biases only). Nested models are flattened: their layers are listed as
``submodel/layer``; layers inside tfmot wrappers are counted as the wrapped layer.

Peak activation memory: the graph is walked in topological order; each layer's outputs are allocated while its
inputs are still live, and a tensor is freed after its last consumer. The peak of the sum of live tensors (batch 1)
is reported at float32 and int8. No in-place reuse is assumed (a runtime may alias Reshape/activation outputs), so
it is an upper-bound style estimate of the activation arena, weights not included.
"""
from __future__ import annotations

import math
import os
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from ._jsonable import JsonMixin
from .errors import InvalidArgument
from . import _keras3, models

#: layer types whose mult-adds are counted (everything else counts 0)
MULT_ADD_LAYERS = ("Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose",
                   "DepthwiseConv1D", "DepthwiseConv2D", "SeparableConv1D", "SeparableConv2D", "Dense")


@dataclass
class LayerProfile(JsonMixin):
    name: str
    type: str
    output_shape: Any
    params: int
    trainable_params: int
    mult_adds: int
    conv_fc_params: int = 0


@dataclass
class SeparableBlock(JsonMixin):
    """A depthwise conv and its pointwise 1x1 conv, against the standard conv with the same kernel and output."""

    depthwise: str
    pointwise: str
    kernel: tuple[int, int]          # Dk x Dk
    in_channels: int                 # M
    out_channels: int                # N
    output_hw: tuple[int, int]       # Df x Df
    depth_multiplier: int
    separable_mult_adds: int         # Dk²·M·Df² + M·N·Df² (times the depth multiplier)
    standard_mult_adds: int          # Dk²·M·N·Df²
    ratio: float                     # separable / standard
    paper_ratio: float               # 1/N + 1/Dk²


@dataclass
class PeakMemory(JsonMixin):
    """Largest sum of simultaneously live activations (batch 1), walking the graph in topological order."""

    elements: int
    float32_bytes: int
    int8_bytes: int
    at_layer: str
    live_tensors: list[tuple[str, int]] = field(default_factory=list)   # (producing layer, elements), largest first


@dataclass
class ProfileReport(JsonMixin):
    model: str
    input_shape: Any
    output_shape: Any
    layers: list[LayerProfile]
    total_params: int
    trainable_params: int
    non_trainable_params: int
    total_mult_adds: int
    conv_fc_params: int              # kernels + biases of conv/FC layers: the papers' count (no BatchNorm)
    separable: list[SeparableBlock]
    peak_memory: PeakMemory
    mult_add_layer_types: tuple[str, ...] = MULT_ADD_LAYERS
    notes: list[str] = field(default_factory=list)

    @property
    def separable_mult_adds(self) -> int:
        return sum(b.separable_mult_adds for b in self.separable)

    @property
    def separable_standard_mult_adds(self) -> int:
        return sum(b.standard_mult_adds for b in self.separable)


def profile(model_or_name: Any, **options: Any) -> ProfileReport:
    """Profile a model (tf-keras or Keras 3), a zoo name (built with ``options``, random weights) or a model file
    (``options``: ``input_shape``, ``trust_model_code``), taken through ``edgekit.models.resolve``."""

    options = {k: v for k, v in options.items() if v is not None}
    if isinstance(model_or_name, (str, os.PathLike)) and not models.is_model_file(model_or_name):
        options.setdefault("weights", "none")   # profiling does not need trained weights
    return _profile_model(models.resolve(model_or_name, **options))


# ----------------------------------------------------------------------------------------------------------------
def _shape(t: Any) -> tuple:
    return tuple(t.shape)


def _numel(shape: tuple) -> int:
    dims = shape[1:] if shape and shape[0] is None else shape
    if any(d is None for d in dims):
        raise InvalidArgument(f"cannot profile a tensor of unknown shape {shape}",
                              hint="fix the free input dimensions with --input-shape (Python: input_shape=), e.g. "
                                   "224,224,3")
    return int(math.prod(dims))


def _inner(layer: Any) -> Any:
    """The wrapped layer of tfmot/Keras wrappers (PruneLowMagnitude, QuantizeWrapper, ...)."""
    seen = 0
    while hasattr(layer, "layer") and seen < 4 and not _is_model(layer):
        layer, seen = layer.layer, seen + 1
    return layer


def _is_model(layer: Any) -> bool:
    from ._keras import keras

    return isinstance(layer, keras.Model) or _keras3.is_model(layer)


def _kinds(layer: Any) -> set[str]:
    """Class names of the (unwrapped) layer and its bases: works for tf-keras and Keras 3 layers alike."""
    return {c.__name__ for c in type(_inner(layer)).__mro__}


def _type_name(layer: Any) -> str:
    inner = _inner(layer)
    return type(layer).__name__ if inner is layer else f"{type(layer).__name__}({type(inner).__name__})"


def _channels_axis(layer: Any) -> int:
    return 1 if getattr(layer, "data_format", "channels_last") == "channels_first" else -1


def _spatial(shape: tuple, layer: Any) -> tuple:
    return tuple(shape[2:]) if _channels_axis(layer) == 1 else tuple(shape[1:-1])


def mult_adds(layer: Any, in_shape: tuple, out_shape: tuple) -> int:
    """Mult-adds of one call of ``layer`` (batch 1); 0 for layer types not in :data:`MULT_ADD_LAYERS`."""
    kinds = _kinds(layer)
    layer = _inner(layer)
    ax = _channels_axis(layer)
    if kinds & {"Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose"}:
        k = math.prod(layer.kernel_size)
        return math.prod(_spatial(in_shape, layer)) * k * in_shape[ax] * out_shape[ax]
    if kinds & {"DepthwiseConv1D", "DepthwiseConv2D"}:
        k = math.prod(layer.kernel_size)
        return math.prod(_spatial(out_shape, layer)) * k * in_shape[ax] * layer.depth_multiplier
    if kinds & {"SeparableConv1D", "SeparableConv2D"}:
        k = math.prod(layer.kernel_size)
        hw = math.prod(_spatial(out_shape, layer))
        mid = in_shape[ax] * layer.depth_multiplier
        return hw * k * mid + hw * mid * out_shape[ax]
    if kinds & {"Conv1D", "Conv2D", "Conv3D"}:
        k = math.prod(layer.kernel_size)
        groups = getattr(layer, "groups", 1) or 1
        return math.prod(_spatial(out_shape, layer)) * k * (in_shape[ax] // groups) * out_shape[ax]
    if "Dense" in kinds:
        return math.prod(out_shape[1:-1]) * in_shape[-1] * out_shape[-1]
    return 0


def _key(t: Any) -> tuple:
    layer, node_index, tensor_index = t._keras_history
    return (id(layer), node_index, tensor_index)


def _flat(x: Any) -> list:
    from ._keras import tf

    return tf.nest.flatten(x)


@dataclass
class _Step:
    layer: Any
    name: str
    inputs: list
    outputs: list


def _graph(model: Any) -> Any:
    """The model itself, or for a Keras 3 Sequential the functional graph it builds."""
    return getattr(model, "_functional", None) or model


def _node_layer(node: Any) -> Any:
    return node.layer if hasattr(node, "layer") else node.operation          # tf-keras / Keras 3


def _node_inputs(node: Any) -> list:
    return _flat(node.keras_inputs) if hasattr(node, "keras_inputs") else list(node.input_tensors)


def _nodes(model: Any) -> list:
    by_depth = getattr(_graph(model), "_nodes_by_depth", None)
    if not by_depth:
        raise InvalidArgument(f"cannot profile {model.name!r}: it is not a functional or Sequential model with a "
                              f"known input shape", hint="build it on an Input(shape=...) before profiling")
    return [n for depth in sorted(by_depth, reverse=True) for n in by_depth[depth]]


def _walk(model: Any, prefix: str, rows: dict, steps: list, notes: list) -> tuple[int, str, list]:
    """Collect per-layer rows and the steps of ``model`` (recursing into sub-models).

    Returns the peak of live activation elements, the layer where it occurs and the live tensors then
    (producing layer, elements).
    """
    nodes = _nodes(model)
    consumers: dict[tuple, int] = defaultdict(int)
    for node in nodes:
        for t in _node_inputs(node):
            consumers[_key(t)] += 1
    model_outputs = {_key(t) for t in _flat(_graph(model).outputs)}
    live: dict[tuple, tuple[str, int]] = {}
    peak, peak_at, peak_live = 0, "", []

    def alloc(tensors: list) -> None:
        for t in tensors:
            live[_key(t)] = (prefix + t._keras_history[0].name, _numel(_shape(t)))

    for node in nodes:
        layer = _node_layer(node)
        ins, outs = _node_inputs(node), _flat(node.outputs)
        name = prefix + layer.name
        graph_model = _is_model(layer) and bool(getattr(_graph(layer), "_nodes_by_depth", None))
        if _is_model(layer) and not graph_model and name not in rows:
            notes.append(f"{name} is a subclassed model: counted as one layer, its mult-adds are not counted")
        if graph_model:
            inner_peak, inner_at, inner_live = _walk(layer, name + "/", rows, steps, notes)
            inputs = {_key(t) for t in ins}
            outside = [v for k, v in live.items() if k not in inputs]   # the sub-model's inputs are in inner_live
            cand, where, now = sum(v[1] for v in outside) + inner_peak, inner_at, outside + inner_live
            alloc(outs)
        else:
            alloc(outs)
            cand, where = sum(v[1] for v in live.values()), name
            now = list(live.values()) if cand > peak else []
            in_shape = _shape(ins[0]) if ins else None
            out_shape = _shape(outs[0]) if outs else None
            macs = mult_adds(layer, in_shape, out_shape) if ins and outs else 0
            row = rows.get(name)
            if row is None:
                params = layer.count_params() if getattr(layer, "built", False) else 0   # Keras 3 ops: no weights
                trainable = sum(int(math.prod(w.shape)) for w in getattr(layer, "trainable_weights", ()))
                shapes = [list(_shape(t)) for t in outs]
                conv_fc = params if type(_inner(layer)).__name__ in MULT_ADD_LAYERS else 0
                rows[name] = LayerProfile(name, _type_name(layer), shapes[0] if len(shapes) == 1 else shapes,
                                          params, trainable, macs, conv_fc)
            else:
                row.mult_adds += macs
            steps.append(_Step(layer, name, ins, outs))
        if cand > peak:
            peak, peak_at, peak_live = cand, where, now
        for t in ins:
            k = _key(t)
            consumers[k] -= 1
            if consumers[k] <= 0 and k not in model_outputs:
                live.pop(k, None)
    return peak, peak_at, peak_live


def _separable_blocks(steps: list) -> list[SeparableBlock]:
    consumers: dict[tuple, list] = defaultdict(list)
    for s in steps:
        for t in s.inputs:
            consumers[_key(t)].append(s)
    blocks = []
    for s in steps:
        layer, kinds = _inner(s.layer), _kinds(s.layer)
        if "SeparableConv2D" in kinds:
            in_shape, out_shape = _shape(s.inputs[0]), _shape(s.outputs[0])
            blocks.append(_block(s.name, s.name, layer, in_shape[-1], out_shape[-1], _spatial(out_shape, layer)))
        elif "DepthwiseConv2D" in kinds:
            dw_out = _shape(s.outputs[0])
            pw = _find_pointwise(s, dw_out, consumers)
            if pw is not None:
                blocks.append(_block(s.name, pw.name, layer, _shape(s.inputs[0])[-1],
                                     _shape(pw.outputs[0])[-1], _spatial(dw_out, layer)))
    return blocks


def _find_pointwise(dw: _Step, dw_out: tuple, consumers: dict) -> _Step | None:
    """First 1x1 Conv2D reached from the depthwise output through shape-preserving layers (BN, activations, SE)."""
    frontier, seen = [dw], set()
    for _ in range(12):
        nxt = []
        for step in frontier:
            for t in step.outputs:
                for c in consumers.get(_key(t), []):
                    if id(c) in seen:
                        continue
                    seen.add(id(c))
                    layer, kinds = _inner(c.layer), _kinds(c.layer)
                    is_conv = "Conv2D" in kinds and not kinds & {"DepthwiseConv2D", "Conv2DTranspose"}
                    if is_conv and tuple(layer.kernel_size) == (1, 1) and _shape(c.inputs[0]) == dw_out:
                        return c
                    if not is_conv and not kinds & {"Dense", "SeparableConv2D", "DepthwiseConv2D"} \
                            and c.outputs and _shape(c.outputs[0]) == dw_out:
                        nxt.append(c)
        if not nxt:
            return None
        frontier = nxt
    return None


def _block(dw_name: str, pw_name: str, layer: Any, m: int, n: int, hw: tuple) -> SeparableBlock:
    kh, kw = layer.kernel_size
    dm = layer.depth_multiplier
    f = math.prod(hw)
    separable = kh * kw * m * dm * f + m * dm * n * f
    standard = kh * kw * m * n * f
    return SeparableBlock(dw_name, pw_name, (kh, kw), m, n, tuple(hw), dm, separable, standard,
                          separable / standard, 1.0 / n + 1.0 / (kh * kw))


def _profile_model(model: Any) -> ProfileReport:
    rows: dict[str, LayerProfile] = {}
    steps: list[_Step] = []
    notes: list[str] = []
    peak, at, live = _walk(model, "", rows, steps, notes)
    layers = list(rows.values())
    total = int(model.count_params())
    trainable = sum(int(math.prod(w.shape)) for w in model.trainable_weights)
    if any(r.type.startswith(("Lambda", "TFOpLambda")) for r in layers):
        notes.append("Lambda/TF-op layers count 0 mult-adds")
    return ProfileReport(
        model=model.name, input_shape=_shapes(model.inputs), output_shape=_shapes(model.outputs), layers=layers,
        total_params=total, trainable_params=trainable, non_trainable_params=total - trainable,
        total_mult_adds=sum(r.mult_adds for r in layers), conv_fc_params=sum(r.conv_fc_params for r in layers),
        separable=_separable_blocks(steps),
        peak_memory=PeakMemory(peak, 4 * peak, peak, at, sorted(live, key=lambda v: -v[1])), notes=notes)


def _shapes(tensors: list) -> Any:
    shapes = [list(_shape(t)) for t in tensors]
    return shapes[0] if len(shapes) == 1 else shapes
