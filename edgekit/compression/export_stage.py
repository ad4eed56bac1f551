"""The ``export`` stage: ``edgekit.exporters.export`` of the pipeline's final plain model, calibrated on its
training split and verified on its held-out split (the Dataset objects themselves, so the manifest names the
real data source)."""
from __future__ import annotations

from ..specs.export import ExportOptions
from ..specs.stages import ExportStageSpec, check_export_after
from .stages import STAGES, Context, Stage
from .. import exporters

#: most held-out samples the export verifies on by default (the exporter's own default is smaller)
MAX_VERIFY_SAMPLES = 500


@STAGES.register("export")
class Export(Stage):
    """The usual last stage: post-training quantization calibrated on the pipeline's training data, verified on
    its test (else validation) split; the artifact is then measured for the report."""

    name = "export"
    spec_class = ExportStageSpec

    def check(self, model, previous) -> None:
        check_export_after([s.name for s in previous], self.quantize)

    def export(self, model, ctx: Context):
        """The ExportResult of exporting ``model`` with the pipeline's data (``calib_data``/``verify_data`` of the
        stage win over the training and held-out splits)."""

        spec = self.spec
        held = ctx.test if ctx.test is not None else ctx.val
        calibrated = spec.precision.calibrated
        calib = spec.calib_data
        if calib is None and calibrated:
            calib = ctx.train.take(spec.calib_count, ctx.seed)
        verify, n_ver = spec.verify_data, spec.verify_samples
        if verify is None and held is not None:
            n_ver = n_ver or min(len(held), MAX_VERIFY_SAMPLES)
            verify = held
        options = {k: getattr(spec, k) for k in ExportOptions.keys()}  # every export option, as given
        options.update(calib_data=calib if calibrated else None, verify_data=verify, verify_samples=n_ver)
        return exporters.export(model, preprocess=ctx.preprocess, seed=ctx.seed, strict_data=ctx.strict_data,
                                progress=ctx.progress, provenance=ctx.provenance or None, **options)
