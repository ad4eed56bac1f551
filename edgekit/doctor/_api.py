"""``run()`` (``edgekit.doctor.run``): why int8 hurts this model (diagnosis) and, given ``max_drop``, the cheapest fix within it (ladder)."""
from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._chance import check as check_chance, warn_if_at_chance
from .._jsonable import JsonMixin
from .._progress import Progress, no_progress
from .._spec import takes_spec
from ..errors import BudgetNotMet, DataError, InvalidArgument
from .. import exporters
from ..exporters import ExportResult
from ..specs.doctor import DoctorSpec
from ..specs.export import DEFAULT_OPSET, ExportSpec
from ..specs.model import ModelSpec
from .evaluate import check_resolution, load_eval
from .ladder import Config, Rung, Search, rung_from
from .stats import LayerStat, worst_first
from .._io import ensure_writable_dir
from ..data import DATASETS, open_source, same_class_order
from ..exporters._api import _preprocess_for, resolve_model, wrapper_kind
from ..exporters.calibration import DEFAULT_CALIB_SAMPLES, _load, input_specs
from ._onnx import OnnxBackend
from ._tflite import TFLiteBackend
from .ladder_run import run_ladder, write_choice



@dataclass
class DoctorResult(JsonMixin):
    """Diagnosis (float vs plain int8, per-layer error worst first) and, with a budget, the ladder and its choice.

    ``met`` is None without a budget. ``export`` is the ExportResult of the written artifact (the chosen rung, or
    the best one with ``keep_best`` when the budget is not met), ``recipe`` the keys that reproduce it. Accuracies,
    drops and ``max_drop`` are fractions 0..1 like every edgekit result (``--max-drop 1``, given in points, is
    ``max_drop`` 0.01 here).
    """

    model: str
    format: str
    metric: str
    eval_source: str
    eval_samples: int
    calib_source: str
    float_accuracy: float
    int8_accuracy: float
    int8_drop: float
    layers: list[LayerStat]
    rungs: list[Rung]
    max_drop: float | None = None
    samples_needed: int | None = None
    met: bool | None = None
    chosen: str | None = None
    best: str | None = None
    export: Any = None
    recipe: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    #: labelled eval data: the float model's accuracy against the labels' chance accuracy (edgekit._chance)
    chance: dict | None = None
    #: the key set; 2: accuracies, drops and max_drop are fractions 0..1 (were percent and points), a rung's
    #: precision is ``precision`` (was ``quantize``); no schema key: 1
    schema: str = "edgekit.doctor/2"

    @property
    def chosen_rung(self) -> Rung | None:
        return next((r for r in self.rungs if r.name == (self.chosen or self.best)), None)


@takes_spec(DoctorSpec, positional=("model",))
def run(spec: DoctorSpec, *, progress: Progress = no_progress) -> DoctorResult:
    """Diagnose what full-integer int8 does to ``model`` and, with ``max_drop`` (accuracy points), walk the ladder
    (see :mod:`edgekit.doctor.ladder`) to the first rung within it and export that artifact to ``out``.
    Arguments: :class:`edgekit.specs.DoctorSpec` (also a ready ``spec=``).

    ``eval_data``: labelled held-out data (a built-in dataset's test split, an image folder with one sub-folder per
    class, an ``.npz`` with ``x`` and ``y``); without labels the drop is the top-1 disagreement with the float
    model. ``calib_data`` calibrates as in ``edgekit export``. ``train_data`` enables the QAT rung (tflite).
    Nothing is written without a budget, or when the budget is not met (``met=False``) unless ``keep_best``.
    """

    model, max_drop, fmt, io, out = spec.model, spec.max_drop, spec.format, spec.io, spec.out
    calib_data, eval_data, calib_samples, seed = spec.calib_data, spec.eval_data, spec.calib_samples, spec.seed
    if max_drop is not None:
        ensure_writable_dir(out, create=False)

    progress("doctor: loading model and data", 0, None)
    model_options = spec.model_options()
    kmodel, _ = resolve_model(model, model_options)
    qat, left = wrapper_kind(kmodel)
    if qat or left:
        raise InvalidArgument(f"model {kmodel.name!r} is already wrapped for {'QAT' if qat else ', '.join(left)}",
                              hint="give the plain float model (the doctor quantizes it, and fine-tunes with QAT "
                                   "itself when --train-data is given)")
    inputs = input_specs(kmodel)
    if len(inputs) != 1:
        raise InvalidArgument(f"model {kmodel.name!r} has {len(inputs)} inputs; the doctor measures single-input "
                              "classifiers", hint="export it with edgekit export (several inputs are supported there) "
                                                  "and compare float and int8 with its verification")
    mode, _ = _preprocess_for(kmodel, spec.preprocess, inputs)
    if spec.train_data is not None and eval_data is not None:
        _same_classes(spec.train_data, eval_data, inputs, mode)
    ev = load_eval(eval_data, kmodel, inputs=inputs, preprocess=mode, eval_samples=spec.eval_samples, seed=seed + 1)
    need = check_resolution(ev, max_drop, limited=spec.eval_samples is not None) if max_drop is not None else None
    n1 = calib_samples or DEFAULT_CALIB_SAMPLES
    calib_cache: dict[int, Any] = {}

    def calib(n: int):
        if n not in calib_cache:
            try:  # exactly the samples `edgekit export --calib-data X --calib-samples n` (with --verify-data) takes
                calib_cache[n] = _load(calib_data, inputs, mode, "train", n, seed)
            except DataError as exc:
                raise type(exc)(f"--calib-data: {exc.message}", hint=exc.hint) from exc
        return calib_cache[n].x

    calib(n1)
    progress("doctor: loading model and data", 1, 1)
    notes = []
    if not ev.labelled:
        notes.append("eval data has no labels: accuracy is top-1 agreement with the float model and the drop is "
                     "the share of samples where int8 disagrees with it")
    if _same_source(calib_data, eval_data):
        notes.append("the eval data is also the calibration data: the measured drop may be optimistic")
    if len(calib_cache[n1]) < n1:  # a small source: all of it (export takes the same with that count)
        notes.append(f"--calib-data has only {len(calib_cache[n1])} samples (asked for {n1})")
        calib_cache[len(calib_cache[n1])] = calib_cache[n1]
        n1 = len(calib_cache[n1])

    work = Path(tempfile.mkdtemp(prefix="edgekit-doctor-"))
    try:
        backend = _backend(fmt, kmodel, io, work, progress, spec.opset)
        search = Search(backend, ev, calib, threads=spec.threads, latency_runs=spec.latency_runs, workdir=work,
                        progress=progress)
        plain = Config(calib_samples=n1)
        progress("doctor: plain int8", 0, None)
        base = search.measure(plain)
        budget = None if max_drop is None else max_drop / 100.0  # --max-drop is in points; results hold fractions
        rungs = [rung_from("plain int8", base, budget)]
        progress("doctor: diagnosis", 0, None)
        layers = worst_first(backend.diagnose(plain, calib(n1), ev.x[:spec.diagnose_samples]))
        result = DoctorResult(kmodel.name, fmt, ev.metric, ev.source, len(ev), str(calib_data),
                              round(ev.float_accuracy, 6), round(base.accuracy, 6), round(base.drop, 6), layers,
                              rungs, budget, need, notes=notes)
        if ev.labelled:
            vs_chance = check_chance(ev.float_accuracy, ev.labels)
            result.chance = vs_chance.to_dict()
            warn_if_at_chance(vs_chance, f"the float accuracy of {kmodel.name} on the eval data",
                              advice="int8 has nothing to preserve; train the model first (edgekit train: more "
                                     "--epochs or samples, a higher --lr)")
        if max_drop is None:
            return result

        measured = run_ladder(result, search, backend, kmodel, calib, n1, diagnose_samples=spec.diagnose_samples,
                              train_data=spec.train_data, qat_epochs=spec.qat_epochs, io=io, seed=seed,
                              preprocess=mode, progress=progress)
        if result.met or (spec.keep_best and result.best is not None):
            write_choice(result, measured, kmodel, search=search, model=model, model_options=model_options,
                         calib_data=calib_data, eval_data=eval_data, train_data=spec.train_data, io=io, out=out,
                         preprocess=spec.preprocess, threads=spec.threads, seed=seed, opset=spec.opset,
                         progress=progress)
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _backend(fmt: str, kmodel, io: str, work: Path, progress, opset: int | None):
    if fmt == "onnx":
        return OnnxBackend(kmodel, io=io, workdir=work, progress=progress, opset=opset or DEFAULT_OPSET)

    return TFLiteBackend(kmodel, io=io, workdir=work, progress=progress)


def _same_source(a, b) -> bool:
    if not isinstance(a, (str, Path)) or not isinstance(b, (str, Path)):
        return a is b

    if str(a) in DATASETS and str(b) in DATASETS:
        return False  # train vs test split
    try:
        return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()
    except OSError:
        return False




def export_within(spec, *, progress: Progress = no_progress):
    """``export(..., max_drop=...)``: the ladder for the export's one format; its choice is the ExportResult (with
    ``doctor`` set), or :class:`BudgetNotMet` carrying the DoctorResult."""
    keys = {k: getattr(spec, k) for k in ModelSpec.keys()}
    keys.update({k: getattr(spec, k) for k in ("calib_data", "calib_samples", "max_drop", "eval_data", "eval_samples",
                                               "train_data", "keep_best", "io", "out", "preprocess", "threads",
                                               "opset", "seed")})
    result = run(spec=DoctorSpec.from_dict({**keys, "format": spec.formats[0]}), progress=progress)
    if not result.met:
        best = result.chosen_rung
        raise BudgetNotMet(f"no rung of the int8 ladder is within --max-drop {100 * result.max_drop:g} points (best: "
                           f"{result.best or '-'}" + (f", drop {100 * best.drop:.2f}" if best and best.drop is not None
                                                      else "") + ")",
                           hint="raise --max-drop, give --train-data for QAT, or --keep-best to write the best found",
                           result=result)
    result.export.doctor = result
    return result.export


@takes_spec(ExportSpec, positional=("model",))
def export(spec: ExportSpec, *, progress: Progress = no_progress, provenance: dict | None = None) -> ExportResult:
    """``edgekit.export``: :func:`edgekit.exporters.export`, or with ``max_drop`` the int8 doctor's ladder
    (:func:`export_within`), which exports the first rung within that budget. Arguments:
    :class:`edgekit.specs.ExportSpec`."""
    if spec.ladder:
        return export_within(spec, progress=progress)
    return exporters.export(spec=spec, progress=progress, provenance=provenance)


def _same_classes(train_data, eval_data, inputs, mode: str) -> None:
    """The QAT rung trains on --train-data and scores on --eval-data: label k must name the same class in both."""

    if len(inputs) != 1 or not inputs[0].image:
        return
    opened = []
    for what, source, split in (("--train-data", train_data, "train"), ("--eval-data", eval_data, "test")):
        try:
            opened.append(open_source(source, input_shape=inputs[0].shape, preprocess_mode=mode, split=split))
        except DataError as exc:
            raise type(exc)(f"{what}: {exc.message}", hint=exc.hint) from exc
    same_class_order(*opened)
