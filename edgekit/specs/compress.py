"""CompressSpec: ``edgekit.compress`` / ``edgekit compress`` / a recipe. Stage flags (``prune: 0.5``, ``cluster:
16``, ``qat: true``, ``distill_from: NAME``, ``train_epochs: N``) or an explicit ``stages`` list, training data,
and (with ``quantize``) the export options.

A flag's options (``prune_schedule``, ``cluster_epochs``, ...) mirror the stage spec's parameters: their help,
choices and checks are the stage's (``prune: half`` fails as ``prune: sparsity must be in (0, 1)``).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar

from .._spec import FieldInfo, Spec, option, spec
from ..errors import PipelineError
from . import _choices
from .export import ExportOptions
from .stages import (ClusterSpec, DistillSpec, ExportStageSpec, PruneSpec, QATSpec, StageSpec, TrainStageSpec,
                     check_export_after, check_order, stage_spec)
from .train import FitSpec

#: stage name -> its spec class, in the one valid order of the flag API
FLAG_STAGES: dict[str, type[StageSpec]] = {"train": TrainStageSpec, "distill": DistillSpec, "prune": PruneSpec,
                                           "cluster": ClusterSpec, "qat": QATSpec}


def mirror(stage_spec: type[Spec], param: str, *, enables: bool = False, default: Any = None, **meta: Any) -> Any:
    """A CompressSpec field that sets ``param`` of ``stage_spec`` (default None: the stage's own default).
    ``enables``: the field is the stage's flag (given = the stage runs)."""
    src = stage_spec.field(param).meta
    stage_default = stage_spec.field(param).default
    text = meta.pop("help", None) or src.help
    if not enables and stage_default not in (None, (), False, dataclasses.MISSING):
        text = f"{text.rstrip('.')} (default {_show(stage_default)})."
    return option(default, help=text, choices=src.choices, separator=src.separator,
                  cli=meta.pop("cli", src.cli), stage=stage_spec.label, param=param, enables=enables, **meta)


def _show(v: Any) -> str:
    return ", ".join(map(str, v)) if isinstance(v, tuple) else str(v)


@spec
class CompressSpec(ExportOptions, FitSpec):
    """Compress a model (train, distill, prune, cluster, QAT) on ``data``, then export it when ``quantize`` is
    given. Every field is a keyword of ``edgekit.compress``, an option of ``edgekit compress`` and a recipe key."""

    error: ClassVar[type] = PipelineError

    quantize: str | None = option(None, short="-q", choices=_choices.PRECISIONS,
                                  help="Export the result at this precision (post-training; int8 calibrated on the "
                                       "training data).")
    stages: tuple[Any, ...] | None = option(None, cli=False, help="Explicit stage list: [{prune: {sparsity: 0.5}}, "
                                                                  "{cluster: 16}, ...] instead of the stage flags.")
    train_epochs: int = option(0, ge=0, stage="train", param="epochs", enables=True,
                               help="Train the float baseline first for N epochs.")
    train_lr: float | None = mirror(TrainStageSpec, "lr", help="Learning rate of that training (default 1e-3).")
    distill_from: Any = mirror(DistillSpec, "teacher", enables=True,
                               help="Distil from this teacher: zoo name or trained model file.")
    teacher_epochs: int | None = mirror(DistillSpec, "teacher_epochs", help="Train a zoo teacher first for N epochs "
                                                                           "(required for a zoo teacher without "
                                                                           "weights).")
    teacher_options: dict | None = mirror(DistillSpec, "teacher_options")
    temperature: float | None = mirror(DistillSpec, "temperature")
    distill_alpha: float | None = mirror(DistillSpec, "alpha")
    distill_epochs: int | None = mirror(DistillSpec, "epochs")
    prune: float | None = mirror(PruneSpec, "sparsity", enables=True, help="Prune to this sparsity (e.g. 0.5).")
    prune_schedule: str | None = mirror(PruneSpec, "schedule")
    prune_structure: str | None = mirror(PruneSpec, "structure")
    prune_policy: str | None = mirror(PruneSpec, "policy")
    prune_epochs: int | None = mirror(PruneSpec, "epochs")
    prune_layers: tuple[str, ...] | None = mirror(PruneSpec, "layers")
    prune_skip: tuple[str, ...] | None = mirror(PruneSpec, "skip")
    cluster: int | None = mirror(ClusterSpec, "clusters", enables=True,
                                 help="Cluster weights into N shared values (e.g. 16).")
    cluster_init: str | None = mirror(ClusterSpec, "init")
    cluster_per_channel: bool | None = mirror(ClusterSpec, "per_channel")
    cluster_epochs: int | None = mirror(ClusterSpec, "epochs")
    qat: bool = option(False, stage="qat", enables=True, help="Quantization-aware training (then --quantize int8).")
    qat_epochs: int | None = mirror(QATSpec, "epochs")
    epochs: int | None = option(None, ge=0, help="Fine-tuning epochs of every compression stage (a stage's own "
                                                 "--*-epochs wins).")
    lr: float | None = option(None, gt=0, help="Fine-tuning learning rate of every compression stage.")
    latency: bool = option(False, help="Measure local latency of the artifact (edgekit bench).")
    save_model: str | None = option(None, help="Also save the compressed Keras model to PATH.keras.")

    @classmethod
    def check_field(cls, f: FieldInfo, value: Any) -> Any:
        stage, param = f.meta.extra.get("stage"), f.meta.extra.get("param")
        if stage is None or value is None or f.name in ("train_epochs", "qat"):
            return super().check_field(f, value)
        stage_cls = FLAG_STAGES[stage]
        return stage_cls.check_field(stage_cls.field(param), value)  # the stage's type, choices and bounds

    # -- what runs ------------------------------------------------------------------------------------------------
    def enabled(self, stage: str) -> bool:
        flag = next(f for f in self.field_infos() if f.meta.extra.get("stage") == stage and f.meta.extra["enables"])
        return getattr(self, flag.name) not in (None, False, 0)

    def stage_entries(self) -> list[tuple[str, dict[str, Any]]]:
        """``(stage name, parameters)`` of the compression stages, flags or the ``stages`` list, without export."""
        if self.stages is not None:
            return [entry for entry in self.stages]  # read by edgekit.compression.make_stage
        entries = []
        for stage in FLAG_STAGES:
            if not self.enabled(stage):
                continue
            params: dict[str, Any] = {}
            if stage != "train":
                params.update({k: v for k, v in (("epochs", self.epochs), ("lr", self.lr)) if v is not None})
            for f in self.field_infos():
                if f.meta.extra.get("stage") == stage and getattr(self, f.name) is not None \
                        and f.name != "qat":
                    params[f.meta.extra["param"]] = getattr(self, f.name)
            entries.append((stage, params))
        return entries

    def export_options(self) -> dict[str, Any] | None:
        """The ``export`` stage's parameters (None without ``quantize``)."""
        if self.quantize is None:
            return None
        return {**{k: getattr(self, k) for k in ExportOptions.keys()}, "latency": self.latency}

    def check_stages(self) -> None:
        """The stages of this spec, checked as plain data before anything trains: each stage's parameters, the
        export at the end when ``quantize`` is given, the stage order, and qat followed by an int8 export."""
        chain = [stage_spec(entry) for entry in self.stage_entries()]
        export = self.export_options()
        if export is not None:
            if any(name == "export" for name, _ in chain):
                raise PipelineError("the stages list already ends in export; drop quantize (or the export stage)")
            chain.append(("export", ExportStageSpec.build(None, **export)))
        names = [name for name, _ in chain]
        check_order(names)
        if names and names[-1] == "export":
            check_export_after(names[:-1], chain[-1][1].quantize)

    # -- rules ------------------------------------------------------------------------------------------------------
    def validate(self) -> None:
        flags = [s for s in FLAG_STAGES if self.enabled(s)]
        if self.stages is not None and flags:
            raise self.fail("give either stages or the stage flags (train_epochs, prune, cluster, qat, "
                            f"distill_from), not both ({', '.join(flags)} given)",
                            hint="put the training into the stages list as {train: N}")
        self._check_orphans()
        if self.quantize is None and self.qat:
            raise self.fail("qat needs an int8 export to mean anything", hint="add quantize='int8' (--quantize int8)")
        if not flags and self.stages is None and self.quantize is None:
            raise self.fail("nothing to do: no stage and no export",
                            hint="give --prune/--cluster/--qat/--distill-from/--train-epochs or --quantize")
        if self.save_model is not None and Path(self.save_model).suffix not in (".keras", ".h5"):
            raise self.fail(f"save_model {self.save_model!r} must end in .keras or .h5")
        self.check_stages()  # stage parameters, stage order, qat then a non-int8 export: before any training
        if self.quantize is not None:
            self.check_export()  # the formats' own rules (this model is quantization-aware when qat is set)

    def _check_orphans(self) -> None:
        """Options given without what they belong to would be silently ignored: refuse them."""
        given = set(self.given())
        stage_opts = {f.name: f.meta.extra["stage"] for f in self.field_infos()
                      if f.meta.extra.get("stage") and not f.meta.extra.get("enables")}
        if self.stages is not None:
            ignored = sorted(n for n in given if n in stage_opts or n in ("epochs", "lr"))
            if ignored:
                raise self.fail(f"{', '.join(ignored)} would be ignored with a stages list",
                                hint="put stage options into the stage's parameters, e.g. {prune: {epochs: 3}}")
            return
        for stage in FLAG_STAGES:
            if self.enabled(stage):
                continue
            flag = next(f.name for f in self.field_infos() if f.meta.extra.get("stage") == stage
                        and f.meta.extra["enables"])
            orphans = [n for n, s in stage_opts.items() if s == stage and n in given]
            if orphans:
                raise self.fail(f"{', '.join(orphans)} given without {flag}: {'they' if len(orphans) > 1 else 'it'} "
                                "would be ignored", hint=f"add {flag} (--{flag.replace('_', '-')}) or drop "
                                                         f"{', '.join(orphans)}")
        if self.quantize is None:
            export_only = [n for n in [*ExportOptions.keys(), "latency"] if n in given and n not in ("quantize", "out")]
            if export_only:
                raise self.fail(f"{', '.join(export_only)} given without quantize: "
                                f"{'they' if len(export_only) > 1 else 'it'} would be ignored",
                                hint=f"add quantize (--quantize int8) or drop {', '.join(export_only)}")
        if not any(self.enabled(s) for s in FLAG_STAGES if s != "train"):
            ignored = [n for n in ("epochs", "lr") if n in given]
            if ignored:
                raise self.fail(f"{', '.join(ignored)} (of every compression stage) given without a compression "
                                "stage: ignored", hint="add --prune/--cluster/--qat/--distill-from, or use "
                                                       "train_epochs/train_lr for the baseline training")
