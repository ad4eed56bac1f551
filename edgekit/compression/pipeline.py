"""``Pipeline([stages]).run(model, data, config)``: validated before any training, stages run wrap -> fit -> strip,
then (optionally) the export stage hands the plain model to ``edgekit.exporters.export`` and the report measures the
artifact. The flag-style ``compress(...)`` lives in :mod:`edgekit.compression.api`.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from .._chance import ChanceCheck, check as check_chance, warn_if_at_chance
from .._io import ensure_writable_dir, write_text_atomic
from .._jsonable import JsonMixin, model_name
from .._progress import Progress, no_progress
from ..data import PREPROCESS_MODES
from ..errors import EdgekitWarning
from ..specs.train import FitSpec
from . import report as rep
from .artifacts import ArtifactStats, artifact_stats, local_latency
from .weights import count_params, keras_kernels, keras_weight_stats
from .export_stage import Export
from .ordering import assert_plain, validate_chain
from .stages import Context, Stage, StageReport, make_stage
from .distribute import setup
from .train import (backup_root, clean_backup, evaluate, evaluate_vs_chance, resolve_model, seed_everything,
                    set_bn_momentum, sources_report, split_data, warn_skipped)

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
    artifacts: list[ArtifactStats] = field(default_factory=list)
    export: Any = None  # the ExportResult of the export stage
    seconds: float = 0.0
    #: how the stages trained: augment, strategy (name, replicas, workers, chief), batch size, data sources,
    #: unreadable images skipped
    training: dict = field(default_factory=dict)
    report_json: str | None = None
    plot_png: str | None = None
    #: the key set; 2: each artifact's local latency is p50_ms (was latency_ms_p50); no schema key: 1
    schema: str = "edgekit.compress/2"

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


@dataclass
class PipelineResult(JsonMixin):
    """What :meth:`Pipeline.run` made: the final keras.Model (plain: wrappers stripped) and its report. In JSON the
    model is its name."""

    model: Any = field(metadata={"json": model_name})
    report: PipelineReport

    @property
    def export(self):
        """The export stage's ExportResult (None without one)."""
        return self.report.export


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

    def run(self, model: Any, data: Any, config: FitSpec | Mapping[str, Any] | None = None, *,
            progress: Progress = no_progress, callbacks: Sequence = (), report_dir: str | None = None,
            before_export: Callable[[Any], None] | None = None, provenance: dict | None = None) -> PipelineResult:
        """Run the stages on ``model`` (keras.Model, zoo name or file) with ``data``; returns a
        :class:`PipelineResult` (the final model and the :class:`PipelineReport`). With an export stage the report
        is saved beside the artifact.

        ``config``: how to train, a :class:`~edgekit.specs.FitSpec` (or a mapping of its keys; a ``CompressSpec``
        or ``TrainSpec`` is one): split (``val_fraction``, ``val_data``, ``eval_data``, ``limit``, ``test_limit``,
        ``seed``), ``batch_size``, ``bn_momentum``, ``preprocess`` and the zoo options a named model is built with.
        Its own ``model`` and ``data`` are not used: the arguments are. Default: FitSpec's defaults.

        A keras.Model passed in is trained in place (tfmot's wrappers share its layers): keep a copy if you need
        the original. ``report_dir`` saves the report (JSON + PNG) when there is no export stage.
        ``before_export(model)`` is called with the final model before the export stage (e.g. to save it, so a
        failed verification does not lose the training). ``provenance`` goes to the artifact's manifest.

        Training streams ``data`` through tf.data (``augment``, ``strict_data``, ``image_key``/``label_key`` for
        TFRecords, ``shuffle_buffer``) under ``strategy`` (:mod:`edgekit.compression.distribute`); with
        ``backup_dir`` a killed run resumes from its last completed epoch. Under multi-worker only the chief
        measures, exports and writes the report (the other workers return a report without measurements).
        """
        cfg = config if isinstance(config, FitSpec) else FitSpec.build(config, model=model, data=data)
        seed, batch_size, bn_momentum, augment = cfg.seed, cfg.batch_size, cfg.bn_momentum, cfg.augment
        model_options = cfg.model_options()
        t0 = time.perf_counter()
        dist = setup(cfg.strategy)  # first: multi-worker must start before TensorFlow runs anything
        seed_everything(seed)
        model = resolve_model(model, **model_options)
        if model_options.get("trust_model_code"):  # it also covers the files stages load (a teacher)
            for stage in self.stages:
                if "trust_model_code" in type(stage.spec).keys() and not stage.trust_model_code:
                    stage.spec = stage.spec.replace(trust_model_code=True)
        self.validate(model)  # before any data loading or training
        full, ds_train, ds_val, ds_test = split_data(data, model, val_fraction=cfg.val_fraction,
                                                     val_data=cfg.val_data, eval_data=cfg.eval_data, limit=cfg.limit,
                                                     test_limit=cfg.test_limit, seed=seed, preprocess=cfg.preprocess,
                                                     strict=cfg.strict_data, image_key=cfg.image_key,
                                                     label_key=cfg.label_key)
        export_stage = self.stages[-1] if self.stages and isinstance(self.stages[-1], Export) else None
        if export_stage is not None:  # checked, not created: a failed run leaves no empty folder
            ensure_writable_dir(export_stage.out, create=False)
        if report_dir is not None:
            ensure_writable_dir(report_dir, create=False)
        dist.check_batch(batch_size)
        set_bn_momentum(model, bn_momentum)
        preprocess = full.preprocess if full.preprocess in PREPROCESS_MODES else cfg.preprocess
        ctx = Context(source=data if isinstance(data, str) else None, train=ds_train, val=ds_val, test=ds_test,
                      batch_size=batch_size, seed=seed, bn_momentum=bn_momentum, preprocess=preprocess,
                      progress=progress, callbacks=list(callbacks), provenance=dict(provenance or {}), dist=dist,
                      augment=bool(augment), strict_data=bool(cfg.strict_data), shuffle_buffer=cfg.shuffle_buffer,
                      backup_root=backup_root(cfg.backup_dir))
        report = PipelineReport(model=model.name, data=full.source, seed=seed, train_samples=len(ds_train),
                                val_samples=len(ds_val or ()), test_samples=len(ds_test or ()),
                                input=self._measure(StageReport(stage="input", params={}), model, ctx))
        for stage in self.stages:
            if stage is export_stage:
                break
            model, srep = stage.run(model, ctx)
            ctx.done.append(stage.name)
            if not stage.keeps_wrappers:
                assert_plain(model, stage.name)
            report.stages.append(self._measure(srep, model, ctx))
        report.training = {"augment": bool(augment), **dist.info.to_dict(), "batch_size": batch_size,
                           "sources": sources_report(train=ds_train, val=ds_val, test=ds_test),
                           "skipped_images": warn_skipped(ds_train, ds_val, ds_test)}
        ctx.provenance.setdefault("training", {k: v for k, v in report.training.items() if k != "sources"})
        if not dist.chief:  # the chief alone writes: model, artifacts, report
            clean_backup(ctx.backup_root, ctx.backups, dist.chief)
            report.seconds = round(time.perf_counter() - t0, 2)
            return PipelineResult(model, report)
        final = report.stages[-1] if report.stages else report.input
        if final.chance:
            warn_if_at_chance(ChanceCheck(**final.chance), f"the {'test' if ds_test is not None else 'validation'} "
                              f"accuracy of {model.name} after {final.stage}", undecidable=False)
        if before_export is not None:
            before_export(model)
        if export_stage is not None:
            result = export_stage.export(model, ctx)
            report.export = result
            shapes = _kernel_shapes(model)
            pruned = {n: shape for n, shape in shapes.items() if n in set(ctx.pruned_layers)}
            clustered = {n: shape for n, shape in shapes.items() if n in set(ctx.clustered_layers)}
            for path, precision in [(str(a.path), a.precision) for a in result.artifacts if a.format == "tflite"]:
                art = artifact_stats(path, pruned_shapes=pruned, clustered_shapes=clustered, test=ds_test or ds_val,
                                         precision=precision)
                final = (report.stages[-1] if report.stages else report.input).chance
                if art.test_accuracy is not None and final:  # the same labels as the stages' measurement
                    art.chance = check_chance(art.test_accuracy, samples=art.test_samples,
                                              chance=final["chance"]).to_dict()
                if export_stage.latency:
                    art.p50_ms, art.latency_note = local_latency(path)
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
        clean_backup(ctx.backup_root, ctx.backups, dist.chief)
        return PipelineResult(model, report)

    @staticmethod
    def _measure(srep: StageReport, model, ctx: Context) -> StageReport:
        if not ctx.dist.chief:  # measurements are for the report, which only the chief writes
            return srep
        srep.val_accuracy = evaluate(model, ctx.val)
        vs_chance = evaluate_vs_chance(model, ctx.test if ctx.test is not None else ctx.val)
        srep.test_accuracy = vs_chance.accuracy if vs_chance and ctx.test is not None else None
        srep.chance = vs_chance.to_dict() if vs_chance else None
        srep.param_count, srep.nonzero = count_params(model)
        srep.weights = keras_weight_stats(model, ctx.pruned_layers, clustered_layers=ctx.clustered_layers)
        return srep


def _kernel_shapes(model) -> dict[str, tuple[int, ...]]:
    return {name: tuple(k.shape) for name, k, _ in keras_kernels(model)}
