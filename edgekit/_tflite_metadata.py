"""TFLite Model Metadata: what MediaPipe Tasks and the TFLite Task Library read from a ``.tflite`` to feed the model
and name its outputs (model facts, image color space and normalization, value ranges, class labels).

Written as tflite-support's ``MetadataPopulator`` does it: a ``ModelMetadata`` flatbuffer (schema 1.5.0, file
identifier ``M001``; bindings in :mod:`edgekit._tflite_metadata_schema`, generated from the published schema) stored
in a model buffer that the model's ``metadata`` entry ``TFLITE_METADATA`` points to, and the associated files (label
files) in a zip archive (stored, not compressed) appended to the model. The model's graph and weights are not
touched: the interpreter runs the file as before. Needs the ``flatbuffers`` package (extra ``metadata``) and the TFLite
schema bindings of ai-edge-litert or TensorFlow; no TensorFlow import.
"""
from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, field

import numpy as np

from . import _tflite
from ._jsonable import JsonMixin
from .errors import MissingDependency, ModelLoadError

METADATA_NAME = "TFLITE_METADATA"
_MODEL_ID, _METADATA_ID = b"TFL3", b"M001"
#: every field written here exists since metadata schema 1.0.0 (no tokenizers, tensor groups, file versions, ...)
MIN_PARSER_VERSION = "1.0.0"
IMAGE, FEATURE = "image", "feature"
COLOR_SPACES = ("RGB", "GRAYSCALE")


@dataclass
class TensorMetadata(JsonMixin):
    """One input or output of the model as an app sees it. ``kind``: image (inputs only) or feature. Images:
    ``color_space`` (RGB/GRAYSCALE) and the normalization ``(pixel - mean) / std`` per channel (one value for all
    channels allowed). ``min``/``max``: the tensor's value range (for a quantized input, its integer range).
    Classifier outputs: ``labels`` (one name per class index) in the associated file ``labels_file`` and ``scores``
    (probabilities or logits)."""

    name: str
    kind: str = FEATURE
    description: str = ""
    color_space: str | None = None
    mean: list[float] | None = None
    std: list[float] | None = None
    min: list[float] | None = None
    max: list[float] | None = None
    labels: list[str] | None = None
    labels_file: str | None = None
    scores: str | None = None


@dataclass
class AppMetadata(JsonMixin):
    """The model's metadata: its facts and one :class:`TensorMetadata` per input and output, in the file's order."""

    name: str
    description: str = ""
    version: str = ""
    author: str = ""
    license: str = ""
    inputs: list[TensorMetadata] = field(default_factory=list)
    outputs: list[TensorMetadata] = field(default_factory=list)
    min_parser_version: str = MIN_PARSER_VERSION

    @property
    def associated_files(self) -> dict[str, bytes]:
        """File name -> bytes of every label file (one class name per line, UTF-8)."""
        return {t.labels_file: ("\n".join(t.labels) + "\n").encode("utf-8")
                for t in self.outputs if t.labels and t.labels_file}


def _modules():
    try:
        import flatbuffers
    except ImportError as exc:
        raise MissingDependency("flatbuffers", "metadata", purpose="to write and read TFLite model metadata") from exc
    from . import _tflite_metadata_schema as md  # imports flatbuffers

    return flatbuffers, _tflite.schema(), md


def _tensor(md, t: TensorMetadata):
    tm = md.TensorMetadataT()
    tm.name, tm.description = t.name, t.description or None
    content = md.ContentT()
    if t.kind == IMAGE:
        content.contentPropertiesType = md.ContentProperties.ImageProperties
        content.contentProperties = md.ImagePropertiesT()
        content.contentProperties.colorSpace = getattr(md.ColorSpaceType, t.color_space or "UNKNOWN")
    else:
        content.contentPropertiesType = md.ContentProperties.FeatureProperties
        content.contentProperties = md.FeaturePropertiesT()
    tm.content = content
    if t.mean is not None and t.std is not None:
        unit = md.ProcessUnitT()
        unit.optionsType = md.ProcessUnitOptions.NormalizationOptions
        unit.options = md.NormalizationOptionsT()
        unit.options.mean, unit.options.std = [float(v) for v in t.mean], [float(v) for v in t.std]
        tm.processUnits = [unit]
    if t.min is not None or t.max is not None:
        tm.stats = md.StatsT()
        tm.stats.min = None if t.min is None else [float(v) for v in t.min]
        tm.stats.max = None if t.max is None else [float(v) for v in t.max]
    else:
        tm.stats = md.StatsT()
    if t.labels and t.labels_file:
        f = md.AssociatedFileT()
        f.name = t.labels_file
        f.description = f"Labels for the {len(t.labels)} classes of {t.name}"
        f.type = md.AssociatedFileType.TENSOR_AXIS_LABELS
        tm.associatedFiles = [f]
    return tm


def metadata_buffer(meta: AppMetadata) -> bytes:
    """The ``ModelMetadata`` flatbuffer (identifier ``M001``) of ``meta``."""
    flatbuffers, _, md = _modules()
    m = md.ModelMetadataT()
    m.name = meta.name
    for key in ("description", "version", "author", "license"):
        setattr(m, key, getattr(meta, key) or None)
    sg = md.SubGraphMetadataT()
    sg.inputTensorMetadata = [_tensor(md, t) for t in meta.inputs]
    sg.outputTensorMetadata = [_tensor(md, t) for t in meta.outputs]
    m.subgraphMetadata = [sg]
    m.minParserVersion = meta.min_parser_version
    b = flatbuffers.Builder(1024)
    b.Finish(m.Pack(b), _METADATA_ID)
    return bytes(b.Output())


#: the date of every file zipped onto a model (zipfile would take the clock's, so two exports a second apart differed)
ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def attach(model: bytes, meta: AppMetadata) -> bytes:
    """``model`` (a .tflite flatbuffer, without appended files) with ``meta`` in its ``TFLITE_METADATA`` buffer (an
    existing one is replaced) and the label files zipped onto its end. The tensor metadata must list every input and
    output of the main subgraph, in the file's order."""
    flatbuffers, s, _ = _modules()
    root = s.Model.GetRootAs(model, 0)
    had = any(_name(root.Metadata(i).Name()) == METADATA_NAME for i in range(root.MetadataLength()))
    if had and zipfile.is_zipfile(io.BytesIO(model)):  # only a file with metadata has files appended
        model = strip_files(model)
    m = s.ModelT.InitFromObj(s.Model.GetRootAs(model, 0))
    sg = m.subgraphs[0]
    for what, tensors, idx in (("inputs", meta.inputs, sg.inputs), ("outputs", meta.outputs, sg.outputs)):
        if len(tensors) != len(idx if idx is not None else []):
            raise ValueError(f"metadata for {len(tensors)} {what}; the model has {len(idx)}")
    buf = s.BufferT()
    buf.data = np.frombuffer(metadata_buffer(meta), dtype=np.uint8)
    entries = [e for e in (m.metadata or []) if _name(e.name) != METADATA_NAME]
    old = [e.buffer for e in (m.metadata or []) if _name(e.name) == METADATA_NAME]
    if old:
        m.buffers[old[0]] = buf
        index = old[0]
    else:
        m.buffers = (m.buffers or []) + [buf]
        index = len(m.buffers) - 1
    entry = s.MetadataT()
    entry.name, entry.buffer = METADATA_NAME, index
    m.metadata = entries + [entry]
    b = flatbuffers.Builder(len(model) + 4096)
    b.Finish(m.Pack(b), _MODEL_ID)
    out = io.BytesIO()
    out.write(b.Output())
    files = meta.associated_files
    if files:
        with zipfile.ZipFile(out, "a") as zf:  # stored: the Task libraries read the files in place
            for name, data in files.items():  # a fixed date: the same model and labels give the same bytes
                info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
                info.external_attr = 0o644 << 16
                zf.writestr(info, data, compress_type=zipfile.ZIP_STORED)
    return out.getvalue()


def strip_files(data: bytes) -> bytes:
    """The flatbuffer part of a model with appended associated files (zip archive)."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        starts = [i.header_offset for i in zf.infolist()]  # absolute: zipfile adds the prepended bytes
    return data[:min(starts)] if starts else data


def _name(v) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, (bytes, bytearray)) else (v or "")


def _floats(v) -> list[float] | None:
    return None if v is None else [float(x) for x in v]


def read(data: bytes, name: str = "model") -> AppMetadata | None:
    """The metadata of a .tflite file's bytes (None when it has none); label files are read from the appended zip."""
    _, s, md = _modules()
    if len(data) < 8 or data[4:8] != _MODEL_ID:
        raise ModelLoadError(f"{name} is not a TFLite flatbuffer (no 'TFL3' file identifier)")
    model = s.Model.GetRootAs(data, 0)
    buf = None
    for i in range(model.MetadataLength()):
        e = model.Metadata(i)
        if _name(e.Name()) == METADATA_NAME:
            b = model.Buffers(int(e.Buffer()))
            buf = b.DataAsNumpy().tobytes() if b is not None and b.DataLength() else None
    if buf is None:
        return None
    if len(buf) < 8 or buf[4:8] != _METADATA_ID:
        raise ModelLoadError(f"{name}: its {METADATA_NAME} buffer is not a metadata flatbuffer (no 'M001' identifier)")
    m = md.ModelMetadataT.InitFromObj(md.ModelMetadata.GetRootAs(buf, 0))
    files: dict[str, bytes] = {}
    if zipfile.is_zipfile(io.BytesIO(data)):
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            files = {n: zf.read(n) for n in zf.namelist()}
    sg = (m.subgraphMetadata or [None])[0]
    colors = {v: k for k, v in vars(md.ColorSpaceType).items() if not k.startswith("_")}

    def tensor(tm) -> TensorMetadata:
        t = TensorMetadata(_name(tm.name), description=_name(tm.description))
        content = tm.content
        if content is not None and content.contentPropertiesType == md.ContentProperties.ImageProperties:
            t.kind = IMAGE
            t.color_space = colors.get(content.contentProperties.colorSpace, "UNKNOWN")
        for unit in tm.processUnits or []:
            if unit.optionsType == md.ProcessUnitOptions.NormalizationOptions:
                t.mean, t.std = _floats(unit.options.mean), _floats(unit.options.std)
        if tm.stats is not None:
            t.min, t.max = _floats(tm.stats.min), _floats(tm.stats.max)
        for f in tm.associatedFiles or []:
            if f.type == md.AssociatedFileType.TENSOR_AXIS_LABELS:
                t.labels_file = _name(f.name)
                raw = files.get(t.labels_file)
                t.labels = None if raw is None else raw.decode("utf-8", "replace").splitlines()
        return t

    return AppMetadata(_name(m.name), _name(m.description), _name(m.version), _name(m.author), _name(m.license),
                       [tensor(t) for t in (sg.inputTensorMetadata or [])] if sg else [],
                       [tensor(t) for t in (sg.outputTensorMetadata or [])] if sg else [],
                       _name(m.minParserVersion))
