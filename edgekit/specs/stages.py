"""One spec per compression stage: the parameters of a stage in a recipe's ``stages:`` list or a Stage object.

A stage's ``primary`` parameter is the one a short recipe entry sets (``{prune: 0.5}`` = sparsity 0.5).
"""
from __future__ import annotations

from typing import Any, Callable, ClassVar

from .._spec import Spec, option, spec
from ..errors import PipelineError, UnknownNameError
from ..registry import Registry
from . import _choices
from .export import ExportOptions

#: special entries of ``skip=``: the first and the last layer that the stage could transform
FIRST, LAST = "@first", "@last"
SCHEDULES = ("polynomial", "constant")
POLICIES = ("xnnpack",)
CLUSTER_INITS = ("kmeans++", "linear", "density", "random")
QAT_PRESERVE = ("auto", "none")


def parse_structure(value: Any) -> tuple[int, int] | None:
    """``"2:4"`` / ``[2, 4]`` -> (2, 4): m zeros in every n consecutive input-channel weights."""
    if value in (None, "", "none"):
        return None
    try:
        if isinstance(value, str):
            m, n = (int(v) for v in value.replace("by", ":").split(":"))
        else:
            m, n = (int(v) for v in value)
    except (TypeError, ValueError):
        raise PipelineError(f"prune: structure must look like '2:4' (m zeros in every n weights); "
                            f"received {value!r}") from None
    if not 0 < m < n:
        raise PipelineError(f"prune: structure m:n needs 0 < m < n; received {m}:{n}")
    return m, n


@spec
class StageSpec(Spec):
    """What every training stage takes: its fine-tuning epochs, learning rate, batch size and optimizer."""

    error: ClassVar[type] = PipelineError
    #: the parameter a scalar recipe entry sets (``{prune: 0.5}``)
    primary: ClassVar[str | None] = None

    epochs: int = option(1, ge=0, help="Fine-tuning epochs.")
    lr: float | None = option(None, gt=0, help="Fine-tuning learning rate (default: the stage's).")
    batch_size: int | None = option(None, gt=0, help="Batch size (default: the pipeline's).")
    optimizer: str = option("adam", choices=_choices.OPTIMIZERS, help="Optimizer.")


@spec
class TrainStageSpec(StageSpec):
    """Plain training / fine-tuning as a stage (e.g. the float baseline before pruning)."""

    label = "train"
    primary = "epochs"
    epochs: int = option(3, ge=1, expect=">= 1 (a train stage without epochs does nothing)", help="Epochs.")


@spec
class PruneSpec(StageSpec):
    """Magnitude pruning (tfmot) of the selected Conv2D/Dense kernels to ``sparsity``."""

    label = "prune"
    primary = "sparsity"
    sparsity: float = option(0.5, gt=0, lt=1, hint="a fraction of the weights set to zero, e.g. 0.5 for half",
                             help="Target sparsity, e.g. 0.5.")
    schedule: str = option("polynomial", choices=SCHEDULES, help="Sparsity schedule.")
    initial_sparsity: float = option(0.0, ge=0, lt=1, help="Sparsity at the first step (polynomial schedule).")
    end_fraction: float = option(0.6, gt=0, le=1, help="Fraction of the fine-tuning steps over which sparsity ramps.")
    frequency: int | None = option(None, gt=0, help="Steps between mask updates (default: about 10 per run).")
    structure: str | tuple[int, ...] | None = option(None, help="N:M structured sparsity, e.g. 2:4.")
    block_size: tuple[int, ...] | None = option(None, gt=0, help="Block sparsity, e.g. 1,4.", separator=",")
    policy: str | None = option(None, choices=POLICIES,
                                help="tfmot PruneForLatencyOnXNNPack (1x1 convs only). The shipped runtimes run "
                                     "such files dense: XNNPACK's sparse path needs float, a 3x3 stride-2 stem "
                                     "over 3 channels and explicit padding (docs/concepts.md: pruning and latency).")
    layers: tuple[str, ...] | None = option(None, help="Only layers matching this pattern (repeatable).")
    skip: tuple[str, ...] | None = option((FIRST, LAST), help="Skip layers matching this pattern (@first, @last: "
                                                              "the first/last prunable layer).")
    epochs: int = option(2, ge=1, expect=">= 1 (the masks are computed while fine-tuning)",
                         help="Fine-tuning epochs while pruning.")

    def validate(self) -> None:
        if not self.initial_sparsity < self.sparsity:
            raise self.fail(f"initial_sparsity must be in [0, sparsity); received {self.initial_sparsity!r}")
        mn = parse_structure(self.structure)
        if mn and abs(self.sparsity - mn[0] / mn[1]) > 1e-9:
            raise self.fail(f"structure {mn[0]}:{mn[1]} means sparsity {mn[0] / mn[1]:g}; received "
                            f"sparsity={self.sparsity:g}", hint=f"set sparsity: {mn[0] / mn[1]:g}")
        if mn and self.block_size:
            raise self.fail("structure (m:n) and block_size cannot be combined")
        if self.block_size is not None and len(self.block_size) != 2:
            raise self.fail(f"block_size must be two positive integers; received {list(self.block_size)!r}")
        if self.policy and (mn or self.block_size):
            raise self.fail("policy 'xnnpack' takes unstructured sparsity only (XNNPACK sparse inference)")


@spec
class ClusterSpec(StageSpec):
    """Weight clustering (tfmot) of the selected Conv2D/Dense kernels into ``clusters`` shared values."""

    label = "cluster"
    primary = "clusters"
    clusters: int = option(16, ge=2, le=256, expect="an integer in [2, 256]", help="Shared values per kernel.")
    init: str = option("kmeans++", choices=CLUSTER_INITS, help="Centroid initialisation.")
    per_channel: bool = option(False, help="N clusters per output channel.")
    preserve_sparsity: bool | None = option(None, help="Keep pruned zeros (default: true after a prune stage).")
    layers: tuple[str, ...] | None = option(None, help="Only layers matching this pattern (repeatable).")
    skip: tuple[str, ...] | None = option((FIRST, LAST), help="Skip layers matching this pattern.")
    epochs: int = option(1, ge=0, help="Fine-tuning epochs while clustering.")


@spec
class QATSpec(StageSpec):
    """Quantization-aware training (tfmot default 8-bit scheme; collaborative schemes after prune/cluster)."""

    label = "qat"
    primary = "epochs"
    preserve: str = option("auto", choices=QAT_PRESERVE,
                           help="auto: keep sparsity/clusters of earlier stages (PQAT/CQAT/PCQAT); none: plain QAT.")
    epochs: int = option(1, ge=1, help="QAT fine-tuning epochs.")


@spec
class DistillSpec(StageSpec):
    """Knowledge distillation from ``teacher`` into the pipeline's model."""

    label = "distill"
    primary = "teacher"
    teacher: Any = option(None, help="Teacher: zoo name, trained model file or keras.Model.")
    teacher_options: dict | None = option(None, cli=False, help="Zoo options of a zoo-name teacher.")
    teacher_epochs: int = option(0, ge=0, help="Train a zoo teacher first for N epochs.")
    teacher_lr: float = option(1e-3, gt=0, help="Learning rate of the teacher's training.")
    temperature: float = option(4.0, gt=0, help="Distillation temperature.")
    alpha: float = option(0.1, ge=0, le=1, help="Weight of the label loss.")
    student_loss: Callable | None = option(None, cli=False, recipe=False, help="Hook: loss(y, student_out).")
    distill_loss: Callable | None = option(None, cli=False, recipe=False,
                                           help="Hook: loss(teacher_soft, student_soft).")
    callbacks: tuple[Any, ...] = option((), cli=False, recipe=False, help="Extra keras callbacks.")
    epochs: int = option(3, ge=1, help="Student epochs with the teacher.")
    lr: float | None = option(None, gt=0, help="Student learning rate (default 1e-3).")
    trust_model_code: bool = option(False, help="Load a teacher file whose layers run stored Python code (Lambda & "
                                                "co); the pipeline's trust_model_code sets it too.")

    def validate(self) -> None:
        if self.teacher is None:
            raise self.fail("a teacher is required (zoo name, model file or keras.Model)")


@spec
class ExportStageSpec(ExportOptions):
    """The ``export`` stage: the export options, calibrated on the pipeline's training data by default."""

    error: ClassVar[type] = PipelineError
    label = "export"
    primary: ClassVar[str] = "quantize"
    quantize: str = option("int8", short="-q", choices=_choices.PRECISIONS,
                           help="Precision: float32, float16, dynamic (int8 weights), int8, int16x8 (aliases: "
                                "none = float32, fp16 = float16).")
    latency: bool = option(False, help="Measure the artifact's local latency (edgekit bench) for the report.")


#: compression stage name -> its spec class (aliases accepted): what a ``stages:`` entry names. The stage classes
#: (``edgekit.compression.STAGES``) carry the same names; registering a new stage class adds its row here.
STAGE_SPECS: Registry[type[Spec]] = Registry("compression stage")
for _cls, _aliases in [(TrainStageSpec, ("finetune", "fine-tune")), (ExportStageSpec, ()),
                       (ClusterSpec, ("clustering",)), (DistillSpec, ("distillation", "kd")), (PruneSpec, ("pruning",)),
                       (QATSpec, ("quantize-aware", "quantization-aware"))]:
    STAGE_SPECS.add(_cls.label, _cls, aliases=_aliases)

#: (earlier, later): why that order is invalid
ORDER_RULES = {
    ("cluster", "prune"): "prune after cluster breaks the weight sharing (and re-clustering would undo the zeros); "
                          "prune first, then cluster (sparsity-preserving)",
    ("qat", "prune"): "prune after qat would re-wrap a quantization-aware model; prune before qat",
    ("qat", "cluster"): "cluster after qat would re-wrap a quantization-aware model; cluster before qat",
    ("qat", "distill"): "distill after qat re-trains a quantization-aware model; distill first",
    ("qat", "qat"): "qat twice; use one qat stage with more epochs",
    ("qat", "train"): "train after qat: give the qat stage more epochs instead",
}


def stage_spec_class(name: str) -> tuple[str, type[Spec]]:
    """The canonical stage name of ``name`` (or an alias) and its spec class."""
    try:
        entry = STAGE_SPECS.entry(name)
    except UnknownNameError as exc:
        raise PipelineError(f"unknown compression stage {name!r}", hint=exc.hint) from None
    return entry.name, entry.obj


def stage_spec(entry: Any) -> tuple[str, Spec]:
    """``(stage name, validated spec)`` of a name, ``{name: {params}}``, ``{name: value}`` or ``(name, {params})``.

    Unknown stage names and parameters raise PipelineError with a did-you-mean; values are checked by the spec.
    """
    if isinstance(entry, str):
        name, params = entry, {}
    elif isinstance(entry, tuple) and len(entry) == 2:
        name, params = entry
    elif isinstance(entry, dict) and len(entry) == 1:
        (name, params), = entry.items()
    else:
        raise PipelineError(f"cannot read stage {entry!r}", hint="write a stage as {name: {param: value}}, e.g. "
                                                                "{prune: {sparsity: 0.5}}")
    canonical, cls = stage_spec_class(str(name))
    if params is None or params is True:
        params = {}
    if params is False:
        raise PipelineError(f"stage {name!r} is set to false", hint="remove the stage instead of disabling it")
    if not isinstance(params, dict):
        primary = cls.primary
        if primary is None:
            raise PipelineError(f"stage {canonical!r} takes a mapping of parameters; received {params!r}")
        params = {primary: params}
    return canonical, cls.from_dict(params)


def check_order(names: list[str]) -> None:
    """Static order rules of a chain of stage names (no model needed). Raise PipelineError naming the problem."""
    for i, later in enumerate(names):
        for earlier in names[:i]:
            why = ORDER_RULES.get((earlier, later))
            if why:
                raise PipelineError(f"invalid pipeline {' -> '.join(names)}: {why}")
    for i, name in enumerate(names):
        if name == "export" and i != len(names) - 1:
            raise PipelineError(f"invalid pipeline {' -> '.join(names)}: export must be the last stage")


def check_export_after(previous: list[str], quantize: str) -> None:
    """An export after ``previous`` stages: a QAT model exports as int8."""
    if "qat" in previous and quantize != "int8":
        raise PipelineError(f"qat then a {quantize!r} export throws the quantization-aware training away",
                            hint="export a QAT model with quantize: int8")
