"""The package's structure, read from its source (AST, every import, also those inside functions): the layers and
their one direction, no import circle, function-level imports only where they keep TensorFlow or an optional package
lazy, one home per structural concept.

``python -m pytest -n 0 -q tests/test_architecture.py`` checks it; ``python tests/test_architecture.py`` prints the
counts (modules, import edges, circles, upward imports, function-level imports by kind)."""
from __future__ import annotations

import ast
import sys
from collections import Counter
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "edgekit"

#: bottom to top; a module may import its own layer and the layers below it, never one above (not even inside a
#: function). A module is in the layer of its longest listed prefix; every module must be in one.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("core", ("edgekit.__init__", "edgekit.errors", "edgekit._io", "edgekit.registry", "edgekit._spec",
              "edgekit._spec_fields", "edgekit._units", "edgekit._jsonable", "edgekit._progress", "edgekit._signals",
              "edgekit._native", "edgekit._layers", "edgekit._keras", "edgekit._keras3", "edgekit._tflite",
              "edgekit._tflite_metadata", "edgekit._tflite_metadata_schema", "edgekit._verify_data",
              "edgekit.verification", "edgekit._chance")),  # verification: the verdict, no TensorFlow
    ("specs", ("edgekit.specs",)),  # plain data + the format/precision table (edgekit.specs.formats): no TensorFlow
    ("models, data, runtimes", ("edgekit.models", "edgekit.data", "edgekit.runtimes", "edgekit.profiling",
                                "edgekit.zoo")),
    ("exporters", ("edgekit.exporters",)),
    ("packaging", ("edgekit.packaging",)),  # update packages; packaging.format restores them (shipped to devices)
    ("devices", ("edgekit.devices",)),
    ("compression", ("edgekit.compression",)),
    ("doctor", ("edgekit.doctor",)),
    ("sweep, recipes", ("edgekit.sweep", "edgekit.recipes")),
    ("cli", ("edgekit.cli",)),
]

#: third-party packages that may be imported inside a function (TensorFlow/Keras/tfmot, optional extras, their parts)
LAZY_THIRD_PARTY = {"tensorflow", "tf_keras", "keras", "tensorflow_model_optimization", "ai_edge_litert",
                    "tflite_runtime", "onnx", "onnxruntime", "tf2onnx", "paramiko", "matplotlib", "sklearn", "ray",
                    "mediapipe", "h5py", "flatbuffers", "google"}

#: first-party function-level imports without that reason that are left (module -> count; 173 before the layering):
#: most are the CLI's calls of its API (tests replace the API function on its module) and names the tests replace
#: (bench, export, train, load, fit), which the code must therefore look up when it runs. The count may only go down; a new one fails (import at module level).
FIRST_PARTY_LAZY_BASELINE: dict[str, int] = {"edgekit._keras": 1, "edgekit.cli._bench_output": 1,
    "edgekit.cli.bench": 2, "edgekit.cli.compare": 1, "edgekit.cli.history": 1,
    "edgekit.cli.compress": 3, "edgekit.cli.devices": 4, "edgekit.cli.doctor": 1, "edgekit.cli.export": 6,
    "edgekit.cli.models": 2, "edgekit.cli.sweep": 3, "edgekit.compression.artifacts": 2,
    "edgekit.compression.distill": 2, "edgekit.compression.stages": 1, "edgekit.doctor.ladder": 1,
    "edgekit.doctor.ladder_run": 1, "edgekit.exporters._api": 1, "edgekit.recipes": 4, "edgekit.sweep.plan": 1,
    "edgekit.sweep.runner": 3}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def imports(mods: dict[str, Path]) -> list[tuple[str, str, bool, int]]:
    """``(importer, imported, at module level, line)``; ``imported`` is a module of the package where the name is
    one (``from . import x``), else the module named."""
    found = []
    for mod, path in mods.items():
        tree = ast.parse(path.read_text(), str(path))
        in_function = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                       for n in ast.walk(f) if isinstance(n, (ast.Import, ast.ImportFrom))}
        package = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
        for node in ast.walk(tree):
            top = id(node) not in in_function
            if isinstance(node, ast.Import):
                found += [(mod, a.name, top, node.lineno) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = (".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else []))
                        if node.level else node.module)
                for a in node.names:
                    sub = f"{base}.{a.name}"
                    found.append((mod, sub if sub in mods else base, top, node.lineno))
    return found


def layer_of(mod: str) -> int | None:
    best = None
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (mod == "edgekit" and p == "edgekit.__init__") or mod == p or mod.startswith(p + "."):
                if best is None or len(p) > best[1]:
                    best = (i, len(p))
    return None if best is None else best[0]


def heavy_modules(mods, edges) -> set[str]:
    """First-party modules that import TensorFlow or an optional package when imported (module-level imports,
    transitively): importing them inside a function keeps that cost off the paths that do not need it."""
    top = {m: {d for s, d, t, _ in edges if s == m and t} for m in mods}
    heavy: set[str] = set()
    while True:
        more = {m for m in mods if m not in heavy and any(d.split(".")[0] in LAZY_THIRD_PARTY or d in heavy
                                                          for d in top[m])}
        if not more:
            return heavy
        heavy |= more


def circles(mods, edges) -> list[list[str]]:
    """Strongly connected groups (> 1 module) of the package's import graph, function-level imports included."""
    graph = {m: sorted({d for s, d, _, _ in edges if s == m and d in mods and d != m}) for m in mods}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for m in graph:
        if m not in index:
            visit(m)
    return found


def survey() -> dict:
    mods = modules()
    edges = imports(mods)
    heavy = heavy_modules(mods, edges)
    upward = sorted({(s, ln, d) for s, d, _, ln in edges if d in mods and layer_of(d) > layer_of(s)})
    kinds: Counter = Counter()
    no_reason: Counter = Counter()
    statements = {}
    for s, d, t, ln in edges:
        if not t:
            statements.setdefault((s, ln), d)
    for (s, ln), d in statements.items():
        if not d.startswith("edgekit"):
            kinds["TensorFlow/optional package" if d.split(".")[0] in LAZY_THIRD_PARTY
                  else "standard library/required package"] += 1
        elif d in heavy:
            kinds["first-party module that imports TensorFlow/optional"] += 1
        else:
            kinds["first-party, no such reason"] += 1
            no_reason[s] += 1
    return {"modules": mods, "edges": edges, "circles": circles(mods, edges), "upward": upward, "kinds": kinds,
            "no_reason": no_reason, "unplaced": sorted(m for m in mods if layer_of(m) is None)}


@pytest.fixture(scope="module")
def found():
    return survey()


def test_every_module_has_a_layer(found):
    assert found["unplaced"] == [], "add these modules to a layer in tests/test_architecture.py LAYERS"


def test_no_import_runs_up_the_layers(found):
    """Also inside functions: a lower layer never imports a higher one (the higher one composes the two)."""
    names = [n for n, _ in LAYERS]
    assert [f"{s}:{ln} -> {d} ({names[layer_of(s)]} -> {names[layer_of(d)]})"
            for s, ln, d in found["upward"]] == []


def test_no_import_circle(found):
    assert found["circles"] == []


def test_function_level_imports_only_keep_heavy_modules_lazy(found):
    """A first-party import inside a function is there to keep TensorFlow or an optional package lazy; any other
    belongs at module level (where readers and tools see it)."""
    grown = {m: n for m, n in found["no_reason"].items() if n > FIRST_PARTY_LAZY_BASELINE.get(m, 0)}
    assert grown == {}


def test_specs_import_no_tensorflow_and_nothing_above_them():
    """The specs and the format table are plain data: importing them loads no TensorFlow, no exporter, no stage."""
    import subprocess

    code = ("import sys, edgekit.specs, edgekit.specs.formats; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tf_keras', 'keras') or "
            "m.startswith(('edgekit.exporters', 'edgekit.compression', 'edgekit.doctor', 'edgekit.devices'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_one_budget_not_met():
    """Catching edgekit.errors.BudgetNotMet catches the sweep's too: one class."""
    from types import SimpleNamespace

    from edgekit import errors, sweep
    from edgekit.sweep.api import budget_not_met

    assert sweep.BudgetNotMet is errors.BudgetNotMet
    result = SimpleNamespace(picks=[SimpleNamespace(device="pi", fits=False)], budget_ms=2.0, metric="p50")
    exc = budget_not_met(result)
    assert isinstance(exc, errors.BudgetNotMet) and exc.result is result and exc.exit_code == 1
    assert exc.message == "no point fits within 2 ms p50 on pi"


def test_one_format_table():
    """Exporters read their format data from the specs-level table; nothing else defines it."""
    from edgekit.exporters import EXPORTERS, PRECISIONS
    from edgekit.specs import formats

    assert PRECISIONS is formats.PRECISIONS
    for e in EXPORTERS.entries():
        row = formats.FORMATS.get(e.name)
        assert (e.obj.suffix, e.obj.runtime, e.obj.precisions, e.obj.io_types, e.obj.per_tensor, e.obj.qat,
                e.obj.calibration_methods) == (row.suffix, row.runtime, row.precisions, row.io_types,
                                               row.per_tensor, row.qat, row.calibration_methods)


def test_one_sqnr_one_verification():
    """SQNR, its cap, the per-precision tolerances and the verification result type have one home
    (edgekit.verification): no other module defines them (doctor/stats and exporters/verify each had a SQNR and a
    cap; devices/parity had its own result types)."""
    owners = {}
    for mod, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([t.id for t in node.targets if isinstance(t, ast.Name)] if isinstance(node, ast.Assign) else
                     [node.name] if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.col_offset == 0
                     else [])
            for n in names:
                if n in ("SQNR_CAP_DB", "sqnr", "sqnr_db", "THRESHOLDS", "TOLERANCES", "Verification", "OutputCheck",
                         "OutputParity"):
                    owners.setdefault(n, set()).add(mod)
    assert all(mods == {"edgekit.verification"} for mods in owners.values()), owners


if __name__ == "__main__":
    f = survey()
    print(f"modules: {len(f['modules'])}; import edges: {len(f['edges'])}")
    print(f"circles: {len(f['circles'])} {[len(c) for c in f['circles']]}")
    for c in f["circles"]:
        print("  ", " ".join(c))
    print(f"upward imports: {len(f['upward'])}")
    for s, ln, d in f["upward"]:
        print(f"   {s}:{ln} -> {d}")
    print(f"function-level imports: {sum(f['kinds'].values())}")
    for k, n in f["kinds"].most_common():
        print(f"   {n:4d} {k}")
