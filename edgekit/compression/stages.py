"""The stage protocol (tfmot's wrap, then strip) and the STAGES registry.

A stage is a small object built from plain parameters (a recipe entry or a CLI flag). ``check`` validates it
against the input model before anything trains, ``apply`` wraps the model, ``fit`` fine-tunes it and
``finalize`` strips the wrappers again so that nothing wrapped reaches an exporter.
"""
from __future__ import annotations

import fnmatch
import inspect
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar, Sequence

from .._jsonable import JsonMixin, to_jsonable
from .._progress import Progress, no_progress
from ..errors import InvalidArgument, PipelineError, UnknownNameError
from ..registry import Registry
from .train import EpochLog

#: name -> Stage subclass
STAGES: Registry[type["Stage"]] = Registry("compression stage")

#: special entries of ``skip=``: the first and the last layer that the stage could transform
FIRST, LAST = "@first", "@last"


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


@dataclass
class StageReport(JsonMixin):
    """One row of the Deep Compression view, measured on the stage's finalized Keras model."""

    stage: str
    params: dict
    val_accuracy: float | None = None
    test_accuracy: float | None = None
    param_count: int = 0
    nonzero: int = 0
    weights: dict | None = None  # report.WeightStats of the (simulated int8) kernels
    layers: list[str] = field(default_factory=list)  # layers the stage transformed
    history: list[EpochLog] = field(default_factory=list)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


class Stage:
    """Base class. Subclasses set ``name`` and implement ``apply``/``finalize`` (and ``fit`` when they train)."""

    name: ClassVar[str] = "stage"
    #: True when ``apply`` wraps layers (tfmot wrappers) that another wrapping stage must not see
    wraps: ClassVar[bool] = False
    #: default learning rate of the stage's fine-tuning
    default_lr: ClassVar[float] = 1e-4

    def __init__(self, *, epochs: int = 1, lr: float | None = None, batch_size: int | None = None,
                 optimizer: str = "adam"):
        if not isinstance(epochs, int) or epochs < 0:
            raise PipelineError(f"{self.name}: epochs must be an integer >= 0; received {epochs!r}")
        if lr is not None and not lr > 0:
            raise PipelineError(f"{self.name}: lr must be positive; received {lr!r}")
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size <= 0):
            raise PipelineError(f"{self.name}: batch_size must be a positive integer; received {batch_size!r}")
        self.epochs, self.lr, self.batch_size, self.optimizer = epochs, lr, batch_size, optimizer

    # -- description -------------------------------------------------------------------------------------------
    def config(self) -> dict:
        """The stage's parameters as given (the recipe entry that rebuilds it)."""
        out = {}
        for pname in inspect.signature(type(self).__init__).parameters:
            if pname in ("self", "callbacks") or pname.endswith("_loss"):
                continue
            if hasattr(self, pname):
                out[pname] = to_jsonable(getattr(self, pname)) if not callable(getattr(self, pname)) else "<callable>"
        return out

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"

    # -- protocol ------------------------------------------------------------------------------------------------
    def check(self, model, previous: Sequence["Stage"]) -> None:
        """Validate against the input model and the stages before this one; raise PipelineError. No training."""

    def apply(self, model, ctx: Context):
        """Wrap ``model`` (tfmot wrappers); returns the model to fine-tune."""
        return model

    def fit(self, model, ctx: Context) -> list[EpochLog]:
        """Fine-tune the wrapped model on ``ctx.train`` for ``self.epochs``; returns the per-epoch log."""
        from .train import compile_for_training, fit

        if not self.epochs:
            return []
        compile_for_training(model, self.lr or self.default_lr, self.optimizer)
        log, _ = fit(model, ctx.train, ctx.val, epochs=self.epochs, batch_size=self.batch_size or ctx.batch_size,
                     task=f"{self.name}", progress=ctx.progress, callbacks=[*self.fit_callbacks(model, ctx),
                                                                           *ctx.callbacks],
                     restore_best=self.restore_best, seed=ctx.seed)
        return log

    #: restore the best epoch's weights after fine-tuning (off where masks/schedules depend on the last step)
    restore_best: ClassVar[bool] = True

    def fit_callbacks(self, model, ctx: Context) -> list:
        return []

    def finalize(self, model):
        """Strip the wrappers; returns a plain Keras model."""
        return model

    def run(self, model, ctx: Context):
        """apply -> fit -> finalize, timed; returns ``(model, StageReport)``."""
        t0 = time.perf_counter()
        wrapped = self.apply(model, ctx)
        history = self.fit(wrapped, ctx)
        final = self.finalize(wrapped)
        report = StageReport(stage=self.name, params=self.config(), history=history)
        report.seconds = round(time.perf_counter() - t0, 2)
        return final, report


def make_stage(spec: Any) -> Stage:
    """A Stage from a Stage, a name, ``{name: {params}}``, ``{name: value}`` or ``(name, {params})``.

    Unknown stage names and parameters raise PipelineError with a did-you-mean.
    """
    if isinstance(spec, Stage):
        return spec
    if isinstance(spec, str):
        name, params = spec, {}
    elif isinstance(spec, tuple) and len(spec) == 2:
        name, params = spec
    elif isinstance(spec, dict) and len(spec) == 1:
        (name, params), = spec.items()
    else:
        raise PipelineError(f"cannot read stage {spec!r}", hint="write a stage as {name: {param: value}}, e.g. "
                                                               "{prune: {sparsity: 0.5}}")
    cls = stage_class(str(name))
    if params is None or params is True:
        params = {}
    if params is False:
        raise PipelineError(f"stage {name!r} is set to false", hint="remove the stage instead of disabling it")
    if not isinstance(params, dict):
        primary = getattr(cls, "primary", None)
        if primary is None:
            raise PipelineError(f"stage {cls.name!r} takes a mapping of parameters; received {params!r}")
        params = {primary: params}
    check_keys(f"stage {cls.name!r}", params, stage_params(cls))
    try:
        return cls(**params)
    except PipelineError:
        raise
    except (InvalidArgument, TypeError, ValueError) as exc:
        raise PipelineError(f"stage {cls.name!r}: {exc}") from exc


def stage_class(name: str) -> type[Stage]:
    try:
        return STAGES.get(name)
    except UnknownNameError as exc:
        raise PipelineError(f"unknown compression stage {name!r}", hint=exc.hint) from None


def stage_params(cls: type[Stage]) -> list[str]:
    """Parameter names a stage class accepts (its own and the base class's)."""
    names = []
    for klass in (cls, Stage):
        for pname, p in inspect.signature(klass.__init__).parameters.items():
            if pname != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and pname not in names:
                names.append(pname)
    return names


def check_keys(where: str, given: dict, known: Sequence[str]) -> None:
    """Raise PipelineError for the first key of ``given`` not in ``known``, with a did-you-mean."""
    import difflib

    for key in given:
        if key not in known:
            close = difflib.get_close_matches(str(key), list(known), n=2, cutoff=0.5)
            hint = (f"did you mean {' or '.join(repr(c) for c in close)}?" if close
                    else f"known keys: {', '.join(known)}")
            raise PipelineError(f"{where}: unknown key {key!r}", hint=hint)


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


def as_list(value, name: str, stage: str) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    raise PipelineError(f"{stage}: {name} must be a name pattern or a list of them; received {value!r}")


@STAGES.register("train", aliases=("finetune", "fine-tune"))
class Train(Stage):
    """Plain training / fine-tuning as a stage (e.g. the float baseline before pruning)."""

    name = "train"
    default_lr = 1e-3
    primary = "epochs"

    def __init__(self, *, epochs: int = 3, lr: float | None = None, batch_size: int | None = None,
                 optimizer: str = "adam"):
        super().__init__(epochs=epochs, lr=lr, batch_size=batch_size, optimizer=optimizer)
        if epochs < 1:
            raise PipelineError("train: epochs must be >= 1 (a train stage without epochs does nothing)")

    def apply(self, model, ctx: Context):
        from .train import set_bn_momentum

        set_bn_momentum(model, ctx.bn_momentum)
        return model
