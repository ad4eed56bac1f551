"""Recipes in export/: every file validates (schema = compress() arguments); bad recipes fail before training."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from edgekit.errors import InvalidArgument, PipelineError
from edgekit.recipes import load_recipe, recipe_keys, run_recipe, validate_recipe

REPO = Path(__file__).resolve().parents[1]
RECIPES = sorted(p for p in (REPO / "export").glob("*.yaml") if not p.name.endswith(".sweep.yaml"))  # sweep configs
BASE = {"model": "mobilenet_v1", "alpha": 0.25, "resolution": 32, "input_channels": 1, "classes": 10,
        "weights": "none", "data": "fashion-mnist"}


def test_export_folder_has_recipes():
    assert len(RECIPES) >= 4


@pytest.mark.parametrize("path", RECIPES, ids=[p.name for p in RECIPES])
def test_recipe_validates(path):
    recipe = load_recipe(path)
    assert recipe["model"] and recipe["data"]
    assert recipe.get("name") == path.stem  # a recipe names itself after its file
    assert recipe.get("quantize") == "int8"
    assert str(recipe.get("out", "")).startswith("artifacts/")  # never into a tracked folder


def test_recipe_keys_are_the_compress_arguments():
    import inspect

    from edgekit.compression import compress

    keys = set(recipe_keys())
    assert set(inspect.signature(compress).parameters) - {"progress", "callbacks", "spec", "provenance"} <= keys
    assert {"alpha", "resolution", "weights", "name"} <= keys


@pytest.mark.parametrize("extra, words", [
    ({"prunne": 0.5, "quantize": "int8"}, "did you mean 'prune'"),
    ({"prune": 0.5, "stages": [{"prune": 0.5}]}, "either stages or the stage flags"),
    ({"stages": [{"cluster": 16}, {"prune": 0.5}]}, "prune after cluster"),
    ({"stages": ["qat"], "quantize": "dynamic"}, "qat then a 'dynamic' export"),
    ({"qat": True, "quantize": "fp16"}, "qat then a 'float16' export"),
    ({"stages": [{"prune": {"sparsity": 0.5, "epoch": 2}}]}, "did you mean 'epochs'"),
    ({"prune": "half", "quantize": "int8"}, "sparsity must be in (0, 1)"),
    ({"train_epochs": "4", "quantize": "int8"}, "train_epochs must be int"),
    ({}, "nothing to do"),
])
def test_bad_recipe_fails_validation(extra, words):
    with pytest.raises(PipelineError) as info:
        validate_recipe({**BASE, **extra})
    assert words in str(info.value)


def test_missing_model_and_unreadable_file(tmp_path):
    with pytest.raises(PipelineError, match="missing required key 'model'"):
        validate_recipe({"data": "fashion-mnist", "quantize": "int8"})
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(PipelineError, match="not valid YAML"):
        load_recipe(bad)
    with pytest.raises(InvalidArgument, match="does not exist"):
        load_recipe(tmp_path / "nope.yaml")


def test_overrides_are_validated_too(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({**BASE, "prune": 0.5, "quantize": "int8"}))
    with pytest.raises(PipelineError, match="qat then a 'dynamic' export"):
        run_recipe(path, {"qat": True, "quantize": "dynamic"})


@pytest.mark.slow
def test_run_recipe_end_to_end(tmp_path, trained_mnv1):
    """Verification on (the default); the manifest records the recipe, the model as the recipe names it, the stages
    and the real data (a recipe's manifest said `source: keras.Model object`, `options: {}` and a deleted .npz)."""
    path = tmp_path / "tiny.yaml"
    recipe = {**BASE, "weights": trained_mnv1}  # trained (conftest.trained_mnv1): int8 verification means something
    path.write_text(yaml.safe_dump({**recipe, "name": "tiny", "limit": 2048, "test_limit": 128, "train_epochs": 1,
                                    "cluster": 8, "cluster_epochs": 1, "quantize": "int8", "calib_samples": 100,
                                    "out": str(tmp_path / "out")}))
    res = run_recipe(path, {"seed": 0})
    man = json.loads(Path(str(res.export.artifacts[0].path) + ".json").read_text())
    assert man["model"]["source"] == "mobilenet_v1"
    assert man["model"]["options"] == {k: recipe[k] for k in ("alpha", "resolution", "input_channels", "classes",
                                                               "weights")}
    assert man["pipeline"]["recipe"] == str(path) and man["pipeline"]["recipe_name"] == "tiny"
    assert man["pipeline"]["overrides"] == {"seed": 0} and man["pipeline"]["data"] == "fashion-mnist"
    assert [list(s) for s in man["pipeline"]["stages"]] == [["train"], ["cluster"]]
    assert man["pipeline"]["stages"][1]["cluster"]["clusters"] == 8
    assert man["calibration"]["source"] == "fashion-mnist:train" and "fashion-mnist:test" in man["verification_data"]
    assert man["verification"]["status"] == "passed" and man["verification"]["keras_accuracy"] > 0.4
    assert res.stages == ["train", "cluster", "export"]
    assert res.export.artifacts[0].path.suffix == ".tflite"  # engineer 2's ExportResult
    art = res.report.artifacts[0]
    # 8 shared float values per kernel stay <= 8 int8 values per output channel (per-channel scales)
    clustered = [t for t in art.weights.per_tensor if (t["max_unique_per_channel"] or 99) <= 8]
    assert len(clustered) == 13  # conv_pw_1..13 (stem conv and classifier skipped; depthwise not clusterable)
    assert art.weights.clustered_max_unique <= 8  # the report matched the clustered layers to .tflite tensors
    assert Path(res.report.report_json).is_file() and res.to_dict()["recipe"] == str(path)


@pytest.mark.parametrize("text, message, hint", [
    # a value of the wrong type whose default is None was an internal error
    ("test_limit: lots\n", "test_limit must be int > 0; received 'lots'", "a whole number > 0"),
    ("prune: half\n", "prune: sparsity must be in (0, 1); received 'half'", "0.5 for half"),
    ("calib_samples: [1, 2]\n", "calib_samples must be int", "calib_samples"),
    ("verify: maybe\n", "verify must be true or false", "verify: true"),
])
def test_bad_value_in_a_recipe_file_names_key_and_fix(tmp_path, text, message, hint):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({**BASE, "quantize": "int8"}) + text)
    with pytest.raises(PipelineError) as info:
        load_recipe(path)
    assert str(path) in info.value.message and message in info.value.message
    assert info.value.hint and hint in info.value.hint


def test_yaml_syntax_error_keeps_line_and_column(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("model: mobilenet_v1\ndata: fashion-mnist\nquantize: [int8\nout: x\n")
    with pytest.raises(PipelineError) as info:
        load_recipe(path)
    assert "not valid YAML" in info.value.message and "line 4, column 4" in info.value.message
    assert f"{path}:4:4" in info.value.hint


@pytest.mark.parametrize("text", ["just a string\n", "- a\n- list\n", ""])
def test_a_recipe_that_is_not_a_mapping_gets_a_hint(tmp_path, text):
    path = tmp_path / "scalar.yaml"
    path.write_text(text)
    with pytest.raises(PipelineError) as info:
        load_recipe(path)
    assert "must be a mapping" in info.value.message and "key: value" in info.value.hint


def test_a_plain_export_recipe_runs_export_not_compress(tmp_path, monkeypatch):
    """A recipe without data and stages (what `edgekit doctor` writes) is an export: ExportSpec keys only."""
    import edgekit.exporters as exporters
    from edgekit.specs import ExportSpec

    path = tmp_path / "plain.yaml"
    path.write_text(yaml.safe_dump({"name": "plain", "model": "mobilenet_v1", "alpha": 0.25, "quantize": "int8",
                                    "calib_data": "fashion-mnist", "float_layers": ["conv_pw_1"]}))
    seen = []
    monkeypatch.setattr(exporters, "export", lambda *a, **k: seen.append(k) or "exported")
    res = run_recipe(path)
    assert res.result == "exported" and isinstance(seen[0]["spec"], ExportSpec)
    assert seen[0]["spec"].float_layers == ("conv_pw_1",) and seen[0]["provenance"]["recipe"] == str(path)
    path.write_text(yaml.safe_dump({"model": "mobilenet_v1", "quantize": "int8", "prune_epochs": 2}))
    with pytest.raises(PipelineError, match="prune_epochs need training data"):
        load_recipe(path)
