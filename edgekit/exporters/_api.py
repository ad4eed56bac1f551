"""``export()``: model -> verified artifacts + manifests, all formats of a call sharing one calibration set."""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._io import ensure_writable_dir
from .._jsonable import JsonMixin
from .._layers import wrappers
from .._progress import Progress, no_progress
from ..devices.verify_data import VERIFY_SUFFIX, write as write_verify_data
from .._spec import takes_spec
from ..errors import ExportError, InvalidArgument, ModelLoadError, VerificationError
from . import manifest
from .base import EXPORTERS, ExportSpec
from .calibration import CalibrationInfo, plan
from .inspection import inspect
from .verify import Verification, compare, keras_outputs, run_artifact



@dataclass
class Artifact(JsonMixin):
    """One written file and what was measured about it."""

    format: str
    precision: str
    path: Path
    manifest: Path
    size_bytes: int
    sha256: str
    io: str
    computes_in: str
    runtime: str
    verification: Verification | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass
class ExportResult(JsonMixin):
    """Everything one ``export`` call wrote. ``result["tflite"]`` is the tflite artifact."""

    model: str
    quantize: str
    out_dir: Path
    calibration: CalibrationInfo
    artifacts: list[Artifact]
    model_options: dict[str, Any] = field(default_factory=dict)
    verify_data: str | None = None
    warnings: list[str] = field(default_factory=list)

    def __getitem__(self, fmt: str) -> Artifact:
        key = EXPORTERS.resolve(fmt)
        for a in self.artifacts:
            if a.format == key:
                return a
        raise KeyError(fmt)

    @property
    def paths(self) -> list[Path]:
        return [a.path for a in self.artifacts]


def wrapper_kind(model) -> tuple[bool, dict[str, int]]:
    """(is QAT-annotated, {pruning|clustering: count of wrappers left in the model})."""
    found = wrappers(model)
    return "qat" in found, {k: len(v) for k, v in found.items() if k != "qat"}


def resolve_model(model, options: dict[str, Any]):
    """A zoo name, a model file or a keras.Model -> (keras.Model, manifest info)."""
    from ..models import resolve

    kmodel = resolve(model, **options)
    return kmodel, {"source": "keras.Model object" if kmodel is model else str(model)}


def _preprocess_for(kmodel, preprocess: str | None) -> tuple[str, str]:
    if preprocess is not None:  # checked by ExportSpec
        return preprocess, "given"
    from ..models import preprocess_mode, zoo_entry_for

    if zoo_entry_for(kmodel.name.lower()) is not None:  # zoo models (also loaded from a file) keep their name
        return preprocess_mode(kmodel), "model"
    return "unit", "assumed ([0, 1] pixels; pass preprocess= for this model)"


def _input_shape(kmodel) -> tuple[int, int, int]:
    if len(kmodel.inputs) != 1:
        raise InvalidArgument(f"model {kmodel.name!r} has {len(kmodel.inputs)} inputs; edgekit exports single-input "
                              "image models")
    shape = tuple(kmodel.inputs[0].shape[1:])
    if len(shape) != 3 or any(d is None for d in shape):
        raise InvalidArgument(f"model {kmodel.name!r} has input shape {shape}; export needs a fixed (H, W, C)",
                              hint="rebuild it with a fixed input size (e.g. --resolution)")
    return tuple(int(d) for d in shape)  # type: ignore[return-value]


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "model"


@takes_spec(ExportSpec, positional=("model",))
def export(spec: ExportSpec, *, progress: Progress = no_progress) -> ExportResult:
    """Export ``model`` (zoo name, model file or keras.Model) to every format in ``formats`` at ``quantize``.
    Arguments: :class:`edgekit.specs.ExportSpec` (also a ready ``spec=``).

    All formats share one calibration set (``calib_data``: anything :func:`edgekit.data.load` accepts). Each
    artifact is verified against Keras on held-out samples; a failure raises :class:`VerificationError` unless
    ``verify=False`` (then the failure is recorded and the artifact kept). Files appear atomically: on any error
    no artifact or manifest of this call is left behind. int8 only: ``float_layers`` (Keras layer names, e.g. from
    ``edgekit doctor``) keeps those layers' ops in float; ``calibration_method`` minmax (default), or onnxruntime's
    entropy / percentile for the onnx format.
    """
    model, prec, fmts, model_options = spec.model, spec.precision, list(spec.formats), spec.model_options()
    calib_data, calib_samples, verify_data, verify_samples = (spec.calib_data, spec.calib_samples, spec.verify_data,
                                                              spec.verify_samples)
    io, out, verify, threads, seed = spec.io, spec.out, spec.verify, spec.threads, spec.seed
    ensure_writable_dir(out, create=False)  # fail early; create it only once there is something to write

    progress("loading model", 0, None)
    kmodel, model_info = resolve_model(model, model_options)
    qat, left = wrapper_kind(kmodel)
    if left:
        raise InvalidArgument(f"model {kmodel.name!r} still holds {', '.join(f'{v} {k}' for k, v in left.items())} "
                              "wrapper(s): strip it first (edgekit strips stages for you in Pipeline)",
                              hint="tfmot.sparsity.keras.strip_pruning / tfmot.clustering.keras.strip_clustering")
    spec = spec.with_derived(qat=qat)  # the formats' rules again, now that we know the model is QAT
    shape = _input_shape(kmodel)
    mode, mode_origin = _preprocess_for(kmodel, spec.preprocess)
    name = _safe_name(kmodel.name)
    model_info = {"name": kmodel.name, **model_info, "options": model_options, "input_shape": list(shape),
                  "preprocess": mode, "preprocess_origin": mode_origin, "params": int(kmodel.count_params()),
                  "qat": qat}
    progress("loading model", 1, 1)

    samples = plan(input_shape=shape, preprocess=mode, calibrated=prec.calibrated, qat=qat, calib_data=calib_data,
                   calib_samples=calib_samples, verify_data=verify_data, verify_samples=verify_samples, seed=seed)
    calib_x = samples.calib.x if samples.calib is not None else None
    ref = keras_outputs(kmodel, samples.verify.x)
    warnings = list(samples.info.warnings)

    out_dir = ensure_writable_dir(out)
    staging = Path(tempfile.mkdtemp(prefix=".edgekit-export-", dir=out_dir))
    staged: list[tuple[Path, Path, Artifact, dict]] = []
    try:
        for f in fmts:
            exporter = EXPORTERS.get(f)
            filename = exporter.filename(name, spec)
            tmp = staging / filename
            facts = exporter.convert(kmodel, spec, calib_x, tmp, progress)
            from ..runtimes import load

            try:  # the converter's output is not the caller's file: a load failure is a conversion failure
                report = inspect(tmp)
                session = load(tmp, threads=threads, runtime=exporter.runtime)
            except ModelLoadError as exc:
                raise ExportError(f"the converted {filename} does not load in {exporter.runtime}: {exc.message}",
                                  hint="untrained (random) weights can give degenerate quantization ranges: try a "
                                       "trained model or another --quantize; --debug shows the details") from exc
            outs = run_artifact(session, samples.verify.x, progress)
            lsb = report.outputs[0].scale if prec.calibrated or qat else None
            v = compare(ref, outs, precision=prec.label, labels=samples.verify.y,
                        num_classes=samples.verify.num_classes, output_lsb=lsb,
                        runtime=f"{session.name} {session.version}", source=samples.verify_source,
                        note=samples.verify_note)
            if not v.passed and verify:
                raise VerificationError(f"{filename} does not match the Keras model: {'; '.join(v.failures)}",
                                        hint="check the calibration data (--calib-data real samples); "
                                             "--no-verify keeps the artifact and records the failure")
            art_warnings = list(report.warnings) + ([] if v.passed else [f"verification FAILED: {'; '.join(v.failures)}"])
            man = manifest.build(artifact=tmp, final_name=filename, fmt=f, spec=spec, model_info=model_info,
                                 calibration=samples.info, report=report, facts=facts, verification=v,
                                 verify_source=samples.verify_source)
            art = Artifact(f, prec.label, out_dir / filename, out_dir / (filename + ".json"), man["artifact"]["size_bytes"],
                           man["artifact"]["sha256"], io, report.precision, exporter.runtime, v, art_warnings)
            vfile = filename + VERIFY_SUFFIX  # what `bench --verify` replays on the device
            man["verification_inputs"] = write_verify_data(  # ref paired with the artifact's outputs as compared
                staging / vfile, inputs=[samples.verify.x], reference=ref, host=outs, labels=samples.verify.y,
                input_names=[t.name for t in session.inputs], output_names=[t.name for t in session.outputs],
                host_runtime=f"{session.name} {session.version}", precision=prec.label, output_lsb=lsb)
            (staging / (filename + ".json")).write_text(json.dumps(man, indent=2) + "\n")
            staged.append((tmp, staging / (filename + ".json"), art, man))
            warnings.extend(f"{filename}: {w}" for w in art_warnings)
        for tmp, tmp_man, art, _ in staged:
            os.replace(tmp.with_name(tmp.name + VERIFY_SUFFIX), art.path.with_name(art.path.name + VERIFY_SUFFIX))
            os.replace(tmp, art.path)
            os.replace(tmp_man, art.manifest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ExportResult(kmodel.name, prec.name, out_dir, samples.info, [s[2] for s in staged], model_options,
                        samples.verify_source, warnings)

