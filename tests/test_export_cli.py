"""``edgekit export`` / ``edgekit inspect`` through click's CliRunner: exit codes, --json, tables, recipes."""
from __future__ import annotations

import json
import sys
import types

import pytest
from click.testing import CliRunner

from edgekit.cli import main


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    from edgekit._keras import keras, layers

    inp = keras.Input((16, 16, 1))
    x = layers.Conv2D(8, 3, padding="same")(inp)
    x = layers.GlobalAveragePooling2D()(x)
    m = keras.Model(inp, layers.Dense(10, activation="softmax")(x), name="clinet")
    path = tmp_path_factory.mktemp("cli") / "clinet.keras"
    m.save(path)
    return path


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.mark.slow
def test_export_model_file_json(model_file, tmp_path, fashion_mnist_available):
    r = run("export", model_file, "--quantize", "int8", "--format", "tflite,onnx", "--calib-data", "fashion-mnist",
            "--calib-samples", 100, "--verify-samples", 20, "--out", tmp_path, "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["model"] == "clinet" and data["precision"] == "int8"
    assert data["calibration"]["kind"] == "data" and data["calibration"]["count"] == 100
    names = sorted(a["path"].rsplit("/", 1)[-1] for a in data["artifacts"])
    assert names == ["clinet_int8.onnx", "clinet_int8.tflite"]
    assert all(a["verification"]["passed"] for a in data["artifacts"])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names + [n + x for n in names
                                                                         for x in (".json", ".verify.npz")])

    r = run("inspect", tmp_path / "clinet_int8.tflite", "--json")
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert rep["precision"] == "int8" and rep["ops"]["CONV_2D"] == 1

    r = run("inspect", tmp_path / "clinet_int8.onnx")
    assert r.exit_code == 0 and "QuantizeLinear" in r.stdout and "weights" in r.stdout


@pytest.mark.slow
def test_export_zoo_model_table(tmp_path, fashion_mnist_available):
    r = run("export", "mobilenet_v1", "--alpha", 0.25, "--resolution", 32, "--input-channels", 1, "--classes", 10,
            "--weights", "none", "--quantize", "fp16", "--verify-data", "fashion-mnist", "--verify-samples", 10,
            "--out", tmp_path)
    assert r.exit_code == 0, r.output
    art = tmp_path / "mobilenet_v1_0.25_32_1ch_10cls_float16.tflite"
    assert art.is_file() and (tmp_path / (art.name + ".json")).is_file()
    man = json.loads((tmp_path / (art.name + ".json")).read_text())
    status = man["verification"]["status"]  # untrained weights: often the same output for every input
    assert status in ("passed", "inconclusive")
    assert art.name in r.stdout and {"passed": "pass", "inconclusive": "inconclusive"}[status] in r.stdout
    assert man["model"]["source"] == "mobilenet_v1" and man["model"]["options"]["alpha"] == 0.25
    assert man["model"]["preprocess"] == "tf"


@pytest.mark.parametrize("args,needle", [
    (["--quantize", "int9"], "did you mean 'int8'"),
    (["--format", "tfite"], "did you mean 'tflite'"),
    (["--io", "int8"], "does not apply"),
    (["--quantize", "fp16", "--calib-data", "fashion-mnist"], "calib_data does not apply"),
    (["--quantize", "int8", "--calib-data", "/no/such/dir"], "does not exist"),
])
def test_bad_options_exit_2(model_file, tmp_path, args, needle):
    r = run("export", model_file, "--out", tmp_path / "out", *args)
    assert r.exit_code == 2, r.output
    assert needle in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_bad_files_exit_2(tmp_path):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"garbage")
    for args in (["inspect", bad], ["inspect", tmp_path / "missing.onnx"], ["export", tmp_path / "bad.keras"],
                 ["export"]):
        if args[-1] == tmp_path / "bad.keras":
            args[-1].write_bytes(b"garbage")
        r = run(*args, "--out", tmp_path / "o") if args[0] == "export" else run(*args)
        assert r.exit_code == 2, (args, r.output)
        assert "error:" in r.stderr
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_recipe_gets_only_the_options_given(monkeypatch, tmp_path):
    calls = []
    fake = types.ModuleType("edgekit.recipes")

    def run_recipe(path, overrides=None, progress=None):
        calls.append((path, overrides))
        return {"recipe": path}

    fake.run_recipe = run_recipe
    monkeypatch.setitem(sys.modules, "edgekit.recipes", fake)
    r = run("export", "--recipe", "export/x.yaml", "--quantize", "int8", "--alpha", 0.5, "--no-verify",
            "--out", tmp_path, "--json")
    assert r.exit_code == 0, r.output
    assert calls == [("export/x.yaml", {"quantize": "int8", "alpha": 0.5, "verify": False, "out": str(tmp_path)})]
    assert json.loads(r.stdout) == {"recipe": "export/x.yaml"}
