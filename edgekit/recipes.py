"""Recipes: one YAML file in ``export/`` = one reproducible compress + export run.

The schema is the signature of :func:`edgekit.compression.compress`: every top-level key is one of its arguments
(the same name as the CLI option, ``_`` for ``-``), plus ``model``, the model options of ``edgekit.models.create``
and the free-text ``name``/``description``. Stages come either as flags (``prune: 0.5``, ``cluster: 16``,
``qat: true``, ``distill_from: mobilenet_v1``) or as an explicit ``stages:`` list of ``{stage: {params}}``.
``quantize`` (with ``formats``, ``calib_samples``, ``out`` ...) adds the export. Validation (unknown keys with a
did-you-mean, stage names and parameters, stage order, QAT then non-int8 export) happens before any training.
Relative paths (``out``, ``data`` folders, ``save_model``) are relative to the working directory.
"""
from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ._progress import Progress, no_progress
from .errors import InvalidArgument, PipelineError

#: model options (``edgekit.models.create`` arguments; the CLI's model options)
MODEL_KEYS = ("alpha", "rho", "resolution", "depth_multiplier", "dropout", "classes", "input_channels",
              "include_top", "input_shape", "trust_model_code", "weights")
META_KEYS = ("name", "description")
_NOT_RECIPE = ("progress", "callbacks", "model_options")


def recipe_keys() -> list[str]:
    """Every key a recipe may hold."""
    from .compression.pipeline import compress

    args = [p for p in inspect.signature(compress).parameters if p not in _NOT_RECIPE]
    return [*META_KEYS, *args, *MODEL_KEYS]


def load_recipe(path: str | os.PathLike) -> dict[str, Any]:
    """Read a recipe file (YAML mapping) and validate it; returns the validated mapping."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise InvalidArgument(f"recipe {str(p)!r} does not exist", hint="recipes live in export/*.yaml")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise PipelineError(f"recipe {str(p)!r} is not valid YAML: {str(exc).splitlines()[0]}") from exc
    if not isinstance(data, dict):
        raise PipelineError(f"recipe {str(p)!r} must be a mapping of keys to values")
    return validate_recipe(data, where=str(p))


def validate_recipe(recipe: Mapping[str, Any], *, where: str = "recipe") -> dict[str, Any]:
    """Check keys (did-you-mean), required keys, simple types, stages and their order; no model is built."""
    from .compression.pipeline import Export, Pipeline, build_stages, compress
    from .compression.stages import check_keys, make_stage

    recipe = dict(recipe)
    check_keys(where, recipe, recipe_keys())
    for key in ("model", "data"):
        if not recipe.get(key):
            raise PipelineError(f"{where}: missing required key {key!r}")
    if not isinstance(recipe["model"], str):
        raise PipelineError(f"{where}: model must be a zoo name or a model file path")
    sig = inspect.signature(compress).parameters
    for key, value in recipe.items():
        if key in sig and key not in ("model", "data", "stages", "teacher_options", "prune_layers", "prune_skip",
                                      "formats", "distill_from"):
            default = sig[key].default
            if value is not None and default not in (None, inspect.Parameter.empty) and not _same_kind(value, default):
                raise PipelineError(f"{where}: {key} must be {type(default).__name__}; received {value!r}")
    flags = {k: recipe[k] for k in ("train_epochs", "prune", "cluster", "qat", "distill_from") if recipe.get(k)}
    if recipe.get("stages") is not None:
        if flags:
            raise PipelineError(f"{where}: give either stages or the stage flags ({', '.join(flags)}), not both")
        if not isinstance(recipe["stages"], list):
            raise PipelineError(f"{where}: stages must be a list of {{stage: {{params}}}}")
        stages = [make_stage(s) for s in recipe["stages"]]
        if recipe.get("quantize") is not None:
            stages.append(Export(recipe["quantize"]))
        Pipeline(stages)
    else:
        keys = set(inspect.signature(build_stages).parameters)
        Pipeline(build_stages(**{k: v for k, v in recipe.items() if k in keys and v is not None}))
        if not flags and recipe.get("quantize") is None:
            raise PipelineError(f"{where}: nothing to do", hint="add stages, stage flags (prune, cluster, qat, "
                                                               "distill_from, train_epochs) or quantize")
    return recipe


def _same_kind(value, default) -> bool:
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, str):
        return isinstance(value, str)
    return True


@dataclass
class RecipeResult:
    """What ``run_recipe`` did: the recipe file and keys used, and the CompressResult (report, export)."""

    recipe: str
    keys: dict
    result: Any

    @property
    def export(self):
        """The ExportResult of the recipe's export step (None without ``quantize``)."""
        return self.result.report.export

    @property
    def report(self):
        return self.result.report

    @property
    def stages(self):
        return self.result.stages

    @property
    def model_path(self):
        return self.result.model_path

    @property
    def artifacts(self) -> list[str]:
        return self.result.artifacts

    def to_dict(self) -> dict:
        from ._jsonable import to_jsonable

        return {"recipe": self.recipe, "keys": to_jsonable(self.keys), **self.result.to_dict()}

    def to_json(self, indent: int | None = 2) -> str:
        import json

        return json.dumps(self.to_dict(), indent=indent)


def run_recipe(path: str | os.PathLike, overrides: Mapping[str, Any] | None = None, *,
               progress: Progress = no_progress) -> RecipeResult:
    """Load, override (CLI options win over recipe keys), validate, then ``compress`` + export in one go."""
    from .compression.pipeline import compress

    recipe = load_recipe(path)
    if overrides:
        recipe = validate_recipe({**recipe, **{k: v for k, v in overrides.items() if v is not None}},
                                 where=f"{path} with overrides")
    args = {k: v for k, v in recipe.items() if k not in META_KEYS}
    model = args.pop("model")
    result = compress(model, progress=progress, **args)
    return RecipeResult(str(path), recipe, result)
