"""The public surface: ``edgekit/__init__.py`` (exactly the names below, each documented) and the CLI define it; a
subpackage's ``__all__`` lists only names those two use. One calling style: operations take their spec or the same
keywords and return result objects; ``edgekit.doctor`` and ``edgekit.sweep`` are plain packages whose operation is
the plain function ``run``. No TensorFlow is imported here."""
from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import re
import types
from pathlib import Path

import pytest

import edgekit

PKG = Path(edgekit.__file__).parent

#: the top-level surface, exactly
SURFACE = {
    "__version__",
    "create_model", "list_models", "profile", "load_data",
    "export", "ExportResult", "inspect",
    "Pipeline", "PipelineResult", "compress", "CompressResult", "train", "TrainResult", "run_recipe",
    "bench", "BenchResult", "compare", "Comparison",
    "sweep", "SweepResult", "doctor", "DoctorResult",
    "package", "unpack", "PackageResult",
    "EdgekitError",
}
SUBPACKAGES = ("compression", "data", "devices", "doctor", "exporters", "models", "packaging", "specs", "sweep")


def test_the_top_level_surface_is_exactly_the_listed_names():
    assert set(edgekit.__all__) == SURFACE and len(edgekit.__all__) == len(SURFACE)
    assert set(dir(edgekit)) >= SURFACE


@pytest.mark.parametrize("name", sorted(SURFACE - {"__version__"}))
def test_every_public_name_has_its_own_docstring(name):
    obj = getattr(edgekit, name)
    doc = inspect.getdoc(obj) or ""
    if dataclasses.is_dataclass(obj):  # a dataclass without a docstring gets its signature as one
        assert not doc.startswith(f"{obj.__name__}("), f"{name} has no docstring of its own"
    assert len(doc.split()) >= 3, f"edgekit.{name} has no docstring"


def test_doctor_and_sweep_are_plain_packages_with_a_plain_run():
    """No module whose class was swapped to make it callable: the operation is a plain function."""
    from edgekit import doctor, errors, sweep
    from edgekit.specs import DoctorSpec
    from edgekit.sweep import SweepSpec

    for pkg, spec_cls in ((doctor, DoctorSpec), (sweep, SweepSpec)):
        assert type(pkg) is types.ModuleType and not callable(pkg)
        assert isinstance(pkg.run, types.FunctionType) and pkg.run.spec_class is spec_cls
        assert pkg.run.__module__.startswith(pkg.__name__)
    assert sweep.BudgetNotMet is errors.BudgetNotMet


def _used_by_facade_and_cli() -> dict[str, set[str]]:
    """Package -> the names edgekit/__init__.py (its lazy table) and the CLI (its imports, its declared APIs) take
    from it."""
    used: dict[str, set[str]] = {}
    init = (PKG / "__init__.py").read_text()
    for module, attr in re.findall(r'\("(edgekit\.[\w.]+)", "(\w+)"\)', init):
        used.setdefault(module, set()).add(attr)
    for path in sorted((PKG / "cli").glob("*.py")):
        text = path.read_text()
        for module, attr in re.findall(r'"(edgekit\.[\w.]+):(\w+)"', text):  # @spec_command(..., "module:function")
            used.setdefault(module, set()).add(attr)
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ImportFrom) and node.level == 2 and node.module:  # also from a package's module
                for package in {node.module, node.module.split(".")[0]}:
                    used.setdefault(f"edgekit.{package}", set()).update(a.name for a in node.names)
    return used


@pytest.mark.parametrize("name", SUBPACKAGES)
def test_subpackage_all_lists_only_what_the_facade_and_the_cli_use(name):
    module = importlib.import_module(f"edgekit.{name}")
    public = list(module.__all__)
    assert len(public) == len(set(public))
    assert all(hasattr(module, n) for n in public)
    extra = set(public) - _used_by_facade_and_cli().get(f"edgekit.{name}", set())
    # the config type of a public API (Pipeline.run's config) is public with it
    assert extra <= ({"FitSpec"} if name == "specs" else set()), f"edgekit.{name}.__all__ has internals: {extra}"


def test_operations_take_their_spec_and_return_result_objects():
    from edgekit.compression import compress, train
    from edgekit.compression.pipeline import Pipeline
    from edgekit.devices import bench, check, compare

    for fn in (bench, compare, check, compress, train, edgekit.doctor.run, edgekit.sweep.run, edgekit.package,
               edgekit.unpack):
        assert "spec" in inspect.signature(fn).parameters and fn.spec_class is not None, fn.__name__
    for fn, result in ((train, "TrainResult"), (Pipeline.run, "PipelineResult"), (compare, "Comparison")):
        assert inspect.signature(fn).return_annotation == result
