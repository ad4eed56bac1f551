"""Where an artifact's weights are: byte ranges of its constant tensors, with dtype, shape and quantized axis.

``.tflite``: the buffers its tensors point at (flatbuffer vectors, or data stored after the flatbuffer in models
over 2 GB). ``.onnx``: the ``raw_data`` of the graph's initializers, found by walking the protobuf wire format (no
onnx import). Everything else in the file (graph, names, quantization parameters) is the package's skeleton.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

from .. import _tflite as tflite_file
from ..errors import ModelLoadError

_TFLITE_WIDTH = {"float32": 4, "float16": 2, "int32": 4, "uint8": 1, "int64": 8, "int8": 1, "int16": 2,
                 "float64": 8, "uint32": 4, "uint16": 2, "uint64": 8, "bool": 1}
#: ONNX TensorProto.DataType -> bytes per element
_ONNX_WIDTH = {1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 16: 2}
_ONNX_NAMES = {1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64", 9: "bool",
               10: "float16", 11: "float64", 12: "uint32", 13: "uint64", 16: "bfloat16"}


@dataclass
class Segment:
    """One constant tensor's bytes in the file."""

    offset: int
    length: int
    name: str
    dtype: str
    width: int  # bytes per element (1 when unknown)
    shape: list[int]
    axis: int | None = None  # per-channel quantized axis, when the file says so
    #: float32 vector that should equal ``scalar * <the float32 vector at (offset, length)>`` (a bias's scales are
    #: its input's scale times its kernel's): (scalar's float32 bits, offset, length)
    product: tuple[int, int, int] | None = None
    #: where the graph reads it: (what, subgraph, operator index, input slot); names change between exports (QAT
    #: renames every layer), the graph's structure does not
    role: tuple | None = None

    @property
    def key(self) -> tuple:
        return (self.name, self.dtype, tuple(self.shape))


def find(data: bytes, fmt: str, name: str = "model") -> list[Segment]:
    """The artifact's weight segments, sorted by offset, non-overlapping."""
    segs = _tflite(data, name) if fmt == "tflite" else _onnx(data, name)
    out, end = [], -1
    for s in sorted(segs, key=lambda s: s.offset):
        if s.length <= 0 or s.offset < end or s.offset + s.length > len(data):
            continue  # shared or empty buffers: the first tensor pointing at it describes it
        if s.width > 1 and s.length % s.width:
            s.width, s.shape, s.axis = 1, [s.length], None
        out.append(s)
        end = s.offset + s.length
    return out


def _tflite(data: bytes, name: str) -> list[Segment]:
    import flatbuffers

    info = tflite_file.read(data, name)  # validates (ModelLoadError for a damaged file)
    s = tflite_file.schema()
    model = s.Model.GetRootAs(data, 0)
    where: dict[int, tuple[int, int]] = {}
    for i in range(model.BuffersLength()):
        b = model.Buffers(i)
        o = flatbuffers.number_types.UOffsetTFlags.py_type(b._tab.Offset(4))
        if o:
            where[i] = (b._tab.Vector(o), b._tab.VectorLen(o))
        elif hasattr(b, "Offset") and int(b.Offset()) > 1:
            where[i] = (int(b.Offset()), int(b.Size()))
    segs, seen = [], set()
    roles: dict[tuple[int, int], tuple[int, int]] = {}  # (subgraph, tensor) -> first (operator, slot) reading it
    for si, sg in enumerate(info.subgraphs):
        for oi, op in enumerate(sg.operators):
            for slot, ti in enumerate(op.inputs):
                roles.setdefault((si, ti), (oi, slot))
    for si, sg in enumerate(info.subgraphs):
        for t in sg.tensors:
            if t.buffer in where and t.buffer not in seen:
                seen.add(t.buffer)
                off, length = where[t.buffer]
                shape = [int(d or 0) for d in t.shape]
                width = _TFLITE_WIDTH.get(t.dtype, 1)
                n = 1
                for d in shape:
                    n *= d
                if n * width != length:
                    width, shape = 1, [length]
                axis = t.quantized_dimension if len(t.scales) > 1 and width == 1 else None
                role = roles.get((si, t.index))
                segs.append(Segment(off, length, t.name, t.dtype, width, shape, axis,
                                    role=("data", si, *role) if role else None))
    # per-channel quantization vectors (float32 scales, int64 zero points) live in the flatbuffer's tables: as
    # segments they are coded as numbers (byte planes, codebooks) instead of with the names and offsets around them
    for si in range(model.SubgraphsLength()):
        sg = model.Subgraphs(si)
        scale_at: dict[int, Segment] = {}
        for ti in range(sg.TensorsLength()):
            t = sg.Tensors(ti)
            q = t.Quantization()
            if q is None:
                continue
            tname = t.Name().decode("utf-8", "replace") if t.Name() else str(ti)
            for slot, what, width, dtype in ((8, "scale", 4, "float32"), (10, "zero_point", 8, "int64")):
                o = flatbuffers.number_types.UOffsetTFlags.py_type(q._tab.Offset(slot))
                if o and q._tab.VectorLen(o) > 1:
                    n = q._tab.VectorLen(o)
                    role = roles.get((si, ti))
                    segs.append(Segment(q._tab.Vector(o), n * width, f"{tname}/{what}", dtype, width, [n],
                                        role=(what, si, *role) if role else None))
                    if what == "scale":
                        scale_at[ti] = segs[-1]
        tensors = info.subgraphs[si].tensors
        for op in info.subgraphs[si].operators:
            if op.name in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV") and len(op.inputs) > 2:
                if op.name == "TRANSPOSE_CONV":  # (output shape, weights, input, bias)
                    x, w, b = op.inputs[2], op.inputs[1], op.inputs[3] if len(op.inputs) > 3 else -1
                else:
                    x, w, b = op.inputs[:3]
                if min(x, w, b) < 0 or b not in scale_at or w not in scale_at or len(tensors[x].scales) != 1:
                    continue
                src, dst = scale_at[w], scale_at[b]
                if src.length == dst.length:
                    bits = struct.unpack("<I", struct.pack("<f", tensors[x].scales[0]))[0]
                    dst.product = (bits, src.offset, src.length)
    return segs


# ------------------------------------------------------------------------------------------- protobuf wire
def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _fields(data: bytes, start: int, end: int):
    """(field number, wire type, value or (offset, length) for LEN) of one message's bytes."""
    pos = start
    while pos < end:
        key, pos = _varint(data, pos)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, pos = _varint(data, pos)
            yield num, wt, v
        elif wt == 2:
            n, pos = _varint(data, pos)
            if pos + n > end:
                raise ValueError("length past the message end")
            yield num, wt, (pos, n)
            pos += n
        elif wt == 1:
            pos += 8
        elif wt == 5:
            pos += 4
        else:
            raise ValueError(f"wire type {wt}")
    if pos != end:
        raise ValueError("message overruns its length")


def _onnx(data: bytes, name: str) -> list[Segment]:
    try:
        segs = []
        for num, wt, v in _fields(data, 0, len(data)):
            if num == 7 and wt == 2:  # ModelProto.graph
                g0, gn = v
                for gnum, gwt, gv in _fields(data, g0, g0 + gn):
                    if gnum == 5 and gwt == 2:  # GraphProto.initializer (TensorProto)
                        seg = _onnx_tensor(data, *gv)
                        if seg is not None:
                            segs.append(seg)
        return segs
    except (ValueError, IndexError) as exc:
        raise ModelLoadError(f"{name} is not a readable ONNX model ({exc})",
                             hint="the file is truncated or corrupt: copy or export it again") from None


def _onnx_tensor(data: bytes, start: int, length: int) -> Segment | None:
    dims, dtype, tname, raw = [], 0, "", None
    for num, wt, v in _fields(data, start, start + length):
        if num == 1 and wt == 0:
            dims.append(v)
        elif num == 1 and wt == 2:  # packed dims
            p, e = v[0], v[0] + v[1]
            while p < e:
                d, p = _varint(data, p)
                dims.append(d)
        elif num == 2 and wt == 0:
            dtype = v
        elif num == 8 and wt == 2:
            tname = data[v[0]:v[0] + v[1]].decode("utf-8", "replace")
        elif num == 9 and wt == 2:
            raw = v
    if raw is None:
        return None
    width = _ONNX_WIDTH.get(dtype, 1)
    n = 1
    for d in dims:
        n *= d
    shape = list(dims)
    if n * width != raw[1]:
        width, shape = 1, [raw[1]]
    return Segment(raw[0], raw[1], tname, _ONNX_NAMES.get(dtype, f"onnx_{dtype}"), width, shape,
                   0 if (width == 1 and len(shape) > 1) else None)
