"""One name and one unit per quantity across results, JSON and CSV (issue 19): sizes and memory in bytes
(``*_bytes``), never ``*_mb``/``*_kb``; latency ``<stat>_ms`` (``p50_ms``, ``p50_ci_ms``), never ``latency_ms_p50``;
accuracy (and agreement, drops, budgets) a fraction 0..1; precisions by one vocabulary (float32, float16, dynamic,
int8, int16x8); one home for artifact top-1 and one function per name. Read from the source (every dataclass field
and every string key of a dict literal) and from results built here without TensorFlow."""
from __future__ import annotations

import ast
import functools
import json
import re
from pathlib import Path

import numpy as np
import pytest

PKG = Path(__file__).resolve().parents[1] / "edgekit"

#: a size or memory field in a unit other than bytes (MiB is for tables only, and named as such there)
SIZE_UNIT = re.compile(r"(^|_)(mb|kb|gb|mib|kib|gib|megabytes|kilobytes)$")
#: a percentile token (p5, p50, p99)
PERCENTILE = re.compile(r"(^|_)p\d+(_|$)")
#: keys holding an accuracy-like quantity: a fraction 0..1 (a drop: -1..1)
ACCURACY = re.compile(r"(accuracy|agreement|(^|_)drop$|^drop)")
#: dict literals that map the keys of older versions to today's (history reads rows written before the rename)
OLD_KEY_MAPS = {"_MIB_KEYS", "_RAW_MIB_KEYS"}


def bad_name(key: str) -> str | None:
    """Why ``key`` breaks the naming rule, or None."""
    if SIZE_UNIT.search(key):
        return "sizes and memory are bytes in results (*_bytes); MiB only in tables"
    if "_ms_" in key:
        return "the unit goes last: <stat>_ms (p50_ms), not latency_ms_p50"
    if PERCENTILE.search(key) and not key.endswith("_ms") and "_vs_" not in key:
        return "a latency percentile is <stat>_ms (p50_ms, p50_ci_ms)"
    return None


@functools.lru_cache(maxsize=1)
def _parsed() -> tuple:
    return tuple((path.relative_to(PKG.parent), ast.parse(path.read_text(), str(path)))
                 for path in sorted(PKG.rglob("*.py")))


def _sources():
    yield from _parsed()


def _is_dataclass(node: ast.ClassDef) -> bool:
    return any((isinstance(d, ast.Name) and d.id == "dataclass")
               or (isinstance(d, ast.Call) and getattr(d.func, "id", None) == "dataclass") for d in node.decorator_list)


def dataclass_fields():
    """(file, class, field, bases) of every dataclass in edgekit."""
    for rel, tree in _sources():
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and _is_dataclass(node):
                bases = {getattr(b, "id", getattr(b, "attr", "")) for b in node.bases}
                for stmt in node.body:
                    if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                        yield str(rel), node.name, stmt.target.id, bases


def dict_literal_keys():
    """(file, line, key) of every string key of a dict literal in edgekit (the JSON documents it builds)."""
    for rel, tree in _sources():
        skip = {id(n) for a in ast.walk(tree) if isinstance(a, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id in OLD_KEY_MAPS for t in a.targets) for n in ast.walk(a)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Dict) and id(node) not in skip:
                for k in node.keys:
                    if isinstance(k, ast.Constant) and isinstance(k.value, str):
                        yield str(rel), k.lineno, k.value


def walk(doc, where: str = "$"):
    """(path, key, value) of every mapping entry in a JSON document."""
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield f"{where}.{k}", str(k), v
            yield from walk(v, f"{where}.{k}")
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from walk(v, f"{where}[{i}]")


def problems(doc) -> list[str]:
    """Naming and scale problems of a JSON document (keys inside a ``*_ms`` mapping name statistics: exempt)."""
    found = []
    for where, key, value in walk(doc):
        parent = where.rsplit(".", 2)[-2] if where.count(".") > 1 else ""
        if (why := bad_name(key)) and not parent.endswith("_ms"):
            found.append(f"{where}: {why}")
        if ACCURACY.search(key):
            nums = value if isinstance(value, list) else [value]
            for v in nums:
                if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and not -1.0 <= v <= 1.0:
                    found.append(f"{where} = {v}: accuracy is a fraction 0..1 in results")
    return found


# ---------------------------------------------------------------------------------------------------- the source
def test_no_result_field_names_another_unit():
    bad = [f"{f}: {c}.{name}: {why}" for f, c, name, _ in dataclass_fields() if (why := bad_name(name))]
    assert not bad, "\n".join(bad)


def test_no_json_key_in_the_source_names_another_unit():
    """Bare statistic names (``p50``) are the keys of a ``latency_ms`` mapping: the unit is its name."""
    bad = [f"{f}:{line}: {key!r}: {why}" for f, line, key in dict_literal_keys()
           if (why := bad_name(key)) and not re.fullmatch(r"p\d+", key)]
    assert not bad, "\n".join(bad)


def test_results_say_precision_not_quantize():
    """``quantize`` is the option; every result names the quantity ``precision`` (one vocabulary)."""
    bad = [f"{f}: {c}.{name}" for f, c, name, bases in dataclass_fields() if name == "quantize" and "JsonMixin" in bases]
    assert not bad, bad


def test_one_home_for_artifact_top1_and_one_compare():
    """Artifact top-1 is computed in edgekit.exporters.verify (compress's report and the doctor's ladder call it),
    the share of correct predictions in edgekit.verification; one function is named ``compare`` (the command)."""
    owners: dict[str, set[str]] = {}
    for rel, tree in _sources():
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name in ("artifact_accuracy", "artifact_top1",
                                                                  "classifier_top1", "top1_accuracy", "compare"):
                owners.setdefault(node.name, set()).add(str(rel))
    assert owners == {"artifact_accuracy": {"edgekit/exporters/verify.py"},
                      "artifact_top1": {"edgekit/exporters/verify.py"},
                      "classifier_top1": {"edgekit/exporters/verify.py"},
                      "top1_accuracy": {"edgekit/verification.py"}, "compare": {"edgekit/devices/compare.py"}}, owners


def test_the_rules_catch_the_old_names():
    assert bad_name("size_mb") and bad_name("peak_memory_mb") and bad_name("latency_ms_p50") and bad_name("p50")
    assert not any(bad_name(k) for k in ("size_bytes", "p50_ms", "p50_ci_ms", "a_p50_ms", "p50_vs_plain_int8"))
    assert problems({"rungs": [{"accuracy": 91.2, "drop": 0.4}]}) == ["$.rungs[0].accuracy = 91.2: accuracy is a "
                                                                      "fraction 0..1 in results"]
    assert problems({"latency_ms": {"p50": 1.0}, "accuracy_drop_ci": [-0.01, 0.02]}) == []


# --------------------------------------------------------------------------------------------- results built here
def test_a_bench_row_holds_bytes_and_ms():
    from edgekit.devices.artifacts import ArtifactInfo
    from edgekit.devices.bench import SCHEMA, result
    from edgekit.devices.profiles import parse_device

    art = ArtifactInfo(path="m.tflite", model="m", format="tflite", precision="int8", size_bytes=3 * 2**20 + 5,
                       sha256="0" * 64)
    doc = {"tool": "runner", "runtime": {"name": "litert", "version": "1"}, "config": {"threads": 1},
           "latency_ms": {"count": 3, "mean": 1.0, "p50": 1.0}, "samples_ms": [1.0, 1.0, 1.0],
           "memory": {"peak_rss_bytes": 50 * 2**20, "overall_delta_bytes": 2**20}}
    row = result(art, parse_device("local"), doc).to_dict()
    assert row["size_bytes"] == 3 * 2**20 + 5 and row["peak_memory_bytes"] == 50 * 2**20
    assert row["memory_delta_bytes"] == 2**20 and row["p50_ms"] == 1.0 and row["schema"] == SCHEMA
    assert problems(row) == []


def test_doctor_results_are_fractions():
    from edgekit.doctor.evaluate import EvalSet
    from edgekit.doctor.ladder import Config, Measured, rung_from

    labels = np.array([0, 1, 1, 0])
    ev = EvalSet(np.zeros((4, 2, 2, 1), np.float32), labels, "test", labels, 1.0)
    assert ev.score(np.array([0, 1, 0, 0])) == 0.75
    rung = rung_from("plain int8", Measured(Config(), Path("x.tflite"), 0.75, 0.25, 1000), 0.01)
    assert rung.status == "over" and rung.precision == "int8" and problems(rung.to_dict()) == []
    assert rung_from("plain int8", Measured(Config(), Path("x.tflite"), 0.995, 0.005, 1000), 0.01).status == "within"


def test_verification_is_fractions():
    from edgekit.verification import verify_outputs

    rng = np.random.default_rng(0)
    ref = rng.random((200, 10)).astype(np.float32)
    ref /= ref.sum(1, keepdims=True)
    labels = ref.argmax(1)
    v = verify_outputs([ref], [ref * 0.999], precision="int8", labels=labels, num_classes=10)
    doc = v.to_dict()
    assert doc["artifact_accuracy"] == 1.0 and problems(doc) == []


def test_history_reads_rows_of_the_mib_schema(tmp_path):
    """A history written before edgekit.bench/2 (size_mb, peak_memory_mb in MiB) reads with the byte keys."""
    from edgekit.devices import history

    old = {"artifact": "m.tflite", "sha256": "a" * 64, "device": "local", "status": "ok", "p50_ms": 2.0,
           "size_mb": 1.5, "peak_memory_mb": 40.25, "memory_delta_mb": None, "precision": "int8",
           "raw": {"memory": {"peak_rss_mb": 40.25, "start_rss_mb": 30.0}}}
    new = {"artifact": "m.tflite", "sha256": "a" * 64, "device": "local", "status": "ok", "p50_ms": 2.1,
           "size_bytes": 1572864, "peak_memory_bytes": 42205184, "schema": history.SCHEMA, "precision": "int8"}
    path = tmp_path / "h.jsonl"
    path.write_text(json.dumps(old) + "\n" + json.dumps(new) + "\n")
    a, b = history.read(path)
    assert a["size_bytes"] == 1572864 and a["peak_memory_bytes"] == 42205184 and a["memory_delta_bytes"] is None
    assert a["raw"]["memory"] == {"peak_rss_bytes": 42205184, "start_rss_bytes": 30 * 2**20}
    assert a["schema"] == history.SCHEMA and a["upgraded_from"] == "edgekit.bench/1" and "size_mb" not in a
    assert b == new
    rows = history.load(path)
    assert [r["size_bytes"] for r in rows] == [1572864, 1572864] and rows[1]["change"] == pytest.approx(1.05)
    assert all(problems(r) == [] for r in rows)


# ------------------------------------------------------------------------------------------ one precision vocabulary
def test_one_precision_vocabulary_with_documented_aliases():
    from edgekit.errors import UnknownNameError
    from edgekit.specs import ExportSpec
    from edgekit.specs.formats import FORMATS, PRECISIONS, precision_tokens

    names = ["float32", "float16", "dynamic", "int8", "int16x8"]
    assert PRECISIONS.list() == sorted(names)
    assert all(set(e.obj.precisions) <= set(names) for e in FORMATS.entries())
    assert {label for _, label in precision_tokens()} == set(names)
    # the old spellings are aliases that map explicitly (the spec stores the name); the headline is unchanged
    assert ExportSpec(model="m", quantize="none").quantize == "float32"
    assert ExportSpec(model="m", quantize="fp16").quantize == "float16"
    assert ExportSpec(model="m", quantize="int8").quantize == "int8"
    assert ExportSpec(model="m").quantize == "float32"
    with pytest.raises(UnknownNameError) as info:
        ExportSpec(model="m", quantize="fp8")
    assert "did you mean" in info.value.hint


def test_cli_help_documents_the_aliases():
    from click.testing import CliRunner

    from edgekit.cli import main

    text = " ".join(CliRunner().invoke(main, ["export", "--help"]).output.split())
    assert "float32, float16, dynamic" in text and "none = float32, fp16 = float16" in text


def test_a_sweep_folder_of_the_mib_schema_resumes(tmp_path):
    """A sweep store of edgekit.sweep/1 is read: its records are reused, a measurement's row mapped to bytes."""
    from edgekit.sweep.store import SCHEMA, Store

    old = {"schema": "edgekit.sweep/1", "status": "ok",
           "result": {"p50_ms": 1.0, "size_mb": 0.5, "peak_memory_mb": 10.0, "status": "ok"}}
    (tmp_path / "b.json").write_text(json.dumps(old))
    rec = Store.read(tmp_path / "b.json")
    assert rec["result"]["peak_memory_bytes"] == 10 * 2**20 and rec["result"]["size_bytes"] == 2**19
    assert problems(rec) == []
    Store.write(tmp_path / "n.json", {"status": "ok", "result": {"peak_memory_bytes": 5}})
    assert Store.read(tmp_path / "n.json")["schema"] == SCHEMA == "edgekit.sweep/2"
    (tmp_path / "x.json").write_text(json.dumps({**old, "schema": "edgekit.sweep/0"}))
    assert Store.read(tmp_path / "x.json") is None
