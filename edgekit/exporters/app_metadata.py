"""App metadata of every artifact: what an app-side library (MediaPipe Tasks, the TFLite Task Library) needs to feed
the model and name its outputs, written into the file itself.

``.tflite``: TFLite Model Metadata (:mod:`edgekit._tflite_metadata`): model facts (``metadata``: name, description,
version, author, license), per input its role (image or not), color space (RGB/GRAYSCALE) and normalization
``(pixel - mean) / std`` derived from the model's preprocessing, the value range of quantized inputs, per classifier
output the labels file and whether the scores are probabilities or logits. ``.onnx``: the same facts in the model's
``metadata_props``. Labels come from ``labels`` (a file, one name per line) or the data's class names. :func:`plan`
runs before anything is converted (a bad label file is an error and nothing is written); :func:`write` adds the
metadata to a converted file, before it is verified (verification runs on the final bytes).
"""
from __future__ import annotations

import json
import os
import warnings as _warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .. import __version__, _tflite, _tflite_metadata
from .._tflite_metadata import FEATURE, IMAGE, AppMetadata, TensorMetadata
from ..errors import EdgekitWarning, InvalidArgument
from .calibration import InputSpec

#: pixel-space normalization (mean, std) per preprocessing mode and channel count: the model takes
#: (pixel - mean) / std; ``raw`` is the identity (the model normalises inside its graph)
_TORCH_MEAN, _TORCH_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
#: where the ONNX metadata_props keep the full record (the flat keys beside it are for quick reads)
ONNX_KEY = "edgekit.app_metadata"


def normalization(mode: str | None, channels: int) -> tuple[list[float], list[float]] | None:
    """(mean, std) in pixel units (0..255) of preprocessing ``mode`` for an image of ``channels`` channels."""
    if mode is None:
        return None
    if mode == "unit":
        return [0.0], [255.0]
    if mode == "tf":
        return [127.5], [127.5]
    if mode == "raw":
        return [0.0], [1.0]
    if mode == "torch":
        if channels == 3:
            return [round(m * 255, 4) for m in _TORCH_MEAN], [round(s * 255, 4) for s in _TORCH_STD]
        return [round(0.449 * 255, 4)], [round(0.226 * 255, 4)]
    if mode == "caffe":  # channels reversed (BGR) before the means are subtracted: see the warning in plan()
        return ([103.939, 116.779, 123.68] if channels == 3 else [116.779]), [1.0]
    return None


def read_labels(path: str | os.PathLike) -> list[str]:
    """Class names from a label file: one per line, UTF-8, in class-index order (a trailing newline is fine)."""
    p = Path(path).expanduser()
    hint = "a text file with one class name per line, in the order of the class indices (UTF-8)"
    if not p.is_file():
        raise InvalidArgument(f"label file {str(path)!r} does not exist" if not p.exists() else
                              f"label file {str(path)!r} is not a file", hint=hint)
    raw = p.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise InvalidArgument(f"label file {str(path)!r} is not UTF-8 text (byte {exc.start}, line {line})",
                              hint="save it as UTF-8 (e.g. iconv -f latin1 -t utf-8)") from None
    lines = [ln.rstrip("\r") for ln in text.split("\n")]
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise InvalidArgument(f"label file {str(path)!r} is empty", hint=hint)
    blank = [i + 1 for i, ln in enumerate(lines) if not ln.strip()]
    if blank:
        raise InvalidArgument(f"label file {str(path)!r}: line {blank[0]} is empty"
                              f"{f' ({len(blank)} empty lines)' if len(blank) > 1 else ''}; every class needs a name",
                              hint=hint)
    return [ln.strip() for ln in lines]


@dataclass
class OutputPlan:
    name: str
    classes: int | None
    softmax: bool
    labels: list[str] | None = None


@dataclass
class MetadataPlan:
    """What :func:`write` puts into each artifact of one export call (None when ``--no-metadata``)."""

    facts: dict[str, str]
    inputs: list[InputSpec]
    preprocess: str | None
    outputs: list[OutputPlan]
    labels_origin: str | None = None
    warnings: list[str] = field(default_factory=list)


def _classes(t) -> int | None:
    shape = list(t.shape)
    return int(shape[-1]) if len(shape) == 2 and shape[-1] is not None and int(shape[-1]) > 1 else None


def plan(spec, kmodel, inputs: Sequence[InputSpec], preprocess: str | None, classifier: Sequence[bool],
         data_class_names: Sequence[str] | None, data_source: str | None = None) -> MetadataPlan | None:
    """Check ``spec.labels`` against the model and decide the metadata of this export (before any conversion)."""
    if not spec.app_metadata:
        return None
    names = [str(n) for n in getattr(kmodel, "output_names", None) or [t.name for t in kmodel.outputs]]
    outs = [OutputPlan(n, _classes(t), bool(c)) for n, t, c in zip(names, kmodel.outputs, classifier)]
    cands = [o for o in outs if o.classes]
    warnings: list[str] = []
    origin = None
    if spec.labels is not None:
        given = isinstance(spec.labels, (str, os.PathLike))
        labels = read_labels(spec.labels) if given else [str(v) for v in spec.labels]
        what = f"label file {str(spec.labels)!r}" if given else "labels"
        if not labels:
            raise InvalidArgument(f"{what} is empty", hint="give one class name per class index")
        if not cands:
            shapes = ", ".join(f"{n} {tuple(t.shape)}" for n, t in zip(names, kmodel.outputs))
            raise InvalidArgument(f"{what} names {len(labels)} classes, but model {kmodel.name!r} has no classifier "
                                  f"output (outputs: {shapes})",
                                  hint="labels go with a (batch, classes) output; drop --labels")
        pick = [o for o in cands if o.softmax] or cands
        if len(pick) > 1:
            pick = [o for o in pick if o.classes == len(labels)] or pick
        if len(pick) > 1:
            raise InvalidArgument(f"{what}: model {kmodel.name!r} has {len(pick)} classifier outputs "
                                  f"({', '.join(o.name for o in pick)}) of {len(labels)} classes; which one they "
                                  "name is ambiguous", hint="export the output you want labelled alone")
        if pick[0].classes != len(labels):
            raise InvalidArgument(f"{what} has {len(labels)} labels; the model's output {pick[0].name!r} has "
                                  f"{pick[0].classes} classes", hint="one class name per line, one line per class "
                                                                     "index, in the order of the indices")
        pick[0].labels = labels
        origin = f"label file {spec.labels}" if given else "labels argument"
    elif data_class_names:
        match = [o for o in cands if o.classes == len(data_class_names)]
        match = [o for o in match if o.softmax] or match
        if match:
            for o in match:
                o.labels = [str(v) for v in data_class_names]
            origin = f"class names of {data_source}" if data_source else "class names of the data"
        elif cands:
            warnings.append(f"no labels written: the data names {len(data_class_names)} classes, the model's output "
                            f"{cands[0].name!r} has {cands[0].classes}; give --labels FILE")
    for o in cands:
        if o.labels is None and o.softmax and not any(w.startswith("no labels") for w in warnings):
            warnings.append(f"no labels for classifier output {o.name!r} ({o.classes} classes): apps will show class "
                            "indices; give --labels FILE (one name per line) or data with class names")
    for w in warnings:
        _warnings.warn(w, EdgekitWarning, stacklevel=4)
    facts = {"name": kmodel.name, "description": f"{kmodel.name}, exported by edgekit {__version__}",
             **spec.metadata_facts}
    return MetadataPlan(facts, list(inputs), preprocess, outs, origin, warnings)


def _input_metadata(s: InputSpec | None, name: str, preprocess: str | None, dtype: str,
                    quant: tuple[float, int] | None, warnings: list[str], client_warnings: bool = True
                    ) -> TensorMetadata:
    if s is None or not s.image:
        t = TensorMetadata(name, FEATURE, "model-ready values (no image preprocessing)")
    else:
        c = s.shape[-1]
        space = {3: "RGB", 1: "GRAYSCALE"}.get(c)
        if c == 1 and client_warnings:
            warnings.append(f"MediaPipe Tasks cannot take this model: its image classifier feeds 3- or 4-channel "
                            f"(RGB/RGBA) images and input {name!r} has 1 channel (grayscale); the TFLite Task "
                            "Library converts images to the GRAYSCALE its metadata names")
        if c == 3 and preprocess == "caffe" and client_warnings:
            warnings.append(f"input {name!r} takes BGR images (caffe preprocessing); MediaPipe Tasks and the "
                            "TFLite Task Library feed RGB and TFLite metadata cannot say BGR: an app must reverse the "
                            "channels itself, or results differ from edgekit's verification")
        norm = normalization(preprocess, c)
        h, w = s.shape[0], s.shape[1]
        t = TensorMetadata(name, IMAGE, f"{space or f'{c}-channel'} image, {h}x{w}"
                           + (f", pixels p as (p - {_fmt(norm[0])}) / {_fmt(norm[1])} ({preprocess} preprocessing)"
                              if norm else ""), color_space=space)
        if norm is not None:
            t.mean, t.std = norm
            if dtype == "float32":
                t.min = [round((0.0 - m) / sd, 6) for m, sd in _pairs(*norm)]
                t.max = [round((255.0 - m) / sd, 6) for m, sd in _pairs(*norm)]
        if dtype == "uint8" and norm is not None and quant is not None:
            _check_pixels(name, norm, quant, warnings)
        if dtype not in ("float32", "uint8") and client_warnings:
            warnings.append(f"MediaPipe Tasks and the TFLite Task Library feed image inputs as float32 or uint8; "
                            f"input {name!r} is {dtype} (use --io uint8 or float for an app)")
    if dtype in ("uint8", "int8", "int16"):
        info = np.iinfo(dtype)
        t.min, t.max = [float(info.min)], [float(info.max)]
    return t


def _pairs(mean: list[float], std: list[float]) -> list[tuple[float, float]]:
    n = max(len(mean), len(std))
    return [(mean[i if len(mean) > 1 else 0], std[i if len(std) > 1 else 0]) for i in range(n)]


def _fmt(v: list[float]) -> str:
    return str(_num(v[0])) if len(v) == 1 else "[" + ", ".join(str(_num(x)) for x in v) + "]"


def _num(x: float):
    return int(x) if float(x).is_integer() else x


def _check_pixels(name: str, norm, quant: tuple[float, int], warnings: list[str]) -> None:
    """The clients hand a uint8 image input the pixels as they are: the input's quantization must read pixel p as the
    model's preprocessing does, (p - z) * scale == (p - mean) / std."""
    scale, zp = quant
    worst = 0.0
    for mean, std in _pairs(*norm):
        span = 255.0 / std
        for p in (0.0, 255.0):
            worst = max(worst, abs((p - zp) * scale - (p - mean) / std) / span)
    if worst > 0.01:
        warnings.append(f"MediaPipe Tasks and the TFLite Task Library give uint8 input {name!r} the pixels unchanged; "
                        f"its quantization (scale {scale:.6g}, zero point {zp}) reads pixel p as (p - {zp}) * "
                        f"{scale:.6g}, the model's preprocessing wants (p - {_fmt(norm[0])}) / {_fmt(norm[1])}: "
                        f"off by up to {worst:.0%} of the input range in an app (calibration data that covers "
                        "pixels 0..255, or --io float, avoids it)")


def _output_metadata(o: OutputPlan | None, name: str) -> TensorMetadata:
    if o is None or not o.classes:
        return TensorMetadata(name, FEATURE, "")
    scores = "probabilities" if o.softmax else "logits"
    t = TensorMetadata(name, FEATURE, f"{'Probabilities (softmax)' if o.softmax else 'Scores (logits, no softmax)'} "
                       f"of {o.classes} classes", scores=scores)
    if o.softmax:
        t.min, t.max = [0.0], [1.0]
    if o.labels:
        t.labels, t.labels_file = o.labels, "labels.txt"
    return t


def tflite_metadata(data: bytes, p: MetadataPlan) -> tuple[AppMetadata, list[str]]:
    """The metadata of converted .tflite bytes (inputs and outputs in the file's order, matched by signature name)."""
    f = _tflite.read(data)
    g = f.main
    by_in, by_out = f.signature_names("inputs"), f.signature_names("outputs")
    specs = {s.name: s for s in p.inputs}
    outs = {o.name: o for o in p.outputs}
    warnings: list[str] = []
    ins = []
    for k, idx in enumerate(g.inputs):
        t = g.tensors[idx]
        name = by_in.get(idx) or (p.inputs[k].name if len(p.inputs) == len(g.inputs) else t.name)
        quant = (t.scales[0], t.zero_points[0]) if t.quantized and t.zero_points else None
        ins.append(_input_metadata(specs.get(name), name, p.preprocess, t.dtype, quant, warnings))
    outputs = []
    labelled = [o for o in p.outputs if o.labels]
    for k, idx in enumerate(g.outputs):
        name = by_out.get(idx) or (p.outputs[k].name if len(p.outputs) == len(g.outputs) else g.tensors[idx].name)
        md = _output_metadata(outs.get(name), name)
        if md.labels and len(labelled) > 1:
            md.labels_file = f"labels_{name}.txt"
        outputs.append(md)
    facts = p.facts
    return AppMetadata(facts["name"], facts.get("description", ""), facts.get("version", ""), facts.get("author", ""),
                       facts.get("license", ""), ins, outputs), warnings


def onnx_props(p: MetadataPlan, model) -> dict[str, str]:
    """metadata_props of an ONNX model (``model``: its ModelProto): the flat facts, ``labels`` (one per line) and the
    normalization of a single image input, and the whole record as JSON under ``edgekit.app_metadata``."""
    specs = {s.name: s for s in p.inputs}
    ins = [_input_metadata(specs.get(i.name), i.name, p.preprocess, "float32", None, [], False)
           for i in model.graph.input if i.name in specs] or [
        _input_metadata(s, s.name, p.preprocess, "float32", None, [], False) for s in p.inputs]
    outs = [_output_metadata(o, o.name) for o in p.outputs]
    meta = AppMetadata(p.facts["name"], p.facts.get("description", ""), p.facts.get("version", ""),
                       p.facts.get("author", ""), p.facts.get("license", ""), ins, outs)
    props = {k: v for k, v in p.facts.items() if v}
    labelled = [t for t in outs if t.labels]
    if len(labelled) == 1:
        props["labels"] = "\n".join(labelled[0].labels)
        props["scores"] = labelled[0].scores or ""
    images = [t for t in ins if t.kind == IMAGE]
    if len(images) == 1 and images[0].mean is not None:
        props["color_space"] = images[0].color_space or ""
        props["normalization_mean"] = ",".join(str(_num(v)) for v in images[0].mean)
        props["normalization_std"] = ",".join(str(_num(v)) for v in images[0].std)
    props[ONNX_KEY] = meta.to_json(indent=None)
    return props


def write(fmt: str, path: Path, p: MetadataPlan | None) -> tuple[dict[str, Any], list[str]]:
    """Add the app metadata to the converted file at ``path`` (in place); (the manifest's record, warnings)."""
    if p is None:
        return {"written": False, "reason": "app_metadata=False (--no-metadata)"}, []
    if fmt == "tflite":
        data = path.read_bytes()
        meta, warnings = tflite_metadata(data, p)
        path.write_bytes(_tflite_metadata.attach(data, meta))
        return {"written": True, "format": "TFLite Model Metadata", "labels_origin": p.labels_origin,
                **meta.to_dict(), "warnings": warnings}, warnings
    if fmt == "onnx":
        import onnx

        model = onnx.load(str(path))
        props = onnx_props(p, model)
        keep = [e for e in model.metadata_props if e.key not in props]
        del model.metadata_props[:]
        model.metadata_props.extend(keep)
        for k, v in props.items():
            e = model.metadata_props.add()
            e.key, e.value = k, v
        if p.facts.get("description"):
            model.doc_string = p.facts["description"]
        onnx.save(model, str(path))
        return {"written": True, "format": "ONNX metadata_props", "labels_origin": p.labels_origin,
                "metadata_props": {k: v for k, v in props.items() if k != ONNX_KEY},
                **json.loads(props[ONNX_KEY])}, []
    return {"written": False, "reason": f"no app metadata for format {fmt}"}, []
