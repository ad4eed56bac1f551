"""Magnitude pruning with tfmot (``prune_low_magnitude`` -> fine-tune with ``UpdatePruningStep`` -> ``strip_pruning``).

tfmot prunes the kernels of Conv2D and Dense layers (and the pointwise kernel of SeparableConv); it has no
weights to prune in DepthwiseConv2D (its prune registry lists none), so a MobileNet's depthwise kernels stay dense.
"""
from __future__ import annotations

import math
from typing import Sequence

from ..errors import PipelineError
from .stages import FIRST, LAST, STAGES, Context, Stage, as_list, select_layers

SCHEDULES = ("polynomial", "constant")
POLICIES = ("xnnpack",)


def prunable(layer) -> bool:
    """True for layers whose weights tfmot's prune registry actually prunes."""
    from .._keras import layers

    return isinstance(layer, (layers.Conv2D, layers.Dense, layers.SeparableConv2D)) and \
        not isinstance(layer, layers.DepthwiseConv2D)


def parse_structure(value) -> tuple[int, int] | None:
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


@STAGES.register("prune", aliases=("pruning",))
class Prune(Stage):
    """Magnitude pruning to ``sparsity`` of the selected Conv2D/Dense kernels.

    ``schedule``: ``polynomial`` (sparsity ramps from ``initial_sparsity`` to ``sparsity`` over the first
    ``end_fraction`` of the fine-tuning steps; usually the better accuracy) or ``constant`` (``sparsity`` from the
    first step). ``structure="2:4"``: N:M structured sparsity (tfmot ``sparsity_m_by_n``; sparsity is then m/n).
    ``block_size=(1, 4)``: block sparsity. ``policy="xnnpack"``: tfmot's ``PruneForLatencyOnXNNPack`` (only 1x1
    convolutions, and only in a model XNNPACK's sparse inference can run: checked before training).
    ``layers``/``skip``: fnmatch patterns over layer names; by default the first and last prunable layers (the
    stem convolution and the classifier, the most sensitive ones) are skipped.
    """

    name = "prune"
    wraps = True
    default_lr = 5e-4
    primary = "sparsity"
    restore_best = False  # the mask must be the final schedule's

    def __init__(self, sparsity: float = 0.5, *, schedule: str = "polynomial", initial_sparsity: float = 0.0,
                 end_fraction: float = 0.6, frequency: int | None = None, structure: str | Sequence[int] | None = None,
                 block_size: Sequence[int] | None = None, policy: str | None = None,
                 layers: Sequence[str] | str | None = None, skip: Sequence[str] | str | None = (FIRST, LAST),
                 epochs: int = 2, lr: float | None = None, batch_size: int | None = None, optimizer: str = "adam"):
        super().__init__(epochs=epochs, lr=lr, batch_size=batch_size, optimizer=optimizer)
        if not isinstance(sparsity, (int, float)) or not 0.0 < float(sparsity) < 1.0:
            raise PipelineError(f"prune: sparsity must be in (0, 1); received {sparsity!r}")
        if schedule not in SCHEDULES:
            raise PipelineError(f"prune: unknown schedule {schedule!r}", hint=f"use one of {', '.join(SCHEDULES)}")
        if not 0.0 <= initial_sparsity < sparsity:
            raise PipelineError(f"prune: initial_sparsity must be in [0, sparsity); received {initial_sparsity!r}")
        if not 0.0 < end_fraction <= 1.0:
            raise PipelineError(f"prune: end_fraction must be in (0, 1]; received {end_fraction!r}")
        if frequency is not None and (not isinstance(frequency, int) or frequency <= 0):
            raise PipelineError(f"prune: frequency must be a positive integer; received {frequency!r}")
        self.structure = structure
        mn = parse_structure(structure)
        if mn and abs(float(sparsity) - mn[0] / mn[1]) > 1e-9:
            raise PipelineError(f"prune: structure {mn[0]}:{mn[1]} means sparsity {mn[0] / mn[1]:g}; "
                                f"received sparsity={sparsity}", hint=f"set sparsity: {mn[0] / mn[1]:g}")
        if mn and block_size:
            raise PipelineError("prune: structure (m:n) and block_size cannot be combined")
        if block_size is not None and (len(block_size) != 2 or any(int(b) <= 0 for b in block_size)):
            raise PipelineError(f"prune: block_size must be two positive integers; received {block_size!r}")
        if policy is not None and policy not in POLICIES:
            raise PipelineError(f"prune: unknown policy {policy!r}", hint=f"use one of {', '.join(POLICIES)}")
        if policy and (mn or block_size):
            raise PipelineError("prune: policy 'xnnpack' takes unstructured sparsity only (XNNPACK sparse inference)")
        if epochs == 0:
            raise PipelineError("prune: epochs must be >= 1 (the masks are computed while fine-tuning)")
        self.sparsity, self.schedule, self.initial_sparsity = float(sparsity), schedule, float(initial_sparsity)
        self.end_fraction, self.frequency, self.policy = float(end_fraction), frequency, policy
        self.block_size = None if block_size is None else [int(b) for b in block_size]
        self.layers, self.skip = as_list(layers, "layers", "prune"), as_list(skip, "skip", "prune")
        self._mn = mn
        self._selected: list[str] = []

    def _policy(self):
        if self.policy != "xnnpack":
            return None
        from .._keras import tfmot

        return tfmot().sparsity.keras.PruneForLatencyOnXNNPack()

    def _allow(self):
        pol = self._policy()
        return None if pol is None else pol.allow_pruning

    def check(self, model, previous) -> None:
        select_layers(model, prunable, self.layers, self.skip, "prune", self._allow())
        pol = self._policy()
        if pol is not None:
            try:
                pol.ensure_model_supports_pruning(model)
            except ValueError as exc:
                raise PipelineError(f"prune: policy 'xnnpack' does not fit model {model.name!r}: {exc}",
                                    hint="XNNPACK sparse inference needs a 3x3 stride-2 VALID stem conv on 3 input "
                                         "channels after ZeroPadding2D(1) and a GlobalAveragePooling2D head; "
                                         "drop policy to prune for size instead") from None

    def _schedule(self, steps: int):
        from .._keras import tfmot

        sp = tfmot().sparsity.keras
        freq = self.frequency or max(1, min(100, steps // 10))
        if self.schedule == "constant":
            return sp.ConstantSparsity(self.sparsity, begin_step=0, frequency=freq)
        end = max(freq, int(math.floor(steps * self.end_fraction / freq)) * freq)
        return sp.PolynomialDecay(initial_sparsity=self.initial_sparsity, final_sparsity=self.sparsity,
                                  begin_step=0, end_step=end, frequency=freq)

    def apply(self, model, ctx: Context):
        from .._keras import keras, tfmot

        sp = tfmot().sparsity.keras
        self._selected = select_layers(model, prunable, self.layers, self.skip, "prune", self._allow())
        steps = math.ceil(len(ctx.train) / (self.batch_size or ctx.batch_size)) * self.epochs
        params = {"pruning_schedule": self._schedule(steps)}
        if self._mn:
            params["sparsity_m_by_n"] = self._mn
        if self.block_size:
            params["block_size"] = tuple(self.block_size)
        chosen = set(self._selected)

        def wrap(layer):
            return sp.prune_low_magnitude(layer, **params) if layer.name in chosen else layer

        with sp.prune_scope():
            return keras.models.clone_model(model, clone_function=wrap)

    def fit_callbacks(self, model, ctx: Context) -> list:
        from .._keras import tfmot

        return [tfmot().sparsity.keras.UpdatePruningStep()]

    def finalize(self, model):
        from .._keras import tfmot

        return tfmot().sparsity.keras.strip_pruning(model)

    def run(self, model, ctx: Context):
        final, report = super().run(model, ctx)
        report.layers = list(self._selected)
        ctx.pruned_layers = list(self._selected)
        return final, report
