"""``compress(model, data=..., prune=0.5, quantize="int8", ...)``: the flag-style API that ``edgekit compress`` and
recipes map 1:1 (arguments: :class:`edgekit.specs.CompressSpec`), and ``build_stages`` (spec -> Stage objects)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence

from .._jsonable import JsonMixin
from .._progress import Progress, no_progress
from .._spec import takes_spec
from ..errors import PipelineError
from ..specs.compress import CompressSpec
from .export_stage import Export
from .ordering import validate_chain
from .pipeline import Pipeline, PipelineReport
from .stages import Stage, make_stage
from .train import check_model_output, save_model_atomic


def build_stages(spec: CompressSpec) -> list[Stage]:
    """The stages of ``spec``: its ``stages`` list, or its flags in the one valid order (train, distill, prune,
    cluster, qat), then the export when ``quantize`` is given. Validated (parameters, order), nothing trains."""
    stages = [make_stage(entry) for entry in spec.stage_entries()]
    export = spec.export_options()
    if export is not None:
        if any(isinstance(s, Export) for s in stages):
            raise PipelineError("the stages list already ends in export; drop quantize (or the export stage)")
        stages.append(Export(**export))
    validate_chain(stages)
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


@takes_spec(CompressSpec, positional=("model",))
def compress(spec: CompressSpec, *, progress: Progress = no_progress, callbacks: Sequence = (),
             provenance: dict | None = None) -> CompressResult:
    """Compress ``model`` with flags (``prune=0.5, cluster=16, distill_from="resnet50", qat=True``) or an explicit
    ``stages`` list, then export when ``quantize`` is given. Every argument (:class:`CompressSpec`) is also a
    recipe key and a CLI option.

    ``model`` is a zoo name, a model file or a keras.Model (the model options such as ``alpha``, ``resolution``,
    ``input_channels``, ``classes``, ``weights`` go to ``edgekit.models.create``). ``train_epochs`` trains the float
    baseline first. The report (table rows, JSON, PNG) is saved beside the artifact in ``out``. The artifact's
    manifest records the model as given (zoo name or file, its options), the stages, the data and ``provenance``
    (e.g. ``{"recipe": path}`` from :func:`edgekit.run_recipe`).
    """
    built = build_stages(spec)
    data = spec.data if isinstance(spec.data, (str, os.PathLike)) else getattr(spec.data, "source", None)
    run = {"stages": [{s.name: s.config()} for s in built if s.name != "export"], "data": data and str(data),
           "seed": spec.seed, **(provenance or {})}
    if isinstance(spec.model, (str, os.PathLike)):
        run.update(source=str(spec.model), options=spec.model_options())
    if spec.save_model is not None:
        check_model_output(spec.save_model, "save_model")
    saved = None

    def save(final_model: Any) -> None:
        nonlocal saved

        saved = str(save_model_atomic(final_model, spec.save_model))

    report = Pipeline(built).run(spec.model, spec.data, spec, progress=progress, callbacks=callbacks,
                                 report_dir=None if built[-1].name == "export" else spec.out,
                                 before_export=save if spec.save_model is not None else None, provenance=run).report
    return CompressResult(model=report.model, stages=[s.name for s in built], report=report, model_path=saved)
