"""The doctor's ONNX side: candidates from the exporter's own quantization code (``quantize_int8``, which the ONNX
exporter itself calls), diagnosis with onnxruntime's QDQ debugging (``onnxruntime.quantization.qdq_loss_debug``).

The model is converted and pre-processed once; each calibration (sample count x method) is run once and kept in
onnxruntime's calibration cache, so candidates with other ``nodes_to_exclude`` reuse the same ranges.
"""
from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ExportError
from ..exporters import onnx as O
from ..exporters._float_layers import keras_layer_names, layers_in
from ..specs.export import ExportOptions
from .stats import LayerStat, Op, TensorAccumulator, primary_layer

#: element-wise activations onnxruntime's QDQ quantizer fuses into the op before them
_ACTIVATIONS = ("Relu", "Clip", "LeakyRelu", "HardSwish", "HardSigmoid", "Sigmoid", "Tanh")
#: samples per onnxruntime run while collecting activations (bounds memory: every tensor of the graph is kept)
CHUNK = 8


class OnnxBackend:
    fmt = "onnx"
    suffix = ".onnx"
    calibration_methods = ("minmax", "entropy", "percentile")
    int16x8 = False
    qat = False

    def __init__(self, kmodel, *, io: str, workdir: Path, progress, opset: int = 17):
        O._require()
        self.kmodel, self.io, self.dir, self.progress, self.opset = kmodel, io, workdir, progress, opset
        self.known = keras_layer_names(kmodel)
        self.proto = O.to_onnx(kmodel, opset)
        self.input_name = self.proto.graph.input[0].name
        (workdir / "onnx").mkdir(parents=True, exist_ok=True)
        self.pre = O.prepare(self.proto, workdir / "onnx")
        self._n = 0

    def spec(self, cfg, *, io: str | None = None, qat: bool = False) -> ExportOptions:
        """The export options ``edgekit export`` would be given for ``cfg`` (validated by the exporter's rules)."""
        opts = ExportOptions(quantize=cfg.quantize, formats=("onnx",), io=io or self.io, opset=self.opset,
                             float_layers=tuple(cfg.float_layers), calibration_method=cfg.calibration_method)
        return opts.with_derived(qat=True) if qat else opts

    def _ranges(self, cfg, calib_x: np.ndarray) -> Path:
        return self.dir / "onnx" / f"ranges_{len(calib_x)}_{cfg.calibration_method}.json"

    def build(self, cfg, calib_x: np.ndarray | None, dest: Path, model=None) -> dict[str, Any]:
        if model is not None:
            raise ExportError("the onnx exporter does not take quantization-aware (QAT) models")
        reader = O._Reader(self.input_name, calib_x, self.progress)
        return O.quantize_int8(self.pre, self.spec(cfg), dest, self._ranges(cfg, calib_x), reader,
                               known_layers=self.known)

    def quantizable(self) -> dict[str, list[str]]:
        return O.quantizable_nodes(self.pre, self.known)

    def graph(self, cfg=None, calib_x=None) -> tuple[list[Op], dict[str, str], dict[str, list[str]]]:
        """The pre-processed graph's ops, ``{node name: unit}`` and ``{unit: [layers to keep float]}``.

        A unit is what must stay float together: a Conv/Gemm node and the Relu/Clip right after it (onnxruntime
        fuses them; keeping only the Conv float would still quantize its output at the activation's input).
        """
        import onnx

        keep = self.quantizable()
        nodes = list(onnx.load(str(self.pre)).graph.node)
        readers: dict[str, list] = {}
        for n in nodes:
            for i in n.input:
                readers.setdefault(i, []).append(n)
        producer = {o: n for n in nodes for o in n.output}
        ops, unit_of, names = [], {}, {}
        for n in nodes:
            ops.append(Op(n.name, list(n.input), list(n.output), layers_in(n.name, self.known)))
            if n.name not in keep:
                continue
            prev = producer.get(n.input[0]) if n.input else None
            if n.op_type in _ACTIVATIONS and prev is not None and prev.name in unit_of \
                    and len(readers.get(n.input[0], [])) == 1:
                unit = unit_of[prev.name]  # the activation fused into the op before it
            else:
                unit = primary_layer(keep[n.name], self.kmodel)
            unit_of[n.name] = unit
            for layer in keep[n.name]:
                if layer not in names.setdefault(unit, []):
                    names[unit].append(layer)
        return ops, unit_of, names

    # -- diagnosis -----------------------------------------------------------------------------------------------
    def diagnose(self, cfg, calib_x: np.ndarray, x_debug: np.ndarray) -> list[LayerStat]:
        """Per-tensor error of the QDQ model for ``cfg``: each quantized activation before vs after its QDQ pair
        (the error quantizing that op's output adds), plus the SQNR of the op's dequantized weights."""
        import onnx
        from onnxruntime.quantization import qdq_loss_debug as qd

        self._n += 1
        work = self.dir / "onnx" / f"debug{self._n}"
        work.mkdir(parents=True, exist_ok=True)
        qdq = work / "qdq.onnx"
        self.build(cfg, calib_x, qdq)
        qmodel = onnx.load(str(qdq))
        init = {t.name: t for t in qmodel.graph.initializer}
        qparams = {}
        for n in qmodel.graph.node:
            if n.op_type == "QuantizeLinear" and n.input[1] in init:
                scale = float(onnx.numpy_helper.to_array(init[n.input[1]]).reshape(-1)[0])
                zp = int(onnx.numpy_helper.to_array(init[n.input[2]]).reshape(-1)[0]) if len(n.input) > 2 else 0
                qparams[n.input[0]] = (scale, zp)
        pre_graph = onnx.load(str(self.pre)).graph
        producer = {o: n for n in pre_graph.node for o in n.output}
        q_producer = {o: n for n in qmodel.graph.node for o in n.output}
        dims = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
                for v in list(pre_graph.value_info) + list(pre_graph.output)}
        pre_init = {t.name: t for t in pre_graph.initializer}
        with _quiet(), O._foreign_errors("onnxruntime's QDQ debugging failed",
                                         hint="rerun with --debug for the details"):
            qd.modify_model_output_intermediate_tensors(str(self.pre), str(work / "float_aug.onnx"))
            qd.modify_model_output_intermediate_tensors(str(qdq), str(work / "qdq_aug.onnx"))
            acc: dict[str, TensorAccumulator] = {}
            n = len(x_debug)
            for start in range(0, n, CHUNK):
                chunk = x_debug[start:start + CHUNK]
                fa = qd.collect_activations(str(work / "float_aug.onnx"), _Reader(self.input_name, chunk))
                qa = qd.collect_activations(str(work / "qdq_aug.onnx"), _Reader(self.input_name, chunk))
                for name, match in qd.create_activation_matching(qa, fa).items():
                    if name not in qparams or name not in producer:
                        continue
                    a = acc.setdefault(name, TensorAccumulator(*qparams[name]))
                    act = _fused_activation(producer[name], q_producer.get(name), pre_init)
                    shape = dims.get(name)
                    for pre_q, post_q in zip(match["pre_qdq"], match["post_qdq"]):
                        a.add(_channels_last(act(pre_q), shape), _channels_last(post_q, shape),
                              channels=bool(shape) and len(shape) >= 3)
                self.progress("diagnosing onnx (qdq_loss_debug)", min(start + CHUNK, n), n)
            weights = qd.compute_weight_error(qd.create_weight_matching(str(self.pre), str(qdq)))
        weight_of: dict[str, float] = {}
        for node in pre_graph.node:
            for i in node.input[1:2]:  # the weight input of Conv / Gemm / MatMul
                if i in weights:
                    weight_of[node.name] = float(weights[i])
        _, unit_of, _ = self.graph()
        stats = []
        for name, a in acc.items():
            node = q_producer.get(name) or producer[name]  # the op that computes it in the int8 model
            float_node = producer[name]
            layers = list(dict.fromkeys(layers_in(node.name, self.known) + layers_in(float_node.name, self.known)))
            if not layers:
                continue
            unit = unit_of.get(node.name) or unit_of.get(float_node.name) or primary_layer(layers, self.kmodel)
            s = a.stat(unit, node.op_type, name, layers)
            s.weight_sqnr_db = weight_of.get(node.name)
            s.can_keep_float = node.name in unit_of or float_node.name in unit_of
            stats.append(s)
        return stats


def _fused_activation(float_node, qdq_node, init):
    """onnxruntime's QDQ quantizer drops a Relu/Clip after a Conv and lets the int8 range do the clamping: the
    tensor then holds the Conv's values before the activation. The float op to compare with applies it."""
    if qdq_node is None or float_node.op_type not in ("Relu", "Clip") or qdq_node.op_type == float_node.op_type:
        return lambda v: v
    if float_node.op_type == "Relu":
        return lambda v: np.maximum(v, 0)
    from onnx import numpy_helper

    bounds = [float(numpy_helper.to_array(init[i])) if i in init else None for i in list(float_node.input[1:3])]
    lo = bounds[0] if bounds else None
    hi = bounds[1] if len(bounds) > 1 else None
    return lambda v: np.clip(v, lo, hi)


def _channels_last(values: np.ndarray, dims: list[int] | None) -> np.ndarray:
    """qdq_loss_debug saves each sample's tensor flattened; ONNX tensors are NCHW: (C*H*W,) -> (H*W, C)."""
    v = np.asarray(values).reshape(-1)
    if dims and len(dims) >= 3 and dims[1] > 0 and v.size % dims[1] == 0:
        return v.reshape(dims[1], -1).T
    return v.reshape(1, -1)  # (C,) of a (1, C) tensor, or shape unknown


def _Reader(input_name: str, x: np.ndarray):
    return O._Reader(input_name, x, lambda *a: None)


@contextlib.contextmanager
def _quiet():
    """qdq_loss_debug logs errors for bias tensors it cannot match (harmless) and onnxruntime may print: keep both
    off the console."""
    with O._quiet_root_logger(logging.CRITICAL), contextlib.redirect_stdout(io.StringIO()):
        yield
