"""``Pipeline([stages]).run(model, data)``: validated before any training, stages run wrap -> fit -> strip, then
(optionally) the export stage hands the plain model to ``edgekit.exporters.export`` and the report measures the
artifact. ``compress(...)`` is the flag-style API the ``edgekit compress`` command maps 1:1.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from .._io import ensure_writable_dir, write_text_atomic
from .._jsonable import JsonMixin, to_jsonable
from .._progress import Progress, no_progress
from ..errors import EdgekitWarning, InvalidArgument, PipelineError
from . import report as rep
from .stages import STAGES, Context, Stage, StageReport, make_stage
from ..data import PREPROCESS_MODES
from .train import DEFAULT_BN_MOMENTUM

QUANTIZE = ("none", "fp16", "dynamic", "int8", "int16x8")


@STAGES.register("export")
class Export(Stage):
    """The usual last stage: ``edgekit.exporters.export`` of the final plain model (post-training quantization
    calibrated on the pipeline's training data), then the artifact is measured for the report."""

    name = "export"
    primary = "quantize"

    def __init__(self, quantize: str = "int8", *, formats: Sequence[str] | str = ("tflite",),
                 calib_samples: int = 500, io: str = "float", per_tensor: bool = False, out: str = "artifacts",
                 verify: bool = True, latency: bool = False, calib_data: str | None = None,
                 verify_data: str | None = None, verify_samples: int | None = None, opset: int | None = None,
                 threads: int | None = None):
        super().__init__(epochs=0)
        if quantize not in QUANTIZE:
            raise PipelineError(f"export: unknown quantize {quantize!r}", hint=f"use one of {', '.join(QUANTIZE)}")
        if isinstance(formats, str):
            formats = [f.strip() for f in formats.split(",") if f.strip()]
        if not isinstance(calib_samples, int) or calib_samples <= 0:
            raise PipelineError(f"export: calib_samples must be a positive integer; received {calib_samples!r}")
        self.quantize, self.formats, self.calib_samples = quantize, list(formats), calib_samples
        self.io, self.per_tensor, self.out, self.verify, self.latency = io, bool(per_tensor), str(out), verify, latency
        self.calib_data, self.verify_data, self.verify_samples = calib_data, verify_data, verify_samples
        self.opset, self.threads = opset, threads

    def config(self) -> dict:
        return {k: getattr(self, k) for k in ("quantize", "formats", "calib_samples", "io", "per_tensor", "out",
                                              "verify", "latency", "calib_data", "verify_data", "verify_samples",
                                              "opset", "threads") if getattr(self, k) is not None}

    def check(self, model, previous) -> None:
        if any(s.name == "qat" for s in previous) and self.quantize != "int8":
            raise PipelineError(f"qat then a {self.quantize!r} export throws the quantization-aware training away",
                                hint="export a QAT model with quantize: int8")

    def export(self, model, ctx: Context):
        """Export with the pipeline's data: a built-in dataset by name (calibration from its train split,
        verification with labels on its test split); other sources as temporary .npz files of the training split
        (calibration) and the held-out split (verification)."""
        import tempfile

        import numpy as np

        from .. import exporters

        calib = ctx.train.take(self.calib_samples, ctx.seed)
        held = ctx.test if ctx.test is not None else ctx.val
        builtin = ctx.source if _is_builtin(ctx.source) else None
        calibrated = self.quantize in ("int8", "int16x8")
        with tempfile.TemporaryDirectory(prefix="edgekit-compress-") as tmp:
            # built-in datasets go by name (the manifest then names the real source); other data as .npz arrays
            calib_src, n_cal = self.calib_data, self.calib_samples
            if calib_src is None and calibrated:
                calib_src, n_cal = builtin, self.calib_samples
                if builtin is None:
                    calib_src, n_cal = str(Path(tmp) / "calibration_from_training_split.npz"), len(calib)
                    np.savez(calib_src, x=calib.x, y=calib.y)
            verify_src, n_ver = self.verify_data, self.verify_samples
            if verify_src is None and held is not None:
                n_ver = n_ver or min(len(held), 500)
                if builtin is not None and ctx.test is not None:
                    verify_src = builtin  # its test split
                else:
                    verify_src = str(Path(tmp) / "verification_from_heldout_split.npz")
                    part = held.take(n_ver, ctx.seed)
                    np.savez(verify_src, x=part.x, y=part.y)
            return exporters.export(model, quantize=self.quantize, formats=tuple(self.formats),
                                    calib_data=calib_src if calibrated else None,
                                    calib_samples=n_cal if calibrated else None, io=self.io,
                                    per_tensor=self.per_tensor, out=self.out, verify=self.verify,
                                    verify_data=verify_src, verify_samples=n_ver, opset=self.opset,
                                    threads=self.threads, preprocess=ctx.preprocess, seed=ctx.seed,
                                    progress=ctx.progress)


def _is_builtin(source) -> bool:
    from ..data import DATASETS

    return isinstance(source, str) and source in DATASETS


#: (earlier, later): why that order is invalid
_ORDER_RULES = {
    ("cluster", "prune"): "prune after cluster breaks the weight sharing (and re-clustering would undo the zeros); "
                          "prune first, then cluster (sparsity-preserving)",
    ("qat", "prune"): "prune after qat would re-wrap a quantization-aware model; prune before qat",
    ("qat", "cluster"): "cluster after qat would re-wrap a quantization-aware model; cluster before qat",
    ("qat", "distill"): "distill after qat re-trains a quantization-aware model; distill first",
    ("qat", "qat"): "qat twice; use one qat stage with more epochs",
    ("qat", "train"): "train after qat: give the qat stage more epochs instead",
}


def validate_chain(stages: Sequence[Stage]) -> None:
    """Static order rules (no model needed). Raise PipelineError naming the problem."""
    names = [s.name for s in stages]
    for i, later in enumerate(names):
        for earlier in names[:i]:
            why = _ORDER_RULES.get((earlier, later))
            if why:
                raise PipelineError(f"invalid pipeline {' -> '.join(names)}: {why}")
    for i, s in enumerate(stages):
        if isinstance(s, Export) and i != len(stages) - 1:
            raise PipelineError(f"invalid pipeline {' -> '.join(names)}: export must be the last stage")
    for i, s in enumerate(stages):
        if isinstance(s, Export) and "qat" in names[:i] and s.quantize != "int8":
            s.check(None, stages[:i])


@dataclass
class PipelineReport(JsonMixin):
    """The Deep Compression view of one pipeline run; ``rows()`` for a table, ``plot(path)`` for the PNG."""

    model: str
    data: str
    seed: int
    train_samples: int
    val_samples: int
    test_samples: int
    input: StageReport
    stages: list[StageReport] = field(default_factory=list)
    artifacts: list[rep.ArtifactStats] = field(default_factory=list)
    export: Any = None  # the ExportResult of the export stage
    seconds: float = 0.0
    report_json: str | None = None
    plot_png: str | None = None

    def rows(self) -> list[list[str]]:
        return rep.rows(self)

    def plot(self, dest) -> Path:
        return rep.plot(self, dest)

    def save(self, stem: str | Path) -> tuple[Path, Path | None]:
        """Write ``STEM.compression.json`` and ``STEM.compression.png`` (atomic); returns their paths."""
        stem = Path(stem)
        png = None
        try:
            png = self.plot(stem.with_name(stem.name + ".compression.png"))
        except ImportError:  # matplotlib is the optional 'plot' extra: say so, keep the JSON
            warnings.warn("no compression plot: matplotlib is not installed (pip install 'edgekit[plot]')",
                          EdgekitWarning, stacklevel=2)
        self.plot_png = str(png) if png else None
        js = stem.with_name(stem.name + ".compression.json")
        self.report_json = str(js)
        write_text_atomic(js, self.to_json())
        return js, png


class Pipeline:
    """An ordered list of compression stages, validated when built (names, keys, order) and again against the
    model before anything trains.

    Stages are Stage objects or specs: ``"qat"``, ``{"prune": {"sparsity": 0.5}}``, ``{"cluster": 16}``,
    ``("distill", {"teacher": "mobilenet_v1", "teacher_epochs": 3})``.
    """

    def __init__(self, stages: Sequence[Any]):
        if isinstance(stages, (str, dict, Stage)):
            stages = [stages]
        self.stages: list[Stage] = [make_stage(s) for s in stages]
        validate_chain(self.stages)

    def __repr__(self) -> str:
        return f"Pipeline({self.stages!r})"

    def validate(self, model) -> None:
        """All checks that need the model (layer selection, XNNPACK policy, teacher), no training."""
        validate_chain(self.stages)
        for i, stage in enumerate(self.stages):
            stage.check(model, self.stages[:i])

    def run(self, model: Any, data: Any, *, val_fraction: float = 0.1, val_data: Any = None,
            limit: int | None = None, test_limit: int | None = None, seed: int = 0, batch_size: int = 64,
            bn_momentum: float | None = DEFAULT_BN_MOMENTUM, preprocess: str | None = None,
            progress: Progress = no_progress, callbacks: Sequence = (), report_dir: str | None = None,
            before_export: Callable[[Any], None] | None = None, **model_options: Any):
        """Run the stages on ``model`` (keras.Model, zoo name or file) with ``data``; returns
        ``(final_model, PipelineReport)``. With an export stage the report is saved beside the artifact.

        A keras.Model passed in is trained in place (tfmot's wrappers share its layers): keep a copy if you need
        the original. ``report_dir`` saves the report (JSON + PNG) when there is no export stage.
        ``before_export(model)`` is called with the final model before the export stage (e.g. to save it, so a
        failed verification does not lose the training).
        """
        from .train import resolve_model, seed_everything, set_bn_momentum, split_data

        t0 = time.perf_counter()
        seed_everything(seed)
        model = resolve_model(model, **model_options)
        for stage in self.stages:  # the pipeline's trust_model_code also covers the files stages load (a teacher)
            if hasattr(stage, "trust_model_code"):
                stage.trust_model_code = stage.trust_model_code or bool(model_options.get("trust_model_code"))
        self.validate(model)  # before any data loading or training
        full, ds_train, ds_val, ds_test = split_data(data, model, val_fraction=val_fraction, val_data=val_data,
                                                     limit=limit, test_limit=test_limit, seed=seed,
                                                     preprocess=preprocess)
        export_stage = self.stages[-1] if self.stages and isinstance(self.stages[-1], Export) else None
        if export_stage is not None:
            ensure_writable_dir(export_stage.out)
        if report_dir is not None:
            ensure_writable_dir(report_dir)
        set_bn_momentum(model, bn_momentum)
        preprocess = full.preprocess if full.preprocess in PREPROCESS_MODES else preprocess
        ctx = Context(source=data if isinstance(data, str) else None, train=ds_train, val=ds_val, test=ds_test,
                      batch_size=batch_size, seed=seed,
                      bn_momentum=bn_momentum, preprocess=preprocess, progress=progress, callbacks=list(callbacks))
        report = PipelineReport(model=model.name, data=full.source, seed=seed, train_samples=len(ds_train),
                                val_samples=len(ds_val or ()), test_samples=len(ds_test or ()),
                                input=self._measure(StageReport(stage="input", params={}), model, ctx))
        for stage in self.stages:
            if stage is export_stage:
                break
            model, srep = stage.run(model, ctx)
            ctx.done.append(stage.name)
            if stage.name != "qat":
                assert_plain(model, stage.name)
            report.stages.append(self._measure(srep, model, ctx))
        if before_export is not None:
            before_export(model)
        if export_stage is not None:
            result = export_stage.export(model, ctx)
            report.export = result
            shapes = _kernel_shapes(model)
            pruned = {n: shape for n, shape in shapes.items() if n in set(ctx.pruned_layers)}
            clustered = {n: shape for n, shape in shapes.items() if n in set(ctx.clustered_layers)}
            for path, precision in _tflite_artifacts(result, export_stage.quantize):
                art = rep.artifact_stats(path, pruned_shapes=pruned, clustered_shapes=clustered, test=ds_test or ds_val,
                                         precision=precision)
                if export_stage.latency:
                    art.latency_ms_p50, art.latency_note = rep.local_latency(path)
                report.artifacts.append(art)
        report.seconds = round(time.perf_counter() - t0, 2)
        stem = None
        if report.artifacts:
            first = Path(report.artifacts[0].path)
            stem = first.with_name(first.stem)
        elif report_dir is not None:
            stem = Path(report_dir) / model.name
        if stem is not None:
            report.save(stem)
        return model, report

    @staticmethod
    def _measure(srep: StageReport, model, ctx: Context) -> StageReport:
        from .train import evaluate

        srep.val_accuracy = evaluate(model, ctx.val)
        srep.test_accuracy = evaluate(model, ctx.test)
        srep.param_count, srep.nonzero = rep.count_params(model)
        srep.weights = rep.keras_weight_stats(model, ctx.pruned_layers,
                                              clustered_layers=ctx.clustered_layers).to_dict()
        return srep


def _kernel_shapes(model) -> dict[str, tuple[int, ...]]:
    return {name: tuple(k.shape) for name, k, _ in rep.keras_kernels(model)}


def _tflite_artifacts(result, quantize: str) -> list[tuple[str, str]]:
    """(path, precision) of every .tflite artifact in an ExportResult (duck-typed: dataclass or dict)."""
    data = result.to_dict() if hasattr(result, "to_dict") else to_jsonable(result)
    found = []

    def walk(obj):
        if isinstance(obj, dict):
            path = obj.get("path")
            if isinstance(path, str) and path.endswith(".tflite"):
                found.append((path, str(obj.get("precision") or obj.get("quantize") or quantize)))
                return
            for v in obj.values():
                walk(v)
        elif isinstance(obj, list):
            for v in obj:
                walk(v)

    walk(data)
    seen, out = set(), []
    for p, q in found:
        if p not in seen:
            seen.add(p)
            out.append((p, q))
    return out


def wrapper_layers(model) -> list[str]:
    """Names of tfmot wrapper layers (prune, cluster, quantize) still in ``model``."""
    found = []
    for layer in model.layers:
        cls = type(layer).__name__
        if cls in ("PruneLowMagnitude", "ClusterWeights", "ClusterWeightsRNN", "ClusterWeightsMHA",
                   "QuantizeWrapper", "QuantizeWrapperV2", "QuantizeLayer"):
            found.append(layer.name)
        elif hasattr(layer, "layers") and not hasattr(layer, "layer"):
            found.extend(wrapper_layers(layer))
    return found


def assert_plain(model, stage: str) -> None:
    left = wrapper_layers(model)
    if left:
        from ..errors import CompressionError

        raise CompressionError(f"{stage}: finalize left tfmot wrappers in the model: {', '.join(left[:5])}")


# -- the flag-style API ---------------------------------------------------------------------------------------------
#: stage flag -> the options that only mean something with it (given without it, they would be silently ignored)
_OPTIONS_OF = {"train_epochs": ("train_lr",),
               "distill_from": ("teacher_epochs", "teacher_options", "temperature", "distill_alpha", "distill_epochs"),
               "prune": ("prune_schedule", "prune_structure", "prune_policy", "prune_epochs", "prune_layers",
                         "prune_skip"),
               "cluster": ("cluster_init", "cluster_per_channel", "cluster_epochs"),
               "qat": ("qat_epochs",),
               "quantize": ("calib_samples", "io", "per_tensor", "latency", "calib_data", "verify_data",
                            "verify_samples", "opset", "threads")}


def _check_orphan_options(values: dict, stages_list: bool = False) -> None:
    """Reject stage options given (not at their default) without their stage flag: nothing is silently ignored."""
    import inspect

    if stages_list:
        given = [o for f, opts in _OPTIONS_OF.items() if f != "quantize" for o in opts
                 if values.get(o) is not None and values[o] != inspect.signature(build_stages).parameters[o].default]
        given += [o for o in ("epochs", "lr") if values.get(o) is not None]
        if given:
            raise PipelineError(f"{', '.join(given)} would be ignored with a stages list",
                                hint="put stage options into the stage's parameters, e.g. {prune: {epochs: 3}}")

    defaults = {k: p.default for k, p in inspect.signature(build_stages).parameters.items()}
    for flag, options in _OPTIONS_OF.items():
        if values.get(flag) not in (None, False, 0):
            continue
        given = [o for o in options if o in values and values[o] is not None and values[o] != defaults[o]]
        if given:
            raise PipelineError(f"{', '.join(given)} given without {flag}: {'they' if len(given) > 1 else 'it'} "
                                f"would be ignored", hint=f"add {flag} (--{flag.replace('_', '-')}) or drop "
                                                          f"{', '.join(given)}")
    if not any(values.get(f) not in (None, False, 0) for f in ("distill_from", "prune", "cluster", "qat")):
        given = [o for o in ("epochs", "lr") if values.get(o) is not None]
        if given:
            raise PipelineError(f"{', '.join(given)} (of every compression stage) given without a compression "
                                f"stage: ignored", hint="add --prune/--cluster/--qat/--distill-from, or use "
                                                        "train_epochs/train_lr for the baseline training")


def build_stages(*, train_epochs: int = 0, train_lr: float | None = None, prune: float | None = None,
                 prune_schedule: str = "polynomial", prune_structure: str | None = None,
                 prune_policy: str | None = None,
                 prune_epochs: int = 2, prune_layers=None, prune_skip=None, cluster: int | None = None,
                 cluster_init: str = "kmeans++", cluster_per_channel: bool = False, cluster_epochs: int = 1,
                 qat: bool = False, qat_epochs: int = 1, distill_from: Any = None, teacher_epochs: int = 0,
                 teacher_options: dict | None = None, temperature: float = 4.0, distill_alpha: float = 0.1,
                 distill_epochs: int = 3, epochs: int | None = None, lr: float | None = None,
                 quantize: str | None = None, formats=("tflite",), calib_samples: int = 500, io: str = "float",
                 per_tensor: bool = False, out: str = "artifacts", verify: bool = True,
                 latency: bool = False, calib_data: str | None = None, verify_data: str | None = None,
                 verify_samples: int | None = None, opset: int | None = None,
                 threads: int | None = None) -> list[Stage]:
    """Flags -> stages, in the one valid order: train, distill, prune, cluster, qat, export.

    ``epochs``/``lr`` (when given) set every compression stage's fine-tuning epochs / learning rate.
    """
    from .cluster import Cluster
    from .distill import Distill
    from .prune import Prune
    from .qat import QAT
    from .stages import Train

    _check_orphan_options(dict(locals()))

    def ep(own):
        return own if epochs is None else epochs

    stages: list[Stage] = []
    if train_epochs:
        stages.append(Train(epochs=train_epochs, lr=train_lr))
    if distill_from is not None:
        stages.append(Distill(distill_from, teacher_epochs=teacher_epochs, teacher_options=teacher_options,
                              temperature=temperature, alpha=distill_alpha, epochs=ep(distill_epochs), lr=lr))
    if prune is not None:
        kw = {} if prune_skip is None else {"skip": prune_skip}
        stages.append(Prune(prune, schedule=prune_schedule, structure=prune_structure, policy=prune_policy,
                            layers=prune_layers, epochs=ep(prune_epochs), lr=lr, **kw))
    if cluster is not None:
        stages.append(Cluster(cluster, init=cluster_init, per_channel=cluster_per_channel, epochs=ep(cluster_epochs),
                              lr=lr))
    if qat:
        stages.append(QAT(epochs=ep(qat_epochs), lr=lr))
    if quantize is not None:
        stages.append(Export(quantize, formats=formats, calib_samples=calib_samples, io=io, per_tensor=per_tensor,
                             out=out, verify=verify, latency=latency, calib_data=calib_data, verify_data=verify_data,
                             verify_samples=verify_samples, opset=opset, threads=threads))
    elif qat:
        raise PipelineError("qat needs an int8 export to mean anything", hint="add quantize='int8' (--quantize int8)")
    return stages


@dataclass
class CompressResult(JsonMixin):
    """What ``compress`` did: the pipeline report (stages, artifacts, export result) and the saved model."""

    model: str
    stages: list[str]
    report: PipelineReport
    model_path: str | None = None

    @property
    def export(self):
        return self.report.export

    @property
    def artifacts(self) -> list[str]:
        return [a.path for a in self.report.artifacts]


def compress(model: Any, *, data: Any, stages: Sequence[Any] | None = None, train_epochs: int = 0,
             train_lr: float | None = None, prune: float | None = None, prune_schedule: str = "polynomial",
             prune_structure: str | None = None, prune_policy: str | None = None, prune_epochs: int = 2,
             prune_layers=None, prune_skip=None, cluster: int | None = None, cluster_init: str = "kmeans++",
             cluster_per_channel: bool = False, cluster_epochs: int = 1, qat: bool = False, qat_epochs: int = 1,
             distill_from: Any = None, teacher_epochs: int = 0, teacher_options: dict | None = None,
             temperature: float = 4.0, distill_alpha: float = 0.1, distill_epochs: int = 3, epochs: int | None = None,
             lr: float | None = None, batch_size: int = 64, limit: int | None = None, test_limit: int | None = None,
             val_fraction: float = 0.1, seed: int = 0, bn_momentum: float | None = DEFAULT_BN_MOMENTUM,
             preprocess: str | None = None, quantize: str | None = None, formats: Sequence[str] | str = ("tflite",),
             calib_samples: int = 500, io: str = "float", per_tensor: bool = False, out: str = "artifacts",
             verify: bool = True, latency: bool = False, calib_data: str | None = None,
             verify_data: str | None = None, verify_samples: int | None = None, opset: int | None = None,
             threads: int | None = None, save_model: str | None = None, progress: Progress = no_progress,
             callbacks: Sequence = (), **model_options: Any) -> CompressResult:
    """Compress ``model`` with flags (``prune=0.5, cluster=16, distill_from="resnet50", qat=True``) or an explicit
    ``stages`` list, then export when ``quantize`` is given. Every argument is also a recipe key and a CLI option.

    ``model`` is a zoo name, a model file or a keras.Model (``model_options`` such as ``alpha``, ``resolution``,
    ``input_channels``, ``classes``, ``weights`` go to ``edgekit.models.create``). ``train_epochs`` trains the float
    baseline first. The report (table rows, JSON, PNG) is saved beside the artifact in ``out``.
    """
    flag_set = any(v not in (None, False, 0) for v in (prune, cluster, qat, distill_from, train_epochs))
    if stages is not None and flag_set:
        raise InvalidArgument("give either stages=[...] or the stage flags (train_epochs, prune, cluster, qat, "
                              "distill_from), not both", hint="put the training into the stages list as {train: N}")
    if stages is not None:
        _check_orphan_options(dict(locals()), stages_list=True)
        built = [make_stage(s) for s in stages]
        if quantize is not None:
            if any(isinstance(s, Export) for s in built):
                raise PipelineError("the stages list already ends in export; drop quantize (or the export stage)")
            built.append(Export(quantize, formats=formats, calib_samples=calib_samples, io=io, per_tensor=per_tensor,
                                out=out, verify=verify, latency=latency, calib_data=calib_data,
                                verify_data=verify_data, verify_samples=verify_samples, opset=opset, threads=threads))
    else:
        built = build_stages(train_epochs=train_epochs, train_lr=train_lr, prune=prune, prune_schedule=prune_schedule,
                             prune_structure=prune_structure, prune_policy=prune_policy, prune_epochs=prune_epochs,
                             prune_layers=prune_layers, prune_skip=prune_skip, cluster=cluster,
                             cluster_init=cluster_init, cluster_per_channel=cluster_per_channel,
                             cluster_epochs=cluster_epochs, qat=qat, qat_epochs=qat_epochs, distill_from=distill_from,
                             teacher_epochs=teacher_epochs, teacher_options=teacher_options, temperature=temperature,
                             distill_alpha=distill_alpha, distill_epochs=distill_epochs, epochs=epochs, lr=lr,
                             quantize=quantize, formats=formats, calib_samples=calib_samples, io=io,
                             per_tensor=per_tensor, out=out, verify=verify, latency=latency, calib_data=calib_data,
                             verify_data=verify_data, verify_samples=verify_samples, opset=opset, threads=threads)
    if not built:
        raise InvalidArgument("nothing to do: no stage and no export",
                              hint="give --prune/--cluster/--qat/--distill-from/--train-epochs or --quantize")
    if save_model is not None:
        from .train import check_model_output

        check_model_output(save_model, "save_model")
    saved = None

    def save(final_model) -> None:
        nonlocal saved
        from .train import save_model_atomic

        saved = str(save_model_atomic(final_model, save_model))

    pipe = Pipeline(built)
    final, report = pipe.run(model, data, val_fraction=val_fraction, limit=limit, test_limit=test_limit, seed=seed,
                             batch_size=batch_size, bn_momentum=bn_momentum, preprocess=preprocess, progress=progress,
                             callbacks=callbacks, report_dir=None if built[-1].name == "export" else out,
                             before_export=save if save_model is not None else None, **model_options)
    return CompressResult(model=report.model, stages=[s.name for s in built], report=report, model_path=saved)
