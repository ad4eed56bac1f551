"""``inspect(path)``: what is inside a ``.tflite`` or ``.onnx`` file, without TensorFlow.

Op histogram, tensor dtypes, I/O with quantization, size split into weights (constant buffers / initializers)
and graph (everything else), the precision the file actually computes in, and warnings when an integer model
still runs float ops (float Conv/FullyConnected, or DEQUANTIZE of constant weights feeding float ops).
"""
from __future__ import annotations

import collections
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._jsonable import JsonMixin
from ..errors import InvalidArgument, MissingDependency, ModelLoadError, map_errors

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
    quantization of the integer tensor right behind the (de)quantize op (``via`` says which), else None."""

    name: str
    shape: list
    dtype: str
    scale: float | None = None
    zero_point: int | None = None
    via: str | None = None


@dataclass
class InspectReport(JsonMixin):
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


def inspect(path: str | os.PathLike) -> InspectReport:
    """Describe a ``.tflite`` or ``.onnx`` file; a corrupt or non-model file raises :class:`ModelLoadError`."""
    p = Path(path)
    if not p.is_file():
        raise InvalidArgument(f"{str(p)!r} is not a file", hint="give a .tflite or .onnx file")
    from . import format_of, suffixes

    readers = {"tflite": _inspect_tflite, "onnx": _inspect_onnx}  # format (registry name) -> its reader
    fmt = format_of(p)
    if fmt not in readers:
        raise InvalidArgument(f"cannot inspect {p.name!r}: unknown file type {p.suffix.lower() or '(none)'}",
                              hint=f"give a {' or '.join(suffixes())} file")
    return readers[fmt](p)


def _hist(items) -> dict[str, int]:
    return dict(sorted(collections.Counter(items).items(), key=lambda kv: (-kv[1], kv[0])))


# ----------------------------------------------------------------------------------------------------- tflite
def _schema():
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:
        try:
            from tensorflow.lite.python import schema_py_generated as schema
        except ImportError as exc:
            raise MissingDependency("ai-edge-litert", "tf", purpose="to read .tflite files") from exc
    return schema


def _inspect_tflite(p: Path) -> InspectReport:
    from ..runtimes import LiteRTSession

    data = p.read_bytes()
    sess = LiteRTSession(p)  # validates the flatbuffer (ModelLoadError on garbage)
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(model_content=data,
                     experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    ops = it._get_ops_details()
    tensors = {t["index"]: t for t in it.get_tensor_details()}

    schema = _schema()
    with map_errors({Exception: ModelLoadError}, f"cannot parse {p.name}"):
        model = schema.Model.GetRootAsModel(data, 0)
        type_names = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
        sub = model.Subgraphs(0)
        const_bytes: dict[int, int] = {}
        const_tensors: dict[int, tuple[str, int]] = {}
        weight_dtypes: dict[str, int] = collections.Counter()
        for ti in range(sub.TensorsLength()):
            t = sub.Tensors(ti)
            b = model.Buffers(t.Buffer())
            size = b.DataLength() or (int(b.Size()) if hasattr(b, "Size") else 0)
            if size > 0:
                dt = _tfl_dtype(type_names.get(t.Type(), str(t.Type())).lower())
                const_tensors[ti] = (dt, size)
                if t.Buffer() not in const_bytes:  # buffers may be shared by several tensors
                    const_bytes[t.Buffer()] = size
                    weight_dtypes[dt] += size
    weights = sum(const_bytes.values())

    op_names = [o["op_name"] for o in ops]
    dtype_of = {i: np.dtype(t["dtype"]).name for i, t in tensors.items()}

    # the integer tensor behind float I/O
    producers = {int(o): op for op in ops for o in op["outputs"]}
    consumers: dict[int, list] = collections.defaultdict(list)
    for op in ops:
        for i in op["inputs"]:
            consumers[int(i)].append(op)

    def io(det: dict, is_input: bool) -> IOTensor:
        info = LiteRTSession._info(det)
        out = IOTensor(info.name, info.shape, info.dtype, info.scale, info.zero_point)
        if out.scale is None and out.dtype.startswith("float"):
            near = None
            if is_input:
                near = next((o["outputs"][0] for o in consumers.get(det["index"], []) if o["op_name"] == "QUANTIZE"),
                            None)
            else:
                op = producers.get(det["index"])
                if op is not None and op["op_name"] == "DEQUANTIZE":
                    near = op["inputs"][0]
            if near is not None:
                s, z = tensors[int(near)]["quantization"]
                if s:
                    out.scale, out.zero_point, out.via = float(s), int(z), "quantize" if is_input else "dequantize"
        return out

    inputs = [io(d, True) for d in it.get_input_details()]
    outputs = [io(d, False) for d in it.get_output_details()]

    int_weights = any(dt in ("int8", "int4") for dt, _ in const_tensors.values())
    int16_act = any(dtype_of.get(int(o)) == "int16" for op in ops for o in op["outputs"])
    float_ops: list[str] = []
    deq_weights = 0
    for op in ops:
        name = op["op_name"]
        if name == "DEQUANTIZE" and int(op["inputs"][0]) in const_tensors:
            deq_weights += 1
            continue
        if name in _BOUNDARY_OPS:
            continue
        operands = [int(i) for i in op["inputs"] if int(i) >= 0] + [int(o) for o in op["outputs"]]
        if any(dtype_of.get(i) == "float32" for i in operands):
            float_ops.append(name)
    float_hist = _hist(float_ops)
    if int16_act:
        precision = "int16x8"
    elif int_weights and float_ops:
        precision = "dynamic" if not any(dtype_of.get(int(o)) == "int8" for op in ops for o in op["outputs"]
                                         if op["op_name"] not in _BOUNDARY_OPS) else "mixed"
    elif int_weights:
        precision = "int8"
    elif any(dt == "float16" for dt, _ in const_tensors.values()):
        precision = "float16"
    else:
        precision = "float32"
    warnings = []
    if int_weights and float_ops:
        warnings.append(f"integer weights, but {len(float_ops)} ops still run in float: "
                        + ", ".join(f"{k} x{v}" for k, v in float_hist.items())
                        + (" (expected for dynamic-range models)" if precision == "dynamic" else ""))
    if int_weights and deq_weights:
        warnings.append(f"{deq_weights} DEQUANTIZE ops turn constant weights back into float")
    return InspectReport(p, "tflite", p.stat().st_size, weights, p.stat().st_size - weights, precision,
                         _hist(op_names), _hist(dtype_of.values()), dict(weight_dtypes), inputs, outputs,
                         float_hist if int_weights else {}, warnings,
                         {"subgraphs": model.SubgraphsLength(), "tensors": len(tensors), "runtime": sess.name})


def _tfl_dtype(name: str) -> str:
    return {"float32": "float32", "float16": "float16", "int8": "int8", "uint8": "uint8", "int16": "int16",
            "int32": "int32", "int64": "int64", "int4": "int4"}.get(name, name)


# ------------------------------------------------------------------------------------------------------- onnx
def _inspect_onnx(p: Path) -> InspectReport:
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as exc:
        raise MissingDependency("onnx", "onnx", purpose="to read .onnx files") from exc
    with map_errors({Exception: ModelLoadError}, f"cannot read {p.name} as ONNX",
                    hint="is it an .onnx model? re-export it with edgekit export"):
        model = onnx.load(str(p))
        onnx.checker.check_model(model)
    g = model.graph
    if not len(g.node):
        raise ModelLoadError(f"{p.name} holds no ONNX graph")
    elem = {}
    for v in onnx.TensorProto.DataType.values():
        try:
            elem[v] = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(v)).name
        except Exception:  # noqa: BLE001 - undefined, string and exotic float types
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
        out = IOTensor(vi.name, shape, elem.get(tt.elem_type, "?"))
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
