"""``edgekit models`` and ``edgekit profile`` through click's CliRunner: tables, --json, exit codes, one-line errors."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from edgekit.cli import main


@pytest.fixture
def run(monkeypatch, tmp_path):
    monkeypatch.setenv("EDGEKIT_CACHE", str(tmp_path / "cache"))
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(main, list(args), catch_exceptions=False)

    return invoke


def test_models_lists_the_zoo_without_stats(run):
    res = run("models", "--no-stats", "--json")
    assert res.exit_code == 0
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    assert rows["mobilenet_v1"]["aliases"] == ["mobilenet"] and rows["mobilenet_v1"]["input_shape"] == [224, 224, 3]
    assert rows["xception"]["input_shape"] == [299, 299, 3] and rows["resnet18"]["params"] is None
    assert rows["xception"]["min_resolution"] == 71 and "alpha" in rows["mobilenet_v1"]["options"]
    res = run("models", "--no-stats")
    assert res.exit_code == 0 and "efficientnet_b7" in res.stdout and "shufflenet_v2" in res.stdout


def test_models_stats_come_from_the_packaged_table(run):
    res = run("models", "resnet50", "--json")
    assert res.exit_code == 0
    [row] = json.loads(res.stdout)
    assert (row["params"], row["mult_adds"]) == (25_636_712, 3_857_973_248)


def test_models_stats_are_computed_and_cached(run, tmp_path, monkeypatch):
    from edgekit import zoo

    monkeypatch.setattr(zoo, "PACKAGED_STATS", tmp_path / "no-packaged-table.json")
    res = run("models", "mobilenet_v1", "--json")
    assert res.exit_code == 0
    [row] = json.loads(res.stdout)
    assert (row["params"], row["mult_adds"]) == (4_253_864, 568_740_352)
    cache = tmp_path / "cache" / "zoo-stats.json"
    data = json.loads(cache.read_text())
    data["models"]["mobilenet_v1"]["mult_adds"] = 123_400_000      # proves the second run reads the cache
    cache.write_text(json.dumps(data))
    res = run("models", "mobilenet")          # the alias matches; rendered as a table
    assert res.exit_code == 0 and "123.4" in res.stdout and "mobilenet_v1" in res.stdout


def test_profile_json_and_table(run):
    res = run("profile", "mobilenet", "--alpha", "0.25", "--resolution", "64", "--json")
    assert res.exit_code == 0
    rep = json.loads(res.stdout)
    assert rep["model"] == "mobilenet_v1_0.25_64"
    assert rep["total_mult_adds"] == sum(layer["mult_adds"] for layer in rep["layers"])
    assert len(rep["separable"]) == 13 and rep["peak_memory"]["float32_bytes"] == 4 * rep["peak_memory"]["int8_bytes"]
    res = run("profile", "mobilenet", "--alpha", "0.25", "--rho", "0.5", "--classes", "10", "--input-channels", "1")
    assert res.exit_code == 0
    for text in ("conv_dw_13", "1/N+1/Dk²", "peak activation memory", "mobilenet_v1_0.25_112_1ch_10cls"):
        assert text in res.stdout


def test_profile_model_file(run, tmp_path):
    from edgekit import models

    path = tmp_path / "m.h5"
    models.create("squeezenet1_1", weights="none", resolution=31, classes=4).save(str(path))
    res = run("profile", str(path), "--json")
    assert res.exit_code == 0 and json.loads(res.stdout)["model"] == "squeezenet1_1_31_4cls"


@pytest.mark.parametrize("args, message", [
    (("profile", "mobilenett"), "did you mean"),
    (("profile", "mobilenet", "--alpha", "2"), "alpha must be in (0, 1.5]"),
    (("profile", "resnet50", "--resolution", "16"), "at least 32x32"),
    (("profile", "xception", "--rho", "0.2"), "at least 71x71"),
    (("profile", "mobilenet", "--rho", "0.05"), "received 11 (rho=0.05 -> 11 px)"),
    (("profile", "resnet50", "--alpha", "0.5"), "does not take"),
    (("profile", "does/not/exist.keras"), "does not exist"),
    (("profile", "runs/[best]/model.keras"), "'runs/[best]/model.keras' does not exist"),  # not rich markup
    (("profile", "mobilenet", "--rho", "0.5", "--resolution", "112"), "either rho or resolution"),
])
def test_bad_input_is_one_line_exit_2(run, monkeypatch, args, message):
    from edgekit.cli import _output

    monkeypatch.setattr(_output.err, "_width", 50)  # a narrow terminal (or a pipe's default 80 columns)
    res = run(*args)
    assert res.exit_code == 2
    assert message in res.stderr
    assert "Traceback" not in res.output and res.stderr.startswith("error:")
    assert len([line for line in res.stderr.splitlines() if line.startswith("error:")]) == 1
    # not wrapped at the terminal width: every line is the error or its hint (logs and pipes get whole lines)
    assert all(line.startswith(("error:", "hint:")) for line in res.stderr.splitlines()), res.stderr


def test_corrupt_model_file_exit_2(run, tmp_path):
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"not a keras file")
    res = run("profile", str(bad))
    assert res.exit_code == 2 and "cannot load model" in res.stderr and "Traceback" not in res.output
    res = run("--debug", "profile", str(bad))
    assert res.exit_code == 2 and "Traceback" in res.stderr
