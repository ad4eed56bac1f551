"""edgekit sweep: bad input is refused before any training, with exit code 2 and a hint; nothing is written."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from edgekit.cli import main

BASE = ["mobilenet_v1", "--input-channels", "1", "--weights", "none", "--data", "fashion-mnist", "--epochs", "1",
        "--limit", "64", "--test-limit", "20"]


@pytest.fixture
def no_training(monkeypatch):
    """Any training or export fails the test: bad input must be refused before."""
    import edgekit.compression
    import edgekit.exporters

    def boom(*a, **k):
        raise AssertionError("the sweep trained or exported before rejecting its input")

    monkeypatch.setattr(edgekit.compression, "train", boom)
    monkeypatch.setattr(edgekit.exporters, "export", boom)


def run(args, tmp_path):
    out = tmp_path / "sweep"
    res = CliRunner().invoke(main, ["sweep", *args, "--out", str(out)])
    return res, out


@pytest.mark.parametrize("args, words", [
    (BASE, "grid is empty"),
    (BASE + ["--grid", "alpah=0.5"], "did you mean 'alpha'"),
    (BASE + ["--grid", "alpha="], "empty value list"),
    (BASE + ["--grid", "alpha=0.5", "--quantize", "int9"], "unknown precision 'int9'"),
    (BASE + ["--grid", "alpha=0.5", "--device", "no-such-device"], "unknown device 'no-such-device'"),
    (BASE + ["--grid", "alpha=0.5", "--emulated", "rpi4"], "not one of the --device values"),
    (BASE + ["--grid", "alpha=0.5", "--require-budget"], "needs --budget-ms"),
    (["mobilenet_v1", "--grid", "alpha=0.5", "--data", "fashion-mnist", "--input-channels", "1", "--weights", "none",
      "--epochs", "0"], "untrained"),
])
def test_static_bad_input_exit_2_with_hint(args, words, tmp_path, no_training):
    res, out = run(args, tmp_path)
    assert res.exit_code == 2, res.output
    assert words in res.output and "hint:" in res.output
    assert not out.exists()


@pytest.mark.slow
@pytest.mark.parametrize("grid, words", [
    (["alpha=0.25,2.0"], "grid point alpha=2.0: alpha must be in (0, 1.5]"),    # one bad value anywhere in a list
    (["alpha=0.25", "resolution=32,8"], "grid point alpha=0.25, resolution=8"),
    (["rho=0.143,0.1429"], "build the same model"),
])
def test_bad_grid_values_are_rejected_before_training(grid, words, tmp_path, no_training):
    args = list(BASE)
    for g in grid:
        args += ["--grid", g]
    res, out = run(args, tmp_path)
    assert res.exit_code == 2, res.output
    assert words in res.output and "hint:" in res.output
    assert not out.exists()


@pytest.mark.slow   # builds the model (TensorFlow)
def test_test_data_that_does_not_fit_in_memory_is_refused_before_training(tmp_path, no_training, monkeypatch):
    """Export holds every test sample it scores in memory: the sweep estimates that before training (export's own
    estimate) and says how many fit. Here the machine "has" 64 MiB: the 10,000 Fashion-MNIST test images at 32x32x1
    (2 x 40 MiB with the calibration samples) do not fit, 1,000 do."""
    from edgekit.exporters import calibration

    monkeypatch.setattr(calibration, "_available_memory", lambda: 64 * 2 ** 20)
    args = ["mobilenet_v1", "--alpha", "0.25", "--grid", "resolution=32", "--input-channels", "1", "--weights", "none",
            "--data", "fashion-mnist", "--epochs", "1", "--limit", "64", "--quantize", "int8"]
    res, out = run(args, tmp_path)
    assert res.exit_code == 2, res.output
    assert "scored on 10000 test samples held in memory" in res.output and "64.0 MiB available" in res.output
    fits = (32 * 2 ** 20 // (2 * 32 * 32 * 4)) - 300
    assert f"--test-limit {fits} or fewer" in res.output and "resolutions below 32 px" in res.output
    assert not out.exists()
    from edgekit.sweep import SweepSpec, plan

    monkeypatch.setattr(plan, "_check_devices", lambda *a: None)
    ok = plan.make_plan(SweepSpec.from_dict({"model": "mobilenet_v1", "alpha": 0.25, "grid": {"resolution": [32]},
                                             "input_channels": 1, "weights": "none", "data": "fashion-mnist",
                                             "quantize": ["int8"], "test_limit": 1000, "out": str(out)}))
    assert ok.test_samples == 1000      # accepted: export scores exactly these


def test_test_data_is_required_and_must_be_labelled(tmp_path, no_training):
    pytest.importorskip("PIL")
    from PIL import Image

    flat = tmp_path / "flat"            # images, no class sub-folders: no labels
    flat.mkdir()
    for i in range(3):
        Image.new("L", (28, 28), color=i * 60).save(flat / f"{i}.png")
    labelled = tmp_path / "labelled"
    for c in ("a", "b"):
        (labelled / c).mkdir(parents=True)
        Image.new("L", (28, 28), color=10).save(labelled / c / "x.png")
    args = ["mobilenet_v1", "--grid", "alpha=0.25", "--input-channels", "1", "--weights", "none", "--classes", "2"]
    res, out = run(args + ["--data", str(labelled)], tmp_path)
    assert res.exit_code == 2 and "no labelled test data" in res.output and "--test-data" in res.output
    res, out = run(args + ["--data", str(labelled), "--test-data", str(flat)], tmp_path)
    assert res.exit_code == 2 and "has no labels" in res.output, res.output
    res, out = run(["mobilenet_v1", "--grid", "alpha=0.25", "--data", str(labelled)], tmp_path)
    assert res.exit_code == 2 and "--classes" in res.output
    assert not out.exists()


def test_test_data_with_other_classes_or_order_is_refused(tmp_path, no_training):
    """Label k must be the same class in --data and --test-data (an image folder sorts its classes by name,
    fashion-mnist keeps its own order): otherwise every accuracy of the sweep scores mismatched labels."""
    from PIL import Image

    from edgekit.data.builtin import FASHION_MNIST_CLASSES

    folder = tmp_path / "test"     # the same classes, as folders: sorted by name (Ankle boot, Bag, Coat, ...)
    for i, name in enumerate(FASHION_MNIST_CLASSES):
        (folder / name.replace("/", "-")).mkdir(parents=True)
        Image.new("L", (28, 28), color=20 * i).save(folder / name.replace("/", "-") / "x.png")
    res, out = run(BASE + ["--grid", "alpha=0.25", "--test-data", str(folder)], tmp_path)
    assert res.exit_code == 2, res.output
    assert "are not those of the training data fashion-mnist:train in the same order" in res.output
    assert "label 0: 'T-shirt/top' vs 'Ankle boot'" in res.output and "hint:" in res.output
    assert not out.exists()


def test_config_file_keys_are_checked(tmp_path, no_training):
    cfg = tmp_path / "s.sweep.yaml"
    cfg.write_text("model: mobilenet_v1\ngrid:\n  alpha: [0.25]\nbudjet_ms: 3\n")
    res, _ = run(["--config", str(cfg)], tmp_path)
    assert res.exit_code == 2 and "unknown key 'budjet_ms'" in res.output and "budget_ms" in res.output
    cfg.write_text("model: mobilenet_v1\ngrid: [alpha, 0.25]\n")
    res, _ = run(["--config", str(cfg)], tmp_path)
    assert res.exit_code == 2 and "grid must be a mapping" in res.output
    cfg.write_text("model: mobilenet_v1\ngrid: {alpha: [0.25]}\ndata: fashion-mnist\nmetric: p99\n")
    res, _ = run(["--config", str(cfg)], tmp_path)
    assert res.exit_code == 2 and "s.sweep.yaml: unknown metric 'p99'" in res.output and "did you mean 'p90'" in res.output
    cfg.write_text("model: mobilenet_v1\ngrid: {alpha: [0.25]\n")
    res, _ = run(["--config", str(cfg)], tmp_path)
    assert res.exit_code == 2 and "not valid YAML (line" in res.output


def test_shipped_sweep_configs_are_valid():
    from pathlib import Path

    from edgekit.sweep import from_config

    configs = sorted((Path(__file__).resolve().parents[1] / "export").glob("*.sweep.yaml"))
    assert configs, "export/ ships at least one sweep config"
    for cfg in configs:
        spec = from_config(cfg)
        assert spec.grid and spec.out


def test_recipe_is_checked_before_training(tmp_path, no_training):
    qat = tmp_path / "qat.yaml"
    qat.write_text("model: mobilenet_v1\ndata: fashion-mnist\ntrain_epochs: 1\nqat: true\nquantize: int8\n")
    res, out = run(BASE + ["--grid", "alpha=0.25", "--recipe", str(qat)], tmp_path)   # default: float32,int8
    assert res.exit_code == 2 and "quantization-aware" in res.output and "--quantize int8" in res.output
    plain = tmp_path / "plain.yaml"
    plain.write_text("model: mobilenet_v1\ndata: fashion-mnist\ntrain_epochs: 1\nquantize: int8\n")
    res, out = run(BASE + ["--grid", "alpha=0.25", "--recipe", str(plain)], tmp_path)
    assert res.exit_code == 2 and "no compression stage" in res.output
    typo = tmp_path / "typo.yaml"
    typo.write_text("model: mobilenet_v1\ndata: fashion-mnist\nprune: 0.5\nprune_layers: [no_such_layer*]\n")
    res, out = run(BASE + ["--grid", "alpha=0.25", "--recipe", str(typo)], tmp_path)
    assert res.exit_code == 2 and "no_such_layer" in res.output, res.output
    assert not out.exists()
