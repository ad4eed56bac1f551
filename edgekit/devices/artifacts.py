"""Artifact identification: what a .tflite/.onnx is (model, format, precision, sha256) before it runs.

The manifest beside it (``<artifact>.json``, written by ``edgekit export``) is read first; without one the file name
and, failing that, the tensor dtypes tell the precision.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .._io import json_loads
from .._jsonable import JsonMixin
from ..errors import InvalidArgument
from ..specs.formats import format_of, precision_tokens, suffixes
from .transports import sha256_file
from .._verify_data import VERIFY_SUFFIX



@dataclass
class ArtifactInfo(JsonMixin):
    """What we know about an artifact before running it (manifest beside it, else file name and tensors)."""

    path: str
    model: str
    format: str
    precision: str
    size_bytes: int
    sha256: str
    manifest: str | None = None
    verify_data: str | None = None  # <artifact>.verify.npz named by the manifest (for bench --verify)
    verify_sha256: str | None = None
    verify_precision: str | None = None  # the precision whose thresholds apply
    output_lsb: float | None = None
    model_info: dict | None = None  # the manifest's model section (name, source, options) for --profile-ops


def artifact_info(path: str | Path) -> ArtifactInfo:
    """Model name and precision from ``<artifact>.json`` (or ``<stem>.json``), else from the file name/tensors."""
    p = Path(path)
    if p.is_dir():
        raise InvalidArgument(f"artifact {str(p)!r} is a directory",
                              hint=f"pass the .tflite/.onnx files in it, e.g. {str(p).rstrip('/')}/*.tflite")
    if not p.is_file():
        raise InvalidArgument(f"artifact {str(p)!r} does not exist",
                              hint="check the path; `edgekit export` writes artifacts under artifacts/ by default")
    fmt = format_of(p)
    if fmt is None:
        model = p.name.removesuffix(".json").removesuffix(VERIFY_SUFFIX)
        kinds = " or ".join(suffixes())
        hint = (f"pass the model itself ({model}), not its manifest or verification data" if model != p.name else
                f"bench takes the {kinds} files that `edgekit export` writes")
        raise InvalidArgument(f"cannot benchmark {p.name}: it is not a {kinds} model", hint=hint)
    manifest, meta = None, {}
    for cand in (p.with_name(p.name + ".json"), p.with_suffix(".json")):
        if cand.is_file():
            try:
                data = json_loads(cand.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(data, dict):
                manifest, meta = str(cand), data
                break
    art = meta.get("artifact") if isinstance(meta.get("artifact"), dict) else {}
    model = meta.get("model") or meta.get("model_name") or art.get("model") or meta.get("name")
    if isinstance(model, dict):
        model = model.get("name")
    precision = meta.get("precision") or art.get("precision") or meta.get("quantize")
    if not model:
        words = "|".join(re.escape(t) for t, _ in precision_tokens())
        model = re.sub(rf"[_.-]({words})$", "", p.stem, flags=re.I) or p.stem
    if not precision:
        precision = _precision_from_name(p.stem) or _precision_from_tensors(p, fmt) or "unknown"
    info = ArtifactInfo(str(p), str(model), fmt, str(precision), p.stat().st_size, sha256_file(p), manifest)
    v = meta.get("verification_inputs")
    if isinstance(v, dict) and v.get("file"):
        info.verify_data, info.verify_sha256 = str(p.with_name(str(v["file"]))), v.get("sha256")
        info.verify_precision, info.output_lsb = v.get("precision"), v.get("output_lsb")
    if isinstance(meta.get("model"), dict):
        info.model_info = meta["model"]
    return info


def _precision_from_name(stem: str) -> str | None:
    tokens = re.split(r"[^a-z0-9]+", stem.lower())
    joined = "_".join(tokens)
    for token, prec in precision_tokens():
        if token in tokens or (token.count("_") and token in joined):
            return prec
    return None


def _precision_from_tensors(path: Path, fmt: str) -> str | None:
    """Best effort from tensor dtypes with a host runtime (if installed); None when we cannot tell."""
    try:
        if fmt == "tflite":
            from ai_edge_litert.interpreter import Interpreter

            dtypes = {str(getattr(d["dtype"], "__name__", d["dtype"])) for d in
                      Interpreter(model_path=str(path)).get_tensor_details()}
        else:
            import onnx

            m = onnx.load(str(path), load_external_data=False)
            dtypes = {onnx.helper.tensor_dtype_to_np_dtype(t.data_type).name for t in m.graph.initializer}
            if any(n.op_type in ("QLinearConv", "QuantizeLinear", "ConvInteger", "MatMulInteger")
                   for n in m.graph.node):
                dtypes.add("int8")
    except Exception:  # noqa: BLE001 - inference of a label only
        return None
    if "float16" in dtypes:
        return "float16"
    if "int16" in dtypes and ("int8" in dtypes):
        return "int16x8"
    if "int8" in dtypes or "uint8" in dtypes:
        return "int8"
    return "float32" if dtypes else None
