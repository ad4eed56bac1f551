"""Host interpreters that run an exported artifact on numpy inputs: LiteRT for ``.tflite``, onnxruntime for ``.onnx``.

``RUNTIMES.get(name)(path, threads)`` or :func:`load` (runtime picked from the file suffix) returns a
:class:`Session` with ``inputs``/``outputs`` (:class:`TensorInfo`: name, shape, dtype, quantization) and
``run(arrays) -> list[np.ndarray]`` on the artifact's own dtypes; :meth:`Session.predict` takes float inputs and
quantizes/dequantizes around integer I/O with the tensors' scale and zero point; :meth:`Session.predict_named`
feeds and returns tensors by their model-level names (``TensorInfo.key``: the TFLite SignatureDef's names, which are
the Keras input/output names, or the ONNX names), because converters reorder inputs and outputs. Nothing here
imports TensorFlow.
"""
from __future__ import annotations

import importlib.metadata
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ._jsonable import JsonMixin
from ._native import quiet_native_logs
from .errors import InferenceError, InvalidArgument, MissingDependency, ModelLoadError, map_errors
from .registry import Registry
from . import _tflite

#: name -> Session class; meta: suffix (file type it runs), package (distribution name), extra (edgekit extra)
RUNTIMES: Registry[type["Session"]] = Registry("runtime")


@dataclass
class TensorInfo(JsonMixin):
    """One model input or output: quantization is (scale, zero_point) for integer tensors, else None.

    ``name`` is the runtime's tensor name (``serving_default_image:0``, ``StatefulPartitionedCall:1``); ``key`` the
    model-level name the tensor has in the file's signature (the Keras layer name), when the file records one."""

    name: str
    shape: list[int | None]
    dtype: str
    scale: float | None = None
    zero_point: int | None = None
    key: str | None = None

    @property
    def quantized(self) -> bool:
        return self.scale is not None and self.scale > 0 and np.dtype(self.dtype).kind in "iu"


class Session:
    """A loaded artifact. Subclasses fill ``inputs``, ``outputs`` and implement ``_run``."""

    name = "?"
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        self.path = Path(path)
        self.threads = threads
        if not self.path.is_file():
            raise InvalidArgument(f"model file {str(self.path)!r} does not exist")

    @property
    def version(self) -> str:
        entry = RUNTIMES.entry(self.name)
        return package_version(entry.meta["package"]) or "unknown"

    def run(self, arrays: np.ndarray | Sequence[np.ndarray]) -> list[np.ndarray]:
        """Run one batch; ``arrays`` (one per input, already in the inputs' dtypes) -> outputs as stored."""
        if isinstance(arrays, np.ndarray):
            arrays = [arrays]
        if len(arrays) != len(self.inputs):
            raise InvalidArgument(f"{self.path.name} takes {len(self.inputs)} inputs; received {len(arrays)}")
        return self._run(list(arrays))

    def _run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:  # pragma: no cover - abstract
        raise NotImplementedError

    def predict(self, *xs: np.ndarray) -> list[np.ndarray]:
        """Float inputs -> float outputs: quantize inputs and dequantize outputs of integer I/O."""
        arrays = [quantize(x, info) for x, info in zip(xs, self.inputs)]
        return [dequantize(y, info) for y, info in zip(self.run(arrays), self.outputs)]

    def predict_named(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """:meth:`predict` by model-level names: ``{input key: float array}`` -> ``{output key: float array}``."""
        names = [i.key or i.name for i in self.inputs]
        if sorted(feeds) != sorted(names):
            raise InvalidArgument(f"{self.path.name} takes inputs {names}; received {sorted(feeds)}",
                                  hint="feed every input once, by its name")
        outs = self.predict(*[feeds[n] for n in names])
        return {o.key or o.name: y for o, y in zip(self.outputs, outs)}


def quantize(x: np.ndarray, info: TensorInfo) -> np.ndarray:
    """Float -> the tensor's dtype: ``round(x / scale) + zero_point``, clipped (identity cast for float tensors)."""
    dtype = np.dtype(info.dtype)
    if not info.quantized:
        return np.asarray(x, dtype=dtype)
    q = np.rint(np.asarray(x, np.float64) / info.scale) + info.zero_point
    lim = np.iinfo(dtype)
    return np.clip(q, lim.min, lim.max).astype(dtype)


def dequantize(y: np.ndarray, info: TensorInfo) -> np.ndarray:
    """The tensor's dtype -> float32: ``(y - zero_point) * scale``."""
    if not info.quantized:
        return np.asarray(y, dtype=np.float32)
    return ((y.astype(np.float32) - np.float32(info.zero_point)) * np.float32(info.scale)).astype(np.float32)


def package_version(dist: str) -> str | None:
    """Installed version of a distribution, without importing it."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


@RUNTIMES.register("litert", aliases=("tflite", "ai-edge-litert"), suffix=".tflite", package="ai-edge-litert",
                   extra="tf")
class LiteRTSession(Session):
    """A ``.tflite`` file in ai-edge-litert's interpreter (XNNPACK on CPU)."""

    name = "litert"

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        super().__init__(path, threads)
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as exc:
            raise MissingDependency("ai-edge-litert", "tf", purpose="to run .tflite files on this machine") from exc

        data = self.path.read_bytes()
        fb = _tflite.read(data, self.path.name)  # ModelLoadError for anything that is not a TFLite flatbuffer
        try:
            with quiet_native_logs():  # LiteRT's "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." line
                self.interpreter = Interpreter(model_content=data, num_threads=threads)
                self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise self._load_error(fb, exc) from exc
        self._in = self.interpreter.get_input_details()
        self._out = self.interpreter.get_output_details()
        in_keys, out_keys = fb.signature_names("inputs"), fb.signature_names("outputs")
        self.inputs = [self._info(d, in_keys.get(int(d["index"]))) for d in self._in]
        self.outputs = [self._info(d, out_keys.get(int(d["index"]))) for d in self._out]

    def _load_error(self, fb, exc: Exception) -> ModelLoadError:
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[-1]
        if _tflite.unresolved_in(str(exc)):
            missing = _tflite.missing_custom_ops(sorted(fb.custom_ops)) or _tflite.unresolved_in(str(exc))
            return ModelLoadError(f"LiteRT {self.version} cannot run {self.path.name}: it needs custom op"
                                  f"{'s' if len(missing) > 1 else ''} {', '.join(missing)}, which this runtime "
                                  "does not have",
                                  hint="run it where those ops are registered (the app or runtime build it came "
                                       f"with); `edgekit inspect {self.path.name}` still reads the file")
        return ModelLoadError(f"LiteRT cannot load {self.path.name}: {detail}",
                              hint="is it a .tflite flatbuffer? re-export it with edgekit export")

    @staticmethod
    def _info(d: dict, key: str | None = None) -> TensorInfo:
        scale, zp = d.get("quantization", (0.0, 0))
        sig = d.get("shape_signature", d["shape"])
        shape = [None if int(v) < 0 else int(v) for v in sig]
        dtype = np.dtype(d["dtype"]).name
        if scale and np.dtype(dtype).kind in "iu":
            return TensorInfo(d["name"], shape, dtype, float(scale), int(zp), key)
        return TensorInfo(d["name"], shape, dtype, key=key)

    def _run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        it = self.interpreter
        resized = False
        for det, arr in zip(self._in, arrays):
            if tuple(det["shape"]) != tuple(arr.shape):
                with map_errors({ValueError: InvalidArgument, RuntimeError: InvalidArgument},
                                f"input {det['name']!r} cannot take shape {tuple(arr.shape)}",
                                hint=f"the model's input shape is {[d or -1 for d in det.get('shape_signature', det['shape'])]}"):
                    it.resize_tensor_input(det["index"], list(arr.shape), strict=True)
                resized = True
        if resized:
            with quiet_native_logs(), map_errors({RuntimeError: InferenceError},
                                                 f"LiteRT cannot run {self.path.name} at the new input shape"):
                it.allocate_tensors()
            self._in = it.get_input_details()
            self._out = it.get_output_details()
        for det, arr in zip(self._in, arrays):
            with map_errors({ValueError: InvalidArgument}, f"input {det['name']!r} of {self.path.name}"):
                it.set_tensor(det["index"], np.ascontiguousarray(arr, dtype=det["dtype"]))
        with map_errors({RuntimeError: InferenceError}, f"LiteRT failed to run {self.path.name}"):
            it.invoke()
        return [it.get_tensor(d["index"]).copy() for d in self._out]


_ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
              "tensor(int8)": "int8", "tensor(uint8)": "uint8", "tensor(int16)": "int16", "tensor(int32)": "int32",
              "tensor(int64)": "int64", "tensor(bool)": "bool"}


@RUNTIMES.register("onnxruntime", aliases=("ort", "onnx"), suffix=".onnx", package="onnxruntime", extra="onnx")
class OnnxRuntimeSession(Session):
    """An ``.onnx`` file in onnxruntime's CPU execution provider."""

    name = "onnxruntime"

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        super().__init__(path, threads)
        ort = import_onnxruntime()
        errors = ort.capi.onnxruntime_pybind11_state
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = int(threads)
            opts.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=opts, providers=["CPUExecutionProvider"])
        except errors.NotImplemented as exc:  # an op (or op version) this onnxruntime has no kernel for
            raise ModelLoadError(f"onnxruntime {self.version} cannot run {self.path.name}: "
                                 f"{(str(exc).strip().splitlines() or ['?'])[-1]}",
                                 hint="use an onnxruntime build with that op, or export with another --opset") from exc
        except (errors.InvalidProtobuf, errors.InvalidGraph, errors.Fail, errors.NoSuchFile,
                errors.InvalidArgument, errors.RuntimeException) as exc:
            raise ModelLoadError(f"onnxruntime cannot load {self.path.name}: "
                                 f"{(str(exc).strip().splitlines() or ['?'])[-1]}",
                                 hint="is it an .onnx model? re-export it with edgekit export") from exc
        self.inputs = [self._info(a) for a in self.session.get_inputs()]
        self.outputs = [self._info(a) for a in self.session.get_outputs()]

    @staticmethod
    def _info(arg) -> TensorInfo:
        shape = [d if isinstance(d, int) else None for d in arg.shape]
        return TensorInfo(arg.name, shape, _ORT_TYPES.get(arg.type, arg.type), key=arg.name)

    def _run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        errors = sys.modules["onnxruntime"].capi.onnxruntime_pybind11_state
        feeds = {info.name: np.ascontiguousarray(a, dtype=info.dtype) for info, a in zip(self.inputs, arrays)}
        with map_errors({errors.InvalidArgument: InvalidArgument, ValueError: InvalidArgument},
                        f"onnxruntime refused the inputs of {self.path.name}", origin=("onnxruntime",)), \
                map_errors({errors.Fail: InferenceError, errors.RuntimeException: InferenceError,
                            errors.EPFail: InferenceError, errors.NotImplemented: InferenceError},
                           f"onnxruntime failed to run {self.path.name}"):
            return [np.asarray(o) for o in self.session.run(None, feeds)]


def import_onnxruntime():
    """``import onnxruntime`` with its telemetry off: since 1.2x it writes a device id and an event database under
    ``~/.cache/Microsoft`` at import unless ``ORT_DISABLE_TELEMETRY`` is set (a user's own setting wins)."""
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise MissingDependency("onnxruntime", "onnx", purpose="to run .onnx files on this machine") from exc
    if os.environ["ORT_DISABLE_TELEMETRY"] == "1":
        ort.disable_telemetry_events()  # also when onnxruntime was imported before edgekit
    return ort


def runtime_for(path: str | os.PathLike) -> str:
    """The runtime that runs ``path``, picked from its suffix."""
    suffix = Path(path).suffix.lower()
    for entry in RUNTIMES.entries():
        if entry.meta["suffix"] == suffix:
            return entry.name
    known = sorted({e.meta["suffix"] for e in RUNTIMES.entries()})
    raise InvalidArgument(f"cannot tell how to run {Path(path).name!r}", hint=f"expected one of: {', '.join(known)}")


def load(path: str | os.PathLike, threads: int | None = None, runtime: str | None = None) -> Session:
    """Load ``path`` in ``runtime`` (default: by suffix) with ``threads`` CPU threads."""
    return RUNTIMES.get(runtime or runtime_for(path))(path, threads)


__all__ = ["RUNTIMES", "Session", "TensorInfo", "LiteRTSession", "OnnxRuntimeSession", "load", "runtime_for",
           "quantize", "dequantize", "package_version", "import_onnxruntime"]
