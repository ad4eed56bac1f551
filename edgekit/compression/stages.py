"""The stage protocol (tfmot's wrap, then strip) and the STAGES registry.

A stage is a small object built from plain parameters (a recipe entry or a CLI flag). ``check`` validates it
against the input model before anything trains, ``apply`` wraps the model, ``fit`` fine-tunes it and
``finalize`` strips the wrappers again so that nothing wrapped reaches an exporter.
"""
from __future__ import annotations

import fnmatch
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar, Sequence

from .._jsonable import JsonMixin
from .._progress import Progress, no_progress
from ..errors import PipelineError, UnknownNameError
from ..registry import Registry
from ..specs.stages import FIRST, LAST, STAGE_SPECS, StageSpec, TrainStageSpec, stage_spec
from .train import EpochLog, set_bn_momentum
from .weights import WeightStats
from .distribute import Distribution, StrategyInfo

class _StageRegistry(Registry):
    """A stage class registered here whose name the stage-spec table lacks adds its spec class there."""

    def add(self, name: str, obj, *, aliases=(), **meta):
        if name not in STAGE_SPECS:
            STAGE_SPECS.add(name, obj.spec_class, aliases=aliases)
        return super().add(name, obj, aliases=aliases, **meta)


#: name -> Stage subclass
STAGES: Registry[type["Stage"]] = _StageRegistry("compression stage")

__all__ = ["STAGES", "Stage", "StageReport", "Context", "make_stage", "stage_class", "select_layers", "Train",
           "FIRST", "LAST"]


@dataclass
class Context:
    """What every stage trains and evaluates with (set up once by :class:`Pipeline.run`)."""

    train: Any
    val: Any = None
    test: Any = None
    batch_size: int = 64
    seed: int = 0
    bn_momentum: float | None = 0.9
    preprocess: str | None = None
    progress: Progress = no_progress
    callbacks: Sequence = ()
    done: list[str] = field(default_factory=list)  # names of the stages that already ran
    pruned_layers: list[str] = field(default_factory=list)
    clustered_layers: list[str] = field(default_factory=list)
    clusters: int | None = None
    source: str | None = None  # the data source as given (a built-in dataset name, a folder, a file)
    provenance: dict = field(default_factory=dict)  # what the artifact's manifest records about this run
    dist: Any = None  # distribute.Distribution of the run (None: one device)
    augment: bool = False
    strict_data: bool = False
    shuffle_buffer: int | None = None
    backup_root: Any = None  # a Path: each fit keeps its BackupAndRestore state in a sub-folder
    backups: list[str] = field(default_factory=list)  # backup sub-folders used so far (removed after the run)

    def __post_init__(self):
        if self.dist is None:
            self.dist = Distribution(None, StrategyInfo("one-device"))

    def fit_kwargs(self, part: str) -> dict:
        """What every :func:`~edgekit.compression.fit.fit` call of a stage takes from the run; ``part`` names the
        fit's backup sub-folder (with --backup-dir)."""
        backup = None
        if self.backup_root is not None:
            self.backups.append(part)
            backup = self.backup_root / part
        return {"seed": self.seed, "progress": self.progress, "augment": self.augment, "dist": self.dist,
                "shuffle_buffer": self.shuffle_buffer, "backup_dir": backup}

    def part(self, name: str) -> str:
        """The backup sub-folder name of the next fit (its stage's position and name)."""
        return f"{len(self.done) + 1:02d}-{name}"


@dataclass
class StageReport(JsonMixin):
    """One row of the Deep Compression view, measured on the stage's finalized Keras model."""

    stage: str
    params: dict
    val_accuracy: float | None = None
    test_accuracy: float | None = None
    #: the test (else validation) accuracy against the chance accuracy of its labels (edgekit._chance.ChanceCheck)
    chance: dict | None = None
    param_count: int = 0
    nonzero: int = 0
    weights: WeightStats | None = None  # of the (simulated int8) kernels
    layers: list[str] = field(default_factory=list)  # layers the stage transformed
    history: list[EpochLog] = field(default_factory=list)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


class Stage:
    """Base class. Subclasses set ``name`` and ``spec_class`` and implement ``apply``/``finalize`` (and ``fit`` when
    they train). Parameters live in ``self.spec`` (a frozen, validated stage spec); ``stage.epochs`` etc. read it.

    ``Prune(0.5, epochs=1)`` = ``Prune(spec=PruneSpec(sparsity=0.5, epochs=1))``: the positional argument is the
    spec's ``primary`` parameter.
    """

    name: ClassVar[str] = "stage"
    spec_class: ClassVar[type[StageSpec]] = StageSpec
    #: True when the stage's result keeps tfmot wrappers on purpose (QAT: the converter reads them)
    keeps_wrappers: ClassVar[bool] = False
    #: default learning rate of the stage's fine-tuning
    default_lr: ClassVar[float] = 1e-4
    #: restore the best epoch's weights after fine-tuning (off where masks/schedules depend on the last step)
    restore_best: ClassVar[bool] = True

    def __init__(self, *args: Any, spec: StageSpec | None = None, **params: Any):
        if args:
            primary = self.spec_class.primary
            if len(args) > 1 or primary is None:
                raise TypeError(f"{type(self).__name__} takes keyword arguments" +
                                (f" (one positional: {primary})" if primary else ""))
            params[primary] = args[0]
        self.spec = self.spec_class.build(spec, **params)

    def __getattr__(self, name: str) -> Any:
        spec = self.__dict__.get("spec")
        if spec is not None and name in type(spec).keys():
            return getattr(spec, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    # -- description -------------------------------------------------------------------------------------------
    def config(self) -> dict:
        """The stage's parameters as given (the recipe entry that rebuilds it)."""
        return {k: v for k, v in self.spec.to_dict().items() if k in self.spec.recipe_keys()}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"

    # -- protocol ------------------------------------------------------------------------------------------------
    def check(self, model, previous: Sequence["Stage"]) -> None:
        """Validate against the input model and the stages before this one; raise PipelineError. No training."""

    def apply(self, model, ctx: Context):
        """Wrap ``model`` (tfmot wrappers); returns the model to fine-tune."""
        return model

    def fit(self, model, ctx: Context, shadow=None) -> list[EpochLog]:
        """Fine-tune the wrapped model on ``ctx.train`` for ``self.epochs``; returns the per-epoch log. ``shadow``
        is the plain twin validated under a distribution strategy."""
        from .train import compile_for_training, fit

        if not self.epochs:
            return []
        with ctx.dist.scope():
            compile_for_training(model, self.lr or self.default_lr, self.optimizer)
        log, best = fit(model, ctx.train, ctx.val, epochs=self.epochs, batch_size=self.batch_size or ctx.batch_size,
                        task=f"{self.name}", callbacks=[*self.fit_callbacks(model, ctx), *ctx.callbacks],
                        restore_best=self.restore_best, shadow=shadow, **ctx.fit_kwargs(ctx.part(self.name)))
        self.resumed_from = best.resumed_from if best else 0
        return log

    def fit_callbacks(self, model, ctx: Context) -> list:
        return []

    def finalize(self, model):
        """Strip the wrappers; returns a plain Keras model."""
        return model

    #: the epoch a restarted run resumed this stage's fine-tuning from (0: not resumed)
    resumed_from: int = 0

    def run(self, model, ctx: Context):
        """apply -> fit -> finalize, timed; returns ``(model, StageReport)``. Under a distribution strategy the
        stage wraps and trains a copy inside the strategy's scope, and a plain twin wrapped the same way outside it
        takes the trained weights (validation and finalize use the twin: nothing distributed leaves the stage)."""
        t0 = time.perf_counter()
        if ctx.dist.distributed:
            with ctx.dist.scope():
                wrapped = self.apply(ctx.dist.to_scope(model), ctx)
            twin = self.apply(model, ctx)
            history = self.fit(wrapped, ctx, shadow=twin)
            final = self.finalize(ctx.dist.copy_back(twin, wrapped))
        else:
            wrapped = self.apply(model, ctx)
            history = self.fit(wrapped, ctx)
            final = self.finalize(wrapped)
        report = StageReport(stage=self.name, params=self.config(), history=history)
        if self.resumed_from:
            report.notes.append(f"resumed after epoch {self.resumed_from} (backup in --backup-dir)")
        report.seconds = round(time.perf_counter() - t0, 2)
        return final, report


def make_stage(entry: Any) -> Stage:
    """A Stage from a Stage, a stage spec, a name, ``{name: {params}}``, ``{name: value}`` or ``(name, {params})``.

    Unknown stage names and parameters raise PipelineError with a did-you-mean; values are checked by the spec.
    """
    if isinstance(entry, Stage):
        return entry
    if isinstance(entry, StageSpec):
        cls = next((c for c in (STAGES.get(n) for n in STAGES.list()) if c.spec_class is type(entry)), None)
        if cls is None:
            raise PipelineError(f"no stage takes a {type(entry).__name__}")
        return cls(spec=entry)
    name, spec = stage_spec(entry)
    return stage_class(name)(spec=spec)


def stage_class(name: str) -> type[Stage]:
    try:
        return STAGES.get(name)
    except UnknownNameError as exc:
        raise PipelineError(f"unknown compression stage {name!r}", hint=exc.hint) from None


def select_layers(model, supported, layers: Sequence[str] | None, skip: Sequence[str] | None,
                  stage: str, allow=None) -> list[str]:
    """Names of the layers a stage transforms: those ``supported(layer)`` accepts, matching ``layers`` (fnmatch
    patterns; default all), minus ``skip`` (patterns; ``@first``/``@last`` = first/last supported layer), then
    filtered by ``allow(layer)`` (a policy such as XNNPACK's 1x1-only rule)."""
    by_name = {layer.name: layer for layer in model.layers}
    cands = [layer.name for layer in model.layers if supported(layer)]
    if not cands:
        raise PipelineError(f"{stage}: model {model.name!r} has no layer this stage can transform")
    chosen = cands
    if layers:
        for pat in layers:
            if not any(fnmatch.fnmatch(n, pat) for n in cands):
                raise PipelineError(f"{stage}: layers pattern {pat!r} matches no {stage}-able layer",
                                    hint=f"{stage}-able layers: {', '.join(cands[:8])}" + (" ..." if len(cands) > 8
                                                                                          else ""))
        chosen = [n for n in cands if any(fnmatch.fnmatch(n, p) for p in layers)]
    skip = list(skip or ())
    drop = set()
    for pat in skip:
        if pat == FIRST:
            drop.add(cands[0])
        elif pat == LAST:
            drop.add(cands[-1])
        else:
            drop.update(n for n in cands if fnmatch.fnmatch(n, pat))
    chosen = [n for n in chosen if n not in drop and (allow is None or allow(by_name[n]))]
    if not chosen:
        raise PipelineError(f"{stage}: layer selection left no layer to transform",
                            hint=f"check layers={list(layers or [])} and skip={skip}")
    return chosen


@STAGES.register("train", aliases=("finetune", "fine-tune"))
class Train(Stage):
    """Plain training / fine-tuning as a stage (e.g. the float baseline before pruning)."""

    name = "train"
    spec_class = TrainStageSpec
    default_lr = 1e-3

    def apply(self, model, ctx: Context):
        set_bn_momentum(model, ctx.bn_momentum)
        return model
