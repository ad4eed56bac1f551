"""``export()``: model -> verified artifacts + manifests, all formats of a call sharing one calibration set."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._io import created_dir, ensure_writable_dir
from .._jsonable import JsonMixin
from .._layers import wrappers
from .._progress import Progress, no_progress
from .._spec import takes_spec
from .._verify_data import VERIFY_SUFFIX, write as write_verify_data
from ..errors import ExportError, InvalidArgument, ModelLoadError, VerificationError
from . import app_metadata, manifest
from ._staging import Staging, check_destinations
from .base import EXPORTERS, ExportSpec
from .calibration import CalibrationInfo, input_specs, plan
from .inspection import inspect
from ..verification import FAILED, Verification, verify_outputs
from .verify import classifier_outputs, feed_order, keras_outputs, paired_reference, run_artifact
from ..models import preprocess_mode, resolve, zoo_entry_for
from ..profiling import profile



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
    precision: str  # the precision's name (float32, float16, dynamic, int8, int16x8), as every result says it
    out_dir: Path
    calibration: CalibrationInfo
    artifacts: list[Artifact]
    model_options: dict[str, Any] = field(default_factory=dict)
    verify_data: str | None = None
    warnings: list[str] = field(default_factory=list)
    #: the int8 doctor's DoctorResult when ``max_drop`` chose the artifact
    doctor: Any = None

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

    kmodel = resolve(model, **options)
    return kmodel, {"source": "keras.Model object" if kmodel is model else str(model)}


def _preprocess_for(kmodel, preprocess: str | None, inputs) -> tuple[str | None, str]:
    if not any(s.image for s in inputs):
        if preprocess is not None:
            raise InvalidArgument(f"preprocess applies to image inputs; the inputs of {kmodel.name!r} are not images "
                                  f"({', '.join(f'{s.name} {s.shape}' for s in inputs)})",
                                  hint="drop --preprocess: non-image inputs take model-ready arrays (.npy/.npz)")
        return None, "no image inputs (data is taken as given)"
    if preprocess is not None:  # checked by ExportSpec
        return preprocess, "given"

    if zoo_entry_for(kmodel.name.lower()) is not None:  # zoo models (also loaded from a file) keep their name
        return preprocess_mode(kmodel), "model"
    return "unit", "assumed ([0, 1] pixels; pass preprocess= for this model)"


def _failure_hint(prec, qat: bool) -> str:
    keep = "--no-verify keeps the artifact and records the failure"
    if qat:
        return f"the QAT ranges learned in training do not fit the verification samples; check --verify-data; {keep}"
    if prec.calibrated:
        return f"check the calibration data (--calib-data real samples like the deployment's); {keep}"
    return (f"{prec.name} uses no calibration data: the converter's result differs from Keras beyond the "
            f"{prec.name} thresholds (per-output numbers are in the result); try another precision or format; {keep}")


def _mult_adds(kmodel) -> dict:
    """Per-layer mult-adds for the manifest (what bench --profile-ops joins per-op times with, from any directory)."""

    try:
        rep = profile(kmodel)
    except Exception as exc:  # noqa: BLE001 - a fact for later joins; the export itself does not depend on it
        return {"layer_mult_adds": None, "layer_mult_adds_error": f"{type(exc).__name__}: {exc}"}
    return {"mult_adds": int(rep.total_mult_adds),
            "layer_mult_adds": {layer.name: int(layer.mult_adds) for layer in rep.layers}}


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "model"


@takes_spec(ExportSpec, positional=("model",))
def export(spec: ExportSpec, *, progress: Progress = no_progress, provenance: dict | None = None) -> ExportResult:
    """Export ``model`` (zoo name, model file or keras.Model) to every format in ``formats`` at ``quantize``.
    Arguments: :class:`edgekit.specs.ExportSpec` (also a ready ``spec=``).

    All formats share one calibration set (``calib_data``: anything :func:`edgekit.data.load` accepts). Each
    artifact is verified against Keras on held-out samples; a failure raises :class:`VerificationError` unless
    ``verify=False`` (then the failure is recorded and the artifact kept). Files appear atomically: on any error
    no artifact or manifest of this call is left behind. int8 only: ``float_layers`` (Keras layer names, e.g. from
    ``edgekit doctor``) keeps those layers' ops in float; ``calibration_method`` minmax (default), or onnxruntime's
    entropy / percentile for the onnx format. ``provenance`` (from compress and recipes): what the model object
    was built from (``source``, ``options``) and the run that made it (``recipe``, ``stages``, ...), for the manifest.

    ``max_drop`` (accuracy points, measured on ``eval_data``) runs the int8 doctor's ladder instead: that is
    :func:`edgekit.export` (:func:`edgekit.doctor.export`), which composes the two; this function refuses it.
    """
    if spec.ladder:
        raise InvalidArgument("max_drop runs the int8 doctor's ladder, which edgekit.exporters.export does not run",
                              hint="call edgekit.export(...) (edgekit.doctor.export), which exports within the budget")
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
    inputs = input_specs(kmodel)
    mode, mode_origin = _preprocess_for(kmodel, spec.preprocess, inputs)
    name = _safe_name(kmodel.name)
    files = {f: EXPORTERS.get(f).filename(name, spec) for f in fmts}
    check_destinations(Path(out) / (n + x) for n in files.values() for x in ("", ".json", VERIFY_SUFFIX))
    provenance = dict(provenance or {})
    model_info.update({k: provenance.pop(k) for k in ("source", "options") if k in provenance})
    model_info = {"name": kmodel.name, "options": model_options, **model_info,
                  "inputs": [{"name": s.name, "shape": list(s.shape), "dtype": s.dtype, "image": s.image}
                             for s in inputs],
                  "preprocess": mode, "preprocess_origin": mode_origin, "params": int(kmodel.count_params()),
                  "qat": qat}
    if len(inputs) == 1:
        model_info["input_shape"] = list(inputs[0].shape)
    model_info.update(_mult_adds(kmodel))
    progress("loading model", 1, 1)

    samples = plan(inputs=inputs, preprocess=mode or "unit", calibrated=prec.calibrated, qat=qat,
                   calib_data=calib_data, calib_samples=calib_samples, verify_data=verify_data,
                   verify_samples=verify_samples, seed=seed, strict=spec.strict_data)
    calib_xs = samples.calib.xs if samples.calib is not None else None
    ref = keras_outputs(kmodel, samples.verify.xs)
    ref_names = [str(n) for n in getattr(kmodel, "output_names", None) or [t.name for t in kmodel.outputs]]
    classifier = classifier_outputs(kmodel)
    in_names = [s.name for s in inputs]
    warnings = list(samples.info.warnings)
    named = samples.verify if samples.verify.class_names else samples.calib
    md_plan = app_metadata.plan(spec, kmodel, inputs, mode, classifier, named.class_names if named else None,
                                named.source if named else None)
    warnings.extend(md_plan.warnings if md_plan else [])

    staged: list[Artifact] = []
    with created_dir(out) as out_dir, Staging(out_dir) as st:  # a failure leaves neither files nor a new folder
        for f in fmts:
            exporter = EXPORTERS.get(f)
            filename = files[f]
            tmp = st.dir / filename
            facts = exporter.convert(kmodel, spec, calib_xs, tmp, progress)
            md_record, md_warnings = app_metadata.write(f, tmp, md_plan)  # before verification: it runs the final bytes
            from ..runtimes import load

            try:  # the converter's output is not the caller's file: a load failure is a conversion failure
                report = inspect(tmp)
                session = load(tmp, threads=threads, runtime=exporter.runtime)
            except ModelLoadError as exc:
                raise ExportError(f"the converted {filename} does not load in {exporter.runtime}: {exc.message}",
                                  hint="untrained (random) weights can give degenerate quantization ranges: try a "
                                       "trained model or another --quantize; --debug shows the details") from exc
            outs = run_artifact(session, samples.verify.xs, progress, input_names=in_names)
            scale = {o.name: o.scale for o in report.outputs}
            lsbs = [scale.get(o.name) if prec.calibrated or qat else None for o in session.outputs]
            v = verify_outputs(ref, outs, precision=prec.name, labels=samples.verify.y,
                        num_classes=samples.verify.num_classes, output_lsb=lsbs,
                        runtime=f"{session.name} {session.version}", source=samples.verify_source,
                        note=samples.verify_note, ref_names=ref_names, art_keys=[o.key for o in session.outputs],
                        art_names=[o.name for o in session.outputs], classifier=classifier)
            if v.status == FAILED and verify:
                raise VerificationError(f"{filename} does not match the Keras model: {'; '.join(v.failures)}",
                                        hint=_failure_hint(prec, qat))
            art_warnings = list(report.warnings) + md_warnings + ([f"verification FAILED: {'; '.join(v.failures)}"]
                                                    if v.status == FAILED else [])
            man = manifest.build(artifact=tmp, final_name=filename, fmt=f, spec=spec, model_info=model_info,
                                 calibration=samples.info, report=report, facts=facts, verification=v,
                                 verify_source=samples.verify_source, pipeline=provenance or None,
                                 app_metadata=md_record)
            art = Artifact(f, prec.name, out_dir / filename, out_dir / (filename + ".json"), man["artifact"]["size_bytes"],
                           man["artifact"]["sha256"], io, report.precision, exporter.runtime, v, art_warnings)
            vfile = filename + VERIFY_SUFFIX  # what `bench --verify` replays on the device
            man["verification_inputs"] = write_verify_data(  # inputs and Keras reference in the artifact's order
                st.dir / vfile, inputs=feed_order(session, samples.verify.xs, in_names),
                reference=paired_reference(v, ref, ref_names, session.outputs), host=outs, labels=samples.verify.y,
                input_names=[t.name for t in session.inputs], output_names=[t.name for t in session.outputs],
                output_keys=[o.key for o in session.outputs],
                host_runtime=f"{session.name} {session.version}", precision=prec.name,
                output_lsb=lsbs[0] if len(lsbs) == 1 else lsbs, num_classes=samples.verify.num_classes,
                classifier=_artifact_order_flags(v, session.outputs))
            (st.dir / (filename + ".json")).write_text(json.dumps(man, indent=2) + "\n")
            staged.append(art)
            warnings.extend(f"{filename}: {w}" for w in art_warnings)
        st.commit([(st.dir / (a.path.name + x), out_dir / (a.path.name + x))
                   for a in staged for x in ("", ".json", VERIFY_SUFFIX)])
    return ExportResult(kmodel.name, prec.name, out_dir, samples.info, staged, model_options,
                        samples.verify_source, warnings)


def _artifact_order_flags(v: Verification, outputs) -> list[bool] | None:
    """Per artifact output: did verification judge it a classifier (None when it could not pair the outputs)."""
    by_art = {c.artifact_name: c.classifier for c in v.outputs}
    if any(o.name not in by_art for o in outputs):
        return None
    return [by_art[o.name] for o in outputs]
