"""edgekit sweep, what a point holds beyond the sweep mechanics of test_sweep.py: device parity of every row, and a
recipe's compression stages applied to every point (their own file, so that pytest-xdist runs them beside
test_sweep.py's interrupted sweep)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgekit.cli import main

pytestmark = pytest.mark.slow


def _cli(*args: str):
    return CliRunner().invoke(main, list(args))


def test_a_device_computing_something_else_is_parity_failed_and_left_out(trained_mnv1, tmp_path):
    """Device parity (on by default): every artifact's first test inputs are replayed on the device and compared with
    Keras. Here the float32 artifact is replaced, after its export, by the same network with random weights (what a
    device whose kernels compute garbage hands back): its row is parity_failed, off the front and not picked, though
    its accuracy (measured on the host) is as high as ever; --no-device-parity measures it as ok."""
    import edgekit
    from conftest import MNV1_TINY

    out = tmp_path / "sweep"
    kw = dict(grid={"resolution": [32]}, alpha=0.25, input_channels=1, weights=trained_mnv1, epochs=0,
              data="fashion-mnist", quantize=("none", "fp16"), test_limit=200, parity_samples=20,
              runs=3, warmup=1, devices=("local",), budget_ms=1000.0, out=str(out))
    first = edgekit.sweep.run("mobilenet_v1", **kw)
    assert [(r.precision, r.status, r.parity) for r in first.rows] == [("float32", "ok", "passed"),
                                                                        ("float16", "ok", "passed")]
    f32 = next(r for r in first.rows if r.precision == "float32")
    f16 = next(r for r in first.rows if r.precision == "float16")
    wrong = edgekit.export(edgekit.create_model("mobilenet_v1", weights="none", **MNV1_TINY), quantize="none",
                           out=str(tmp_path / "wrong"), verify=False).artifacts[0].path
    (out / f32.artifact).write_bytes(Path(wrong).read_bytes())
    for rec in (out / f32.artifact).parent.glob("bench/*.json"):
        rec.unlink()      # measured again: the export (and its host accuracy) is reused
    res = edgekit.sweep.run("mobilenet_v1", **kw)
    bad = next(r for r in res.rows if r.precision == "float32")
    assert bad.status == "parity_failed" and bad.parity == "failed" and "differ" in bad.error, bad
    assert bad.accuracy == f32.accuracy and not bad.pareto and not bad.pick
    assert res.fronts["local"] == [f16.point] and res.picks[0].point == f16.point and res.picks[0].fits
    assert res.summary.exports_computed == 0
    off = edgekit.sweep.run("mobilenet_v1", **{**kw, "device_parity": False})
    assert {(r.precision, r.status, r.parity) for r in off.rows} == {("float32", "ok", None),
                                                                     ("float16", "ok", None)}


def test_recipe_stages_apply_to_every_point(tmp_path, fashion_mnist_available, trained_mnv1):
    """--recipe: the recipe's compression stages (here 50 % pruning) run on every trained point before export; its
    other keys (model, data, quantize, out) are the sweep's own and the summary says so."""
    recipe = tmp_path / "prune.yaml"
    recipe.write_text("model: mobilenet_v1\ndata: fashion-mnist\ntrain_epochs: 4\nprune: 0.5\nprune_epochs: 1\n"
                      "quantize: int8\nout: elsewhere\n")
    out = tmp_path / "out"
    args = ["sweep", "mobilenet_v1", "--grid", "alpha=0.25", "--resolution", "32", "--quantize", "int8",
            "--input-channels", "1",
            "--weights", trained_mnv1, "--data", "fashion-mnist", "--epochs", "1", "--limit", "256", "--test-limit",
            "100", "--calib-samples", "100", "--runs", "5", "--warmup", "1", "--recipe", str(recipe), "--no-verify",
            "--no-device-parity", "--out", str(out)]
    res = _cli(*args)
    assert res.exit_code == 0, res.output
    (row,) = json.loads((out / "results.json").read_text())["rows"]
    assert row["status"] == "ok" and row["training"] == "trained 1 epoch(s) at 32 px + prune", row
    (train,) = [json.loads(p.read_text()) for p in out.glob("runs/*/train.json")]
    assert train["compression"]["stages"] == ["prune"] and train["model"].endswith("model.keras")
    report = json.loads(Path(train["compression"]["report"]).read_text())
    assert report["stages"][-1]["weights"]["pruned_sparsity"] == pytest.approx(0.5, abs=0.02)
    assert "only its compression stages apply" in res.output and "train_epochs" in res.output
    assert not (Path.cwd() / "elsewhere").exists()
