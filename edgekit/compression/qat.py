"""Quantization-aware training with tfmot (``quantize_model`` = annotate + apply, then fine-tune).

The QAT model keeps its fake-quant wrappers on purpose: the TFLite converter reads their learned ranges, so it
goes to export as int8 (and only int8: a dynamic-range or float16 export would throw the training away).
After pruning or clustering, tfmot's collaborative schemes keep sparsity / clusters during QAT (``preserve``).
"""
from __future__ import annotations

from ..specs.stages import QATSpec
from .stages import STAGES, Context, Stage
from ..errors import CompressionError


@STAGES.register("qat", aliases=("quantize-aware", "quantization-aware"))
class QAT(Stage):
    """Wrap with tfmot's default 8-bit QAT scheme and fine-tune; the result is exported as int8.

    ``preserve="auto"`` uses tfmot's collaborative-optimization schemes after prune/cluster stages (PQAT, CQAT,
    PCQAT) so QAT does not undo sparsity or clustering; ``"none"`` uses the plain default scheme.
    """

    name = "qat"
    spec_class = QATSpec
    keeps_wrappers = True
    default_lr = 1e-4
    restore_best = True

    def __init__(self, *args, **params):
        super().__init__(*args, **params)
        self._scheme = "default_8bit"

    def _scheme_for(self, done):
        from .._keras import tfmot

        combine = tfmot().experimental.combine
        if self.preserve == "none":
            return None, "default_8bit"
        pruned, clustered = "prune" in done, "cluster" in done
        if clustered:
            return combine.Default8BitClusterPreserveQuantizeScheme(preserve_sparsity=pruned), \
                "pcqat" if pruned else "cqat"
        if pruned:
            return combine.Default8BitPrunePreserveQuantizeScheme(), "pqat"
        return None, "default_8bit"

    def apply(self, model, ctx: Context):
        from .._keras import tfmot

        q = tfmot().quantization.keras
        scheme, self._scheme = self._scheme_for(ctx.done)
        try:
            annotated = q.quantize_annotate_model(model)
            with q.quantize_scope():
                return q.quantize_apply(annotated, scheme) if scheme is not None else q.quantize_apply(annotated)
        except (ValueError, RuntimeError, TypeError) as exc:
            raise CompressionError(f"qat: tfmot cannot quantize model {model.name!r}: {str(exc).splitlines()[0]}",
                                   hint="QAT supports the common Conv/Dense/BN/ReLU layers; export with post-training "
                                        "int8 instead") from exc

    def run(self, model, ctx: Context):
        final, report = super().run(model, ctx)
        report.notes.append(f"tfmot scheme {self._scheme}; fake-quant wrappers kept for the int8 converter")
        return final, report
