"""Magnitude pruning with tfmot (``prune_low_magnitude`` -> fine-tune with ``UpdatePruningStep`` -> ``strip_pruning``).

tfmot prunes the kernels of Conv2D and Dense layers (and the pointwise kernel of SeparableConv); it has no
weights to prune in DepthwiseConv2D (its prune registry lists none), so a MobileNet's depthwise kernels stay dense.
"""
from __future__ import annotations

import math

from ..errors import PipelineError
from ..specs.stages import POLICIES, SCHEDULES, PruneSpec, parse_structure
from .stages import STAGES, Context, Stage, select_layers

__all__ = ["Prune", "prunable", "parse_structure", "SCHEDULES", "POLICIES"]


def prunable(layer) -> bool:
    """True for layers whose weights tfmot's prune registry actually prunes."""
    from .._keras import layers

    return isinstance(layer, (layers.Conv2D, layers.Dense, layers.SeparableConv2D)) and \
        not isinstance(layer, layers.DepthwiseConv2D)


@STAGES.register("prune", aliases=("pruning",))
class Prune(Stage):
    """Magnitude pruning to ``sparsity`` of the selected Conv2D/Dense kernels.

    ``schedule``: ``polynomial`` (sparsity ramps from ``initial_sparsity`` to ``sparsity`` over the first
    ``end_fraction`` of the fine-tuning steps; usually the better accuracy) or ``constant`` (``sparsity`` from the
    first step). ``structure="2:4"``: N:M structured sparsity (tfmot ``sparsity_m_by_n``; sparsity is then m/n).
    ``block_size=(1, 4)``: block sparsity. ``policy="xnnpack"``: tfmot's ``PruneForLatencyOnXNNPack`` (only 1x1
    convolutions, and only in a model XNNPACK's sparse inference can run: checked before training). With the
    shipped runtimes (ai-edge-litert 2.3, tflite-runtime 2.14, benchmark_model) pruning buys size, not latency: the
    XNNPACK delegate turns its sparse-inference hint on by itself for files with sparse (Densify) weights, but
    XNNPACK's NCHW rewrite (``xnn_check_nchw_compatibility``) takes float nodes only, needs a 3x3 stride-2 stem over
    3 input channels with explicit padding 1, and refuses depthwise convolutions with TensorFlow SAME padding,
    which is how every Keras/TFLite MobileNet's are written (docs/concepts.md, "Pruning and latency").
    ``layers``/``skip``: fnmatch patterns over layer names; by default the first and last prunable layers (the
    stem convolution and the classifier, the most sensitive ones) are skipped.
    """

    name = "prune"
    spec_class = PruneSpec
    default_lr = 5e-4
    restore_best = False  # the mask must be the final schedule's

    def __init__(self, *args, **params):
        super().__init__(*args, **params)
        self._mn = parse_structure(self.structure)
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
            params["block_size"] = self.block_size
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
