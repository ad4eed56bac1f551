"""The JSON manifest written beside every artifact (``<artifact>.json``)."""
from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

from .. import __version__
from .._io import sha256_file
from .._jsonable import to_jsonable
from ..runtimes import package_version

#: 2: "verification" is edgekit.verification's result (schema 2): the paired accuracy drop with its 95 % interval,
#: top-1 agreement over the samples whose float margin exceeds the precision's noise (with their count, and over
#: all samples as top1_agreement_all), samples_needed when inconclusive, per-precision limits under "thresholds".
#: 3: one name and unit per quantity: "quantize" dropped ("precision" says it: float32, float16, ... where quantize
#: said none, fp16); the doctor's record holds accuracies, drops and max_drop as fractions 0..1 (were percent and
#: points) and each rung's "precision" (was "quantize")
SCHEMA = "edgekit.export/3"
TOOLS = ("tensorflow", "tf-keras", "tensorflow-model-optimization", "ai-edge-litert", "tf2onnx", "onnx",
         "onnxruntime", "numpy")


def tool_versions() -> dict[str, str | None]:
    return {name: package_version(name) for name in TOOLS}


def build(*, artifact: Path, final_name: str, fmt: str, spec, model_info: dict, calibration, report, facts: dict,
          verification, verify_source: str | None, pipeline: dict | None = None,
          app_metadata: dict | None = None) -> dict[str, Any]:
    """Manifest for one artifact (``artifact`` is where its bytes are now; ``final_name`` its file name).
    ``pipeline``: the run that produced the model (recipe file, compression stages, training data), when there was
    one. ``app_metadata``: what the file's own metadata says (labels, normalization, ...), as written."""
    return to_jsonable({
        "schema": SCHEMA,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "edgekit": __version__,
        "tools": tool_versions(),
        "artifact": {"file": final_name, "format": fmt, "size_bytes": artifact.stat().st_size,
                     "sha256": sha256_file(artifact), "weights_bytes": report.weights_bytes,
                     "graph_bytes": report.graph_bytes},
        "model": model_info,
        "precision": spec.precision.name,
        "io": spec.io,
        "per_channel": not spec.per_tensor if spec.precision.calibrated else None,
        "qat": spec.qat,
        "float_layers": list(spec.float_layers),
        "calibration_method": spec.calibration_method if spec.precision.calibrated and not spec.qat else None,
        "calibration": calibration,
        "conversion": facts,
        "inputs": report.inputs,
        "outputs": report.outputs,
        "ops": report.ops,
        "tensor_dtypes": report.tensor_dtypes,
        "weight_dtypes": report.weight_dtypes,
        "computes_in": report.precision,
        "warnings": report.warnings,
        "verification": verification if verification is not None else {"status": "skipped (--no-verify)"},
        "verification_data": verify_source,
        "app_metadata": app_metadata,
        **({"pipeline": pipeline} if pipeline else {}),
    })
