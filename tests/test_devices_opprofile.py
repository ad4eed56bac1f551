"""bench --profile-ops end to end: real onnxruntime per-op times joined with the per-layer mult-adds that export
records in the manifest, from any working directory."""
from __future__ import annotations

import json

import pytest

from edgekit.devices import opprofile


def test_an_old_manifest_with_a_relative_model_file_says_why_there_are_no_mult_adds(tmp_path, monkeypatch):
    """Manifests from before per-layer mult-adds were recorded: a relative model file is looked up from the cwd;
    when it is not there, the note says so and what to do."""
    monkeypatch.chdir(tmp_path)
    layers, why = opprofile.layer_mult_adds({"name": "tiny", "source": "models/tiny.keras", "options": {}})
    assert layers is None and "models/tiny.keras" in why and "re-export" in why, why


@pytest.mark.slow
def test_profile_ops_of_an_onnx_export_joins_mult_adds_from_another_directory(tmp_path, monkeypatch):
    """Export a model FILE given by a relative path, then bench --profile-ops from another directory: every conv op
    gets its layer's mult-adds (it was "-" everywhere: the manifest's relative source did not exist from there)."""
    from click.testing import CliRunner

    from edgekit._keras import keras, layers
    from edgekit.cli import main
    from edgekit.profiling import profile

    inp = keras.Input((32, 32, 3), name="image")
    x = layers.Conv2D(16, 3, padding="same", activation="relu", name="stem")(inp)
    x = layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = layers.Conv2D(32, 1, name="pw")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    model = keras.Model(inp, layers.Dense(10, name="logits")(x), name="tinyconv")
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    (work / "models").mkdir(parents=True)
    elsewhere.mkdir()
    model.save(work / "models" / "tinyconv.keras")
    expected = {layer.name: layer.mult_adds for layer in profile(model).layers}

    monkeypatch.chdir(work)
    r = CliRunner().invoke(main, ["export", "models/tinyconv.keras", "--format", "onnx", "--out", "out", "--json"])
    assert r.exit_code == 0, r.output
    art = work / "out" / "tinyconv_float32.onnx"
    man = json.loads((work / "out" / "tinyconv_float32.onnx.json").read_text())
    assert man["model"]["source"] == "models/tinyconv.keras"  # the model as given
    assert man["model"]["layer_mult_adds"] == expected

    monkeypatch.chdir(elsewhere)
    r = CliRunner().invoke(main, ["bench", str(art), "--profile-ops", "--runs", "20", "--warmup", "2",
                                  "--threads", "1", "--no-history", "--json", "-"])
    assert r.exit_code == 0, r.output
    (row,) = json.loads(r.output)
    prof = row["op_profile"]
    assert prof["available"] and "onnxruntime" in prof["runtime"] and "note" not in prof, prof
    by_layer = {o["layer"]: o for o in prof["ops"] if o["layer"]}
    for name in ("stem", "dw", "pw", "logits"):
        assert by_layer[name]["mult_adds"] == expected[name] > 0, (name, prof["ops"])
        assert by_layer[name]["avg_ms"] > 0 and by_layer[name]["ms_per_mmac"] > 0
    if prof["op_count"] <= len(prof["ops"]):  # every op listed: the shares add up
        assert sum(o["share"] for o in prof["ops"]) == pytest.approx(1.0)
