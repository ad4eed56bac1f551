"""Read a ``.tflite`` flatbuffer directly, without an interpreter and without TensorFlow.

The generated schema module ships with ai-edge-litert (``ai_edge_litert.schema_py_generated``, on top of the
``flatbuffers`` package; TensorFlow's copy is the fallback). :func:`read` gives every subgraph's tensors (shape,
dtype, quantization, constant bytes), operators (builtin names, or the custom code of custom ops), I/O and
SignatureDefs, so files whose custom ops the local runtime lacks (MediaPipe's) are read like any other.
:func:`missing_custom_ops` asks the runtime which of a file's custom ops it cannot resolve.
"""
from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field

from .errors import MissingDependency, ModelLoadError

#: builtin code of custom operators
CUSTOM = 32
_IDENTIFIER = b"TFL3"


def schema():
    """The generated TFLite schema module (ai-edge-litert's, else TensorFlow's)."""
    try:
        from ai_edge_litert import schema_py_generated as mod
    except ImportError:
        try:
            from tensorflow.lite.python import schema_py_generated as mod
        except ImportError as exc:
            raise MissingDependency("ai-edge-litert", "tf", purpose="to read .tflite files") from exc
    return mod


@dataclass
class Tensor:
    index: int
    name: str
    shape: list[int | None]
    dtype: str
    buffer: int
    #: bytes of constant data (weights) stored for this tensor, 0 for activations
    const_bytes: int = 0
    scales: list[float] = field(default_factory=list)
    zero_points: list[int] = field(default_factory=list)
    quantized_dimension: int = 0
    variable: bool = False

    @property
    def quantized(self) -> bool:
        return bool(self.scales) and any(s > 0 for s in self.scales)


@dataclass
class Operator:
    name: str
    custom: bool
    inputs: list[int]
    outputs: list[int]


@dataclass
class Subgraph:
    name: str
    tensors: list[Tensor]
    operators: list[Operator]
    inputs: list[int]
    outputs: list[int]


@dataclass
class Signature:
    """A SignatureDef: model-level I/O names (``serving_default``'s are the Keras input/output names) -> tensors."""

    key: str
    subgraph: int
    inputs: dict[str, int]
    outputs: dict[str, int]


@dataclass
class TFLiteFile:
    version: int
    description: str
    subgraphs: list[Subgraph]
    signatures: list[Signature]
    #: unique constant buffers: buffer index -> bytes
    buffer_bytes: dict[int, int]
    metadata: list[str]

    @property
    def main(self) -> Subgraph:
        return self.subgraphs[0]

    @property
    def custom_ops(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for sg in self.subgraphs:
            for op in sg.operators:
                if op.custom:
                    counts[op.name] = counts.get(op.name, 0) + 1
        return counts

    def signature_names(self, which: str) -> dict[int, str]:
        """Tensor index of the main subgraph -> its signature name, for ``which`` = ``inputs`` | ``outputs``."""
        sig = next((s for s in self.signatures if s.subgraph == 0), None)
        return {} if sig is None else {t: n for n, t in getattr(sig, which).items()}


def _str(b) -> str:
    return b.decode("utf-8", "replace") if isinstance(b, (bytes, bytearray)) else (b or "")


def read(data: bytes, name: str = "model") -> TFLiteFile:
    """Parse ``data``; a file that is not a TFLite flatbuffer, or is truncated, raises :class:`ModelLoadError`."""
    s = schema()
    if len(data) < 8 or data[4:8] != _IDENTIFIER:
        raise ModelLoadError(f"{name} is not a TFLite flatbuffer (no 'TFL3' file identifier)",
                             hint="give a .tflite file written by a TFLite converter")
    try:
        return _read(s, data)
    except (struct.error, IndexError, ValueError, TypeError, UnicodeDecodeError, OverflowError, MemoryError) as exc:
        raise ModelLoadError(f"{name} is a damaged TFLite flatbuffer ({type(exc).__name__}: {exc})",
                             hint="the file is truncated or corrupt: copy or export it again") from exc


def _bounded(n: int, data: bytes, what: str) -> int:
    if n < 0 or n > len(data):  # every element takes at least a byte: a larger count is a corrupt offset
        raise ValueError(f"{what} count {n} exceeds the file size")
    return n


def _read(s, data: bytes) -> TFLiteFile:
    model = s.Model.GetRootAs(data, 0)
    builtin_names = {v: k for k, v in vars(s.BuiltinOperator).items() if not k.startswith("_")}
    type_names = {v: k.lower() for k, v in vars(s.TensorType).items() if not k.startswith("_")}
    codes = []
    for i in range(_bounded(model.OperatorCodesLength(), data, "operator code")):
        oc = model.OperatorCodes(i)
        code = max(int(oc.BuiltinCode()), int(oc.DeprecatedBuiltinCode()))
        if code == CUSTOM:
            codes.append((_str(oc.CustomCode()) or "?", True))
        else:
            codes.append((builtin_names.get(code, f"BUILTIN_{code}"), False))
    buffer_sizes = []
    for i in range(_bounded(model.BuffersLength(), data, "buffer")):
        b = model.Buffers(i)
        size = int(b.DataLength())
        if not size and hasattr(b, "Offset") and int(b.Offset()) > 1:  # stored after the flatbuffer (> 2 GB models)
            size = int(b.Size())
        buffer_sizes.append(size)
    subgraphs, used = [], {}
    for si in range(_bounded(model.SubgraphsLength(), data, "subgraph")):
        sg = model.Subgraphs(si)
        tensors = []
        for ti in range(_bounded(sg.TensorsLength(), data, "tensor")):
            t = sg.Tensors(ti)
            shape = [int(v) for v in (t.ShapeAsNumpy() if t.ShapeLength() else [])]
            if t.ShapeSignatureLength():
                shape = [None if int(v) < 0 else int(v) for v in t.ShapeSignatureAsNumpy()]
            buf = int(t.Buffer())
            size = buffer_sizes[buf] if 0 < buf < len(buffer_sizes) else 0
            if size:
                used[buf] = size
            q = t.Quantization()
            scales = [float(v) for v in q.ScaleAsNumpy()] if q is not None and q.ScaleLength() else []
            zps = [int(v) for v in q.ZeroPointAsNumpy()] if q is not None and q.ZeroPointLength() else []
            tensors.append(Tensor(ti, _str(t.Name()), shape, type_names.get(int(t.Type()), str(t.Type())), buf,
                                  size, scales, zps, int(q.QuantizedDimension()) if q is not None else 0,
                                  bool(t.IsVariable())))
        ops = []
        for oi in range(_bounded(sg.OperatorsLength(), data, "operator")):
            op = sg.Operators(oi)
            name, custom = codes[int(op.OpcodeIndex())]
            ins = [int(v) for v in op.InputsAsNumpy()] if op.InputsLength() else []
            outs = [int(v) for v in op.OutputsAsNumpy()] if op.OutputsLength() else []
            ops.append(Operator(name, custom, ins, outs))
        ins = [int(v) for v in sg.InputsAsNumpy()] if sg.InputsLength() else []
        outs = [int(v) for v in sg.OutputsAsNumpy()] if sg.OutputsLength() else []
        n = len(tensors)  # every tensor index must name a tensor (-1: an omitted optional operator input)
        for where, idx, low in ((f"subgraph {si} input", ins, 0), (f"subgraph {si} output", outs, 0),
                                *((f"operator {oi} ({op.name}) input", op.inputs, -1) for oi, op in enumerate(ops)),
                                *((f"operator {oi} ({op.name}) output", op.outputs, 0) for oi, op in enumerate(ops))):
            bad = next((i for i in idx if not low <= i < n), None)
            if bad is not None:
                raise ValueError(f"{where} names tensor {bad}, but subgraph {si} has {n} tensors")
        subgraphs.append(Subgraph(_str(sg.Name()), tensors, ops, ins, outs))
    if not subgraphs:
        raise ValueError("the model has no subgraph")
    sigs = []
    for i in range(_bounded(model.SignatureDefsLength(), data, "signature")):
        sd = model.SignatureDefs(i)
        sigs.append(Signature(_str(sd.SignatureKey()), int(sd.SubgraphIndex()),
                              {_str(sd.Inputs(j).Name()): int(sd.Inputs(j).TensorIndex())
                               for j in range(sd.InputsLength())},
                              {_str(sd.Outputs(j).Name()): int(sd.Outputs(j).TensorIndex())
                               for j in range(sd.OutputsLength())}))
    for sig in sigs:
        if not 0 <= sig.subgraph < len(subgraphs):
            raise ValueError(f"signature {sig.key!r} names subgraph {sig.subgraph} of {len(subgraphs)}")
        n = len(subgraphs[sig.subgraph].tensors)
        bad = next((i for i in (*sig.inputs.values(), *sig.outputs.values()) if not 0 <= i < n), None)
        if bad is not None:
            raise ValueError(f"signature {sig.key!r} names tensor {bad}, but its subgraph has {n} tensors")
    meta = [_str(model.Metadata(i).Name()) for i in range(_bounded(model.MetadataLength(), data, "metadata"))]
    return TFLiteFile(int(model.Version()), _str(model.Description()), subgraphs, sigs, used, meta)


def _probe_model(s, custom_code: str) -> bytes:
    """A one-op model: float32[1] -> custom op ``custom_code`` -> float32[1]."""
    import flatbuffers

    m = s.ModelT()
    m.version = 3
    oc = s.OperatorCodeT()
    oc.builtinCode, oc.deprecatedBuiltinCode, oc.customCode, oc.version = CUSTOM, CUSTOM, custom_code, 1
    m.operatorCodes = [oc]
    tensors = []
    for i, tname in enumerate(("in", "out")):
        t = s.TensorT()
        t.shape, t.type, t.buffer, t.name = [1], s.TensorType.FLOAT32, 0, tname
        tensors.append(t)
    op = s.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0], [1]
    sg = s.SubGraphT()
    sg.tensors, sg.inputs, sg.outputs, sg.operators, sg.name = tensors, [0], [1], [op], "probe"
    m.subgraphs = [sg]
    m.buffers = [s.BufferT()]
    b = flatbuffers.Builder(256)
    b.Finish(m.Pack(b), file_identifier=_IDENTIFIER)
    return bytes(b.Output())


_UNRESOLVED = re.compile(r"unresolved custom op: ([^\s.]+)")


def missing_custom_ops(names) -> list[str]:
    """The custom ops among ``names`` that the installed LiteRT interpreter cannot resolve.

    Each op is probed in a one-op model: LiteRT resolves custom ops by name and fails an unresolved one with
    'Encountered unresolved custom op'. The probes run in a child process because a *registered* custom op
    (e.g. TFLite_Detection_PostProcess) crashes on the probe's empty options: a crash means it was resolved, and a
    new child goes on with the next name. One child for all names (not one per name: a file can name thousands);
    the names travel as JSON on stdin (a name from a file may hold NUL bytes or start with ``-``). A child that
    does not finish in time leaves the names it did not probe counted as missing (the cautious answer).
    """
    import json
    import subprocess
    import sys

    names = list(dict.fromkeys(names))
    missing = [n for n in names if "\0" in n]  # LiteRT looks ops up by C string: such a name is never registered
    todo = [n for n in names if "\0" not in n]
    while todo:
        try:
            proc = subprocess.run([sys.executable, "-c", "from edgekit._tflite import _probe_all; _probe_all()"],
                                  input=json.dumps(todo), capture_output=True, text=True, timeout=120 + len(todo))
            verdicts = [line for line in proc.stdout.splitlines() if line in ("missing", "resolved")]
        except subprocess.TimeoutExpired:
            return missing + todo
        missing += [n for n, v in zip(todo, verdicts) if v == "missing"]
        todo = todo[len(verdicts) + 1:]  # the name after the last verdict crashed the child: resolved
    return missing


def _probe_all() -> None:
    """Child process of :func:`missing_custom_ops`: for each name of the JSON list on stdin, a line ``missing``
    (LiteRT cannot resolve that custom op) or ``resolved``."""
    import json
    import sys

    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    for name in json.load(sys.stdin):
        verdict = "resolved"
        try:
            it = Interpreter(model_content=_probe_model(schema(), name),
                             experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
            it.allocate_tensors()
        except (RuntimeError, ValueError) as exc:
            verdict = "missing" if name in _UNRESOLVED.findall(str(exc)) else "resolved"
        print(verdict, flush=True)


def unresolved_in(message: str) -> list[str]:
    """Custom op names in a LiteRT error message ('Encountered unresolved custom op: X')."""
    return _UNRESOLVED.findall(message)
