"""Recipes: one YAML file in ``export/`` = one reproducible compress + export run.

The schema is :class:`edgekit.specs.CompressSpec`: every top-level key is an argument of
:func:`edgekit.compression.compress` (the same name as the CLI option, ``_`` for ``-``), including ``model``, the
model options of ``edgekit.models.create`` and ``data``, plus the free-text ``name``/``description``. A recipe
without ``data`` and without stages is a plain export (:class:`edgekit.specs.ExportSpec`, run by
:func:`edgekit.exporters.export`), e.g. what ``edgekit doctor`` writes. Stages come
either as flags (``prune: 0.5``, ``cluster: 16``, ``qat: true``, ``distill_from: mobilenet_v1``) or as an explicit
``stages:`` list of ``{stage: {params}}``. ``quantize`` (with ``formats``, ``calib_samples``, ``out`` ...) adds the
export. Validation (unknown keys with a did-you-mean, value types, stage names and parameters, stage order, QAT
then non-int8 export) happens before any training. Relative paths (``out``, ``data`` folders, ``save_model``) are
relative to the working directory.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ._progress import Progress, no_progress
from .errors import InvalidArgument, PipelineError, did_you_mean
from ._jsonable import to_jsonable
from .compression.api import compress
from .specs import ExportSpec

META_KEYS = ("name", "description")


def recipe_keys() -> list[str]:
    """Every key a recipe may hold."""
    from .specs import CompressSpec, ExportSpec

    keys = [*META_KEYS, *CompressSpec.recipe_keys()]
    return keys + [k for k in ExportSpec.recipe_keys() if k not in keys]


def load_recipe(path: str | os.PathLike) -> dict[str, Any]:
    """Read a recipe file (YAML mapping) and validate it; returns the validated mapping."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise InvalidArgument(f"recipe {str(p)!r} does not exist", hint="recipes live in export/*.yaml")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f"{p}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(p)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise PipelineError(f"recipe {str(p)!r} is not valid YAML: {problem} (line "
                            f"{mark.line + 1 if mark else '?'}, column {mark.column + 1 if mark else '?'})",
                            hint=f"fix the YAML at {where} (one `key: value` per line; lists in [...] or "
                                 "'- item' lines)") from exc
    if not isinstance(data, dict):
        raise PipelineError(f"recipe {str(p)!r} must be a mapping of keys to values; it holds "
                            f"{'nothing' if data is None else type(data).__name__ + ' ' + repr(data)[:60]}",
                            hint="write one `key: value` per line, e.g. `model: mobilenet_v1`, `data: "
                                 "fashion-mnist`, `quantize: int8` (see export/*.yaml)")
    return validate_recipe(data, where=f"recipe {p}")


def validate_recipe(recipe: Mapping[str, Any], *, where: str = "recipe") -> dict[str, Any]:
    """Check keys (did-you-mean), required keys, value types, stages and their order; no model is built."""
    recipe_spec(recipe, where=where)
    return dict(recipe)


def is_export_recipe(recipe: Mapping[str, Any]) -> bool:
    """True for a plain export recipe: no ``data``, no ``stages``, no stage flag."""
    from .specs.compress import CompressSpec

    flags = [f.name for f in CompressSpec.field_infos() if f.meta.extra.get("enables")]
    return recipe.get("data") is None and recipe.get("stages") is None and not any(recipe.get(f) for f in flags)


def recipe_spec(recipe: Mapping[str, Any], *, where: str = "recipe"):
    """The spec of a recipe mapping, validated: a :class:`CompressSpec`, or an :class:`ExportSpec` for a plain
    export recipe (``name``/``description`` are free text)."""
    from .specs import CompressSpec, ExportSpec

    known = recipe_keys()
    for key in recipe:
        if key not in known:
            raise PipelineError(f"{where}: unknown key {key!r}", hint=did_you_mean(str(key), known)
                                or f"known keys: {', '.join(known)}")
    for key in META_KEYS:
        if recipe.get(key) is not None and not isinstance(recipe[key], str):
            raise PipelineError(f"{where}: {key} must be text; received {recipe[key]!r}")
    if not isinstance(recipe.get("model", ""), (str, os.PathLike)):
        raise PipelineError(f"{where}: model must be a zoo name or a model file path")
    keys = {k: v for k, v in recipe.items() if k not in META_KEYS}
    if is_export_recipe(recipe):
        unknown = [k for k in keys if k not in ExportSpec.recipe_keys()]
        if unknown:
            raise PipelineError(f"{where}: {', '.join(unknown)} need training data: add data (and a stage or "
                                "quantize), or drop them for a plain export")
        try:
            return ExportSpec.from_dict(keys, where=where)
        except InvalidArgument as exc:
            if isinstance(exc, PipelineError) or type(exc) is not InvalidArgument:
                raise
            raise PipelineError(exc.message, hint=exc.hint) from exc
    return CompressSpec.from_dict(keys, where=where)


@dataclass
class RecipeResult:
    """What ``run_recipe`` did: the recipe file and keys used, and the CompressResult (report, export) or, for a
    plain export recipe, the ExportResult."""

    recipe: str
    keys: dict
    result: Any

    @property
    def compressed(self) -> bool:
        return hasattr(self.result, "report")

    @property
    def export(self):
        """The ExportResult of the recipe's export step (None without ``quantize``)."""
        return self.result.report.export if self.compressed else self.result

    @property
    def report(self):
        return self.result.report if self.compressed else None

    @property
    def stages(self):
        return self.result.stages if self.compressed else ["export"]

    @property
    def model_path(self):
        return self.result.model_path if self.compressed else None

    @property
    def artifacts(self) -> list[str]:
        return self.result.artifacts if self.compressed else [str(p) for p in self.result.paths]

    def to_dict(self) -> dict:
        return {"recipe": self.recipe, "keys": to_jsonable(self.keys), **self.result.to_dict()}

    def to_json(self, indent: int | None = 2) -> str:
        import json

        return json.dumps(self.to_dict(), indent=indent)


def run_recipe(path: str | os.PathLike, overrides: Mapping[str, Any] | None = None, *,
               progress: Progress = no_progress) -> RecipeResult:
    """Load, override (CLI options win over recipe keys), validate, then ``compress`` + export in one go (or only
    ``export`` for a plain export recipe)."""

    recipe = load_recipe(path)
    if overrides:
        recipe = {**recipe, **{k: v for k, v in overrides.items() if v is not None}}
    spec = recipe_spec(recipe, where=f"recipe {path}" + (" with overrides" if overrides else ""))
    run = {"recipe": str(path), "recipe_name": recipe.get("name"), "overrides": dict(overrides or {}) or None}
    run = {k: v for k, v in run.items() if v is not None}
    if isinstance(spec, ExportSpec):
        from .doctor import export

        return RecipeResult(str(path), recipe, export(spec=spec, progress=progress, provenance=run))

    return RecipeResult(str(path), recipe, compress(spec=spec, progress=progress, provenance=run))
