"""``inspect(path)``: what is inside a ``.tflite`` or ``.onnx`` file, without TensorFlow.

Op histogram (custom ops by their custom code), tensor dtypes, I/O with quantization and model-level names, size
split into weights (constant buffers / initializers) and graph (everything else), the precision the file actually
computes in, and warnings when an integer model still runs float ops (float Conv/FullyConnected, or DEQUANTIZE of
constant weights feeding float ops) or uses custom ops the local runtime lacks. ``.tflite`` files are read from
their flatbuffer (:mod:`edgekit._tflite`), ``.onnx`` files with the ``onnx`` package.
"""
from __future__ import annotations

import collections
import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._jsonable import JsonMixin
from ..errors import InvalidArgument, MissingDependency, ModelLoadError, map_errors
from ..specs.formats import format_of, suffixes
from .. import _tflite
from .._tflite import missing_custom_ops
from ..runtimes import package_version

#: ops that only move data between integer and float domains
_BOUNDARY_OPS = {"QUANTIZE", "DEQUANTIZE", "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "Cast"}
#: ONNX ops that carry a model's compute (flagged when they run in float inside an integer model)
_ONNX_COMPUTE = {"Conv", "ConvTranspose", "MatMul", "Gemm"}
#: ONNX ops that only move or reshape data
_ONNX_LAYOUT = {"Transpose", "Reshape", "Identity", "Squeeze", "Unsqueeze", "Flatten"}
#: ONNX ops onnxruntime has no integer kernel for: float even between QDQ pairs
_ONNX_FLOAT_ONLY = {"BatchNormalization", "InstanceNormalization", "LayerNormalization"}


@dataclass
class IOTensor(JsonMixin):
    """A model input/output. ``scale``/``zero_point``: its own quantization for integer I/O; for float I/O, the
    quantization of the integer tensor right behind the (de)quantize op (``via`` says which), else None.
    ``key`` is the model-level name (TFLite SignatureDef name = the Keras layer name; the ONNX name)."""

    name: str
    shape: list
    dtype: str
    scale: float | None = None
    zero_point: int | None = None
    via: str | None = None
    key: str | None = None


@dataclass
class InspectReport(JsonMixin):
    """What a model file holds. ``precision`` is what its weights/activations are stored as; ``cpu_compute`` says
    when a CPU runtime computes in something else (float16-weight .tflite files run in float32 on CPU)."""

    path: Path
    format: str
    size_bytes: int
    weights_bytes: int
    graph_bytes: int
    precision: str
    ops: dict[str, int]
    tensor_dtypes: dict[str, int]
    weight_dtypes: dict[str, int]
    inputs: list[IOTensor]
    outputs: list[IOTensor]
    float_ops: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    details: dict = field(default_factory=dict)
    cpu_compute: str | None = None
    custom_ops: dict[str, int] = field(default_factory=dict)
    #: custom ops the local runtime cannot resolve (None: not checked, e.g. no runtime installed)
    missing_ops: list[str] | None = None
    notes: list[str] = field(default_factory=list)


def inspect(path: str | os.PathLike) -> InspectReport:
    """Describe a ``.tflite`` or ``.onnx`` file; a corrupt or non-model file raises :class:`ModelLoadError`.

    A ``.tflite`` is read from its flatbuffer (no interpreter, no TensorFlow): files with custom ops the local
    runtime lacks are described fully; an interpreter is loaded only to tell which of their custom ops it lacks."""
    p = Path(path)
    if not p.is_file():
        raise InvalidArgument(f"{str(p)!r} is not a file", hint="give a .tflite or .onnx file")
    readers = {"tflite": _inspect_tflite, "onnx": _inspect_onnx}  # format (registry name) -> its reader
    fmt = format_of(p)
    if fmt not in readers:
        raise InvalidArgument(f"cannot inspect {p.name!r}: unknown file type {p.suffix.lower() or '(none)'}",
                              hint=f"give a {' or '.join(suffixes())} file")
    return readers[fmt](p)


def _hist(items) -> dict[str, int]:
    return dict(sorted(collections.Counter(items).items(), key=lambda kv: (-kv[1], kv[0])))


# ----------------------------------------------------------------------------------------------------- tflite
def _inspect_tflite(p: Path) -> InspectReport:
    fb = _tflite.read(p.read_bytes(), p.name)
    sg = fb.main
    tensors = sg.tensors
    dtype_of = {t.index: t.dtype for t in tensors}
    const = {t.index for t in tensors if t.const_bytes}
    weight_dtypes: dict[str, int] = collections.Counter()
    seen: set[int] = set()
    for g in fb.subgraphs:
        for t in g.tensors:
            if t.const_bytes and t.buffer not in seen:  # buffers may be shared by several tensors
                seen.add(t.buffer)
                weight_dtypes[t.dtype] += t.const_bytes
    weights = sum(fb.buffer_bytes.values())
    ops = sg.operators
    producers = {o: op for op in ops for o in op.outputs}
    consumers: dict[int, list] = collections.defaultdict(list)
    for op in ops:
        for i in op.inputs:
            consumers[i].append(op)
    in_keys, out_keys = fb.signature_names("inputs"), fb.signature_names("outputs")

    def io(index: int, is_input: bool) -> IOTensor:
        t = tensors[index]
        own = t.quantized and t.dtype in ("int8", "uint8", "int16")
        out = IOTensor(t.name, list(t.shape), t.dtype, t.scales[0] if own else None,
                       t.zero_points[0] if own and t.zero_points else (0 if own else None),
                       key=(in_keys if is_input else out_keys).get(index))
        if out.scale is None and out.dtype.startswith("float"):
            near = None
            if is_input:
                near = next((o.outputs[0] for o in consumers.get(index, []) if o.name == "QUANTIZE" and o.outputs),
                            None)
            else:
                op = producers.get(index)
                near = op.inputs[0] if op is not None and op.name == "DEQUANTIZE" and op.inputs else None
            if near is not None and near >= 0 and tensors[near].quantized:
                nt = tensors[near]
                out.scale, out.zero_point = nt.scales[0], nt.zero_points[0] if nt.zero_points else 0
                out.via = "quantize" if is_input else "dequantize"
        return out

    inputs = [io(i, True) for i in sg.inputs]
    outputs = [io(i, False) for i in sg.outputs]

    int_weights = any(dtype_of[i] in ("int8", "int4") for i in const)
    int16_act = any(dtype_of.get(o) == "int16" for op in ops for o in op.outputs)
    float_ops: list[str] = []
    deq_weights = 0
    for op in ops:
        if op.name == "DEQUANTIZE" and op.inputs and op.inputs[0] in const:
            deq_weights += 1
            continue
        if op.name in _BOUNDARY_OPS:
            continue
        if any(dtype_of.get(i) == "float32" for i in [i for i in op.inputs if i >= 0] + op.outputs):
            float_ops.append(op.name)
    float_hist = _hist(float_ops)
    fp16_weights = any(dtype_of[i] == "float16" for i in const)
    if int16_act:
        precision = "int16x8"
    elif int_weights and float_ops:
        precision = "dynamic" if not any(dtype_of.get(o) == "int8" for op in ops for o in op.outputs
                                         if op.name not in _BOUNDARY_OPS) else "mixed"
    elif int_weights:
        precision = "int8"
    elif fp16_weights:
        precision = "float16"
    else:
        precision = "float32"
    warnings, notes = [], []
    if int_weights and float_ops:
        warnings.append(f"integer weights, but {len(float_ops)} ops still run in float: "
                        + ", ".join(f"{k} x{v}" for k, v in float_hist.items())
                        + (" (expected for dynamic-range models)" if precision == "dynamic" else ""))
    if int_weights and deq_weights:
        warnings.append(f"{deq_weights} DEQUANTIZE ops turn constant weights back into float")
    cpu_compute = None
    if precision == "float16":
        cpu_compute = "float32"
        notes.append("float16 weights: CPU runtimes (XNNPACK, the reference kernels) dequantize them to float32 once "
                     "and compute in float32; the file is half the size, not faster (GPU delegates can run float16)")
    custom = fb.custom_ops
    missing = _missing_ops(custom)
    if missing:
        warnings.append(f"custom op{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                        f"{'are' if len(missing) > 1 else 'is'} not in the local LiteRT "
                        f"{package_version('ai-edge-litert') or ''}".rstrip()
                        + ": this file cannot run (bench, verify) on this machine; its target runtime must "
                          "register them")
    all_ops = [op.name for g in fb.subgraphs for op in g.operators]
    size = p.stat().st_size
    return InspectReport(p, "tflite", size, weights, size - weights, precision, _hist(all_ops),
                         _hist(t.dtype for g in fb.subgraphs for t in g.tensors), dict(weight_dtypes), inputs,
                         outputs, float_hist if int_weights else {}, warnings,
                         {"subgraphs": len(fb.subgraphs), "tensors": sum(len(g.tensors) for g in fb.subgraphs),
                          "operators": len(all_ops), "schema_version": fb.version, "description": fb.description,
                          "signatures": [s.key for s in fb.signatures], "metadata": fb.metadata,
                          "quantized_tensors": _quantization_summary(tensors)},
                         cpu_compute, custom, missing, notes)


def _missing_ops(custom: dict[str, int]) -> list[str] | None:
    """Custom ops the local LiteRT cannot resolve; [] without custom ops; None when no LiteRT is installed."""
    if not custom:
        return []
    if importlib.util.find_spec("ai_edge_litert") is None:
        return None

    return missing_custom_ops(sorted(custom))


def _quantization_summary(tensors) -> dict[str, int]:
    per_channel = sum(1 for t in tensors if t.quantized and len(t.scales) > 1)
    per_tensor = sum(1 for t in tensors if t.quantized and len(t.scales) == 1)
    return {"per_channel": per_channel, "per_tensor": per_tensor}


# ------------------------------------------------------------------------------------------------------- onnx
def _inspect_onnx(p: Path) -> InspectReport:
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as exc:
        raise MissingDependency("onnx", "onnx", purpose="to read .onnx files") from exc
    from google.protobuf.message import DecodeError

    with map_errors({DecodeError: ModelLoadError, onnx.checker.ValidationError: ModelLoadError,
                     UnicodeDecodeError: ModelLoadError},  # the checker decodes names: a damaged byte in one
                    f"cannot read {p.name} as ONNX", hint="is it an .onnx model? re-export it with edgekit export"):
        model = onnx.load(str(p))
        onnx.checker.check_model(model)
    g = model.graph
    if not len(g.node):
        raise ModelLoadError(f"{p.name} holds no ONNX graph")
    elem = {}
    for v in onnx.TensorProto.DataType.values():
        try:
            elem[v] = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(v)).name
        except (KeyError, TypeError, ValueError):  # undefined, string and exotic float types
            elem[v] = onnx.TensorProto.DataType.Name(v).lower()
    init = {t.name: t for t in g.initializer}
    weight_dtypes: dict[str, int] = collections.Counter()
    weights = 0
    for t in g.initializer:
        nbytes = numpy_helper.to_array(t).nbytes
        weights += nbytes
        weight_dtypes[elem.get(t.data_type, str(t.data_type))] += nbytes
    ops = _hist((n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}.{n.op_type}") for n in g.node)
    vtypes = {}
    for vi in list(g.input) + list(g.output) + list(g.value_info):
        vtypes[vi.name] = elem.get(vi.type.tensor_type.elem_type, "?")
    for name, t in init.items():
        vtypes[name] = elem.get(t.data_type, "?")
    producer = {o: n for n in g.node for o in n.output}

    def scalar(name: str):
        t = init.get(name)
        return None if t is None else numpy_helper.to_array(t).reshape(-1)[0].item()

    def io(vi, is_input: bool) -> IOTensor:
        tt = vi.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
        out = IOTensor(vi.name, shape, elem.get(tt.elem_type, "?"), key=vi.name)
        name, q = vi.name, None
        for _ in range(4):  # through layout ops (tf2onnx puts a Transpose between an NHWC input and the first Q)
            if is_input:
                nxt = [n for n in g.node if name in n.input]
                q = next((n for n in nxt if n.op_type == "QuantizeLinear"), None)
                step = nxt[0] if len(nxt) == 1 and nxt[0].op_type in _ONNX_LAYOUT else None
                name = step.output[0] if step is not None else name
            else:
                prev = producer.get(name)
                q = prev if prev is not None and prev.op_type == "DequantizeLinear" else None
                step = prev if prev is not None and prev.op_type in _ONNX_LAYOUT else None
                name = step.input[0] if step is not None else name
            if q is not None or step is None:
                break
        if q is not None and len(q.input) >= 2:
            out.scale = scalar(q.input[1])
            out.zero_point = int(scalar(q.input[2])) if len(q.input) > 2 and scalar(q.input[2]) is not None else 0
            out.via = "quantize" if is_input else "dequantize"
        return out

    inputs = [io(vi, True) for vi in g.input if vi.name not in init]
    outputs = [io(vi, False) for vi in g.output]
    int_ops = [n for n in g.node if n.op_type in ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear")
               or n.op_type.startswith("QLinear") or n.op_type.endswith("Integer")]
    int_weights = any(dt in ("int8", "uint8") for dt in weight_dtypes)
    float_ops = []
    for n in g.node:
        if n.op_type in _ONNX_COMPUTE:
            src = producer.get(n.input[0]) if n.input else None
            if src is None or src.op_type != "DequantizeLinear":
                float_ops.append(n.op_type)
        elif n.op_type in _ONNX_FLOAT_ONLY:
            float_ops.append(n.op_type)
    float_hist = _hist(float_ops)
    if any(n.op_type.endswith("Integer") or n.op_type == "DynamicQuantizeLinear" for n in g.node):
        precision = "dynamic"
    elif int_ops:
        precision = "int8" if not float_ops else "mixed"
    elif "float16" in weight_dtypes:
        precision = "float16"
    else:
        precision = "float32"
    warnings = []
    if (int_ops or int_weights) and float_ops:
        warnings.append(f"quantized model, but {len(float_ops)} compute ops still run in float: "
                        + ", ".join(f"{k} x{v}" for k, v in float_hist.items()))
    size = p.stat().st_size
    return InspectReport(p, "onnx", size, weights, max(0, size - weights), precision, ops,
                         _hist(vtypes.values()), dict(weight_dtypes), inputs, outputs,
                         float_hist if (int_ops or int_weights) else {}, warnings,
                         {"opset": [f"{o.domain or 'ai.onnx'}:{o.version}" for o in model.opset_import],
                          "producer": f"{model.producer_name} {model.producer_version}".strip(),
                          "nodes": len(g.node)})
