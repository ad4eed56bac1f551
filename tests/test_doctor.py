"""The int8 doctor on small real models: diagnosis (LiteRT's QuantizationDebugger, onnxruntime's QDQ debugging), the
ladder, its artifact/manifest/recipe, and the exits (budget not met = 1, bad input = 2).

The broken model is made the way the doctor's benchmark makes it: a small MobileNet-style net with unbounded ReLUs,
trained for a moment on real Fashion-MNIST, then one channel of a pointwise block made 256x louder by a
function-preserving rescaling (edgekit.doctor.cases.outlier_channel): the float model is unchanged, plain int8
collapses.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from edgekit.cli import main
from edgekit.errors import BudgetNotMet, InvalidArgument

RES = 16
EVAL = 600  # 2 standard errors of ~70 % accuracy on 600 samples: 3.7 points, inside the 5-point budget
FAST = dict(calib_samples=100, eval_samples=EVAL, diagnose_samples=16, latency_runs=5)


def relu_net(name="relunet"):
    from edgekit._keras import keras, layers

    inp = keras.Input((RES, RES, 1), name="image")
    x = layers.Conv2D(16, 3, strides=2, padding="same", use_bias=False, name="conv1")(inp)
    x = layers.BatchNormalization(momentum=0.9, name="conv1_bn")(x)
    x = layers.ReLU(name="conv1_relu")(x)
    x = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw1")(x)
    x = layers.BatchNormalization(momentum=0.9, name="dw1_bn")(x)
    x = layers.ReLU(name="dw1_relu")(x)
    x = layers.Conv2D(24, 1, use_bias=False, name="pw")(x)
    x = layers.BatchNormalization(momentum=0.9, name="pw_bn")(x)
    x = layers.ReLU(name="pw_relu")(x)
    x = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw2")(x)
    x = layers.BatchNormalization(momentum=0.9, name="dw2_bn")(x)
    x = layers.ReLU(name="dw2_relu")(x)
    x = layers.Conv2D(32, 1, name="pw2")(x)
    x = layers.ReLU(name="pw2_relu")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inp, layers.Dense(10, activation="softmax", name="predictions")(x), name=name)


@pytest.fixture(scope="module")
def models(fashion_mnist_available, tmp_path_factory):
    """(trained float model file, the same with an outlier channel) on 16x16 Fashion-MNIST."""
    from edgekit._keras import keras, tf
    from edgekit.data import load
    from edgekit.doctor.cases import outlier_channel

    tf.keras.utils.set_random_seed(0)
    ds = load("fashion-mnist", input_shape=(RES, RES, 1), split="train", limit=4000, seed=3)
    model = relu_net()
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    model.fit(ds.x, ds.y, epochs=3, batch_size=64, verbose=0)
    relu = keras.Model(model.input, model.get_layer("pw_relu").output).predict(ds.x[:64], verbose=0)
    loud = outlier_channel(model, "pw_bn", channel=int(relu.mean(axis=(0, 1, 2)).argmax()), factor=256.0)
    x = ds.x[:200]
    assert np.abs(loud.predict(x, verbose=0) - model.predict(x, verbose=0)).max() < 1e-4  # function-preserving
    folder = tmp_path_factory.mktemp("models")
    model.save(folder / "plain.keras")
    loud.save(folder / "loud.keras")
    return folder / "plain.keras", folder / "loud.keras"


@pytest.fixture(scope="module")
def ladder(models, tmp_path_factory):
    from edgekit.doctor import run as doctor

    out = tmp_path_factory.mktemp("doctor_out")
    return doctor(str(models[1]), calib_data="fashion-mnist", eval_data="fashion-mnist", max_drop=5, out=out,
                  **FAST), out


@pytest.mark.slow
def test_diagnosis_finds_the_outlier_channel_and_writes_nothing(models, tmp_path):
    from edgekit.doctor import run as doctor

    res = doctor(str(models[1]), calib_data="fashion-mnist", eval_data="fashion-mnist", out=tmp_path, **FAST)
    assert res.met is None and res.max_drop is None and res.export is None
    assert list(tmp_path.iterdir()) == []
    assert res.metric == "accuracy" and res.eval_samples == EVAL
    assert res.float_accuracy > 0.55 and res.int8_drop > 0.10, (res.float_accuracy, res.int8_accuracy)
    worst = res.layers[0]
    assert worst.layer == "pw" and worst.op == "CONV_2D" and worst.can_keep_float
    assert "outlier channel" in " ".join(worst.findings)
    assert worst.channel_ratio > 50 and worst.channel_sqnr_db < 10 <= worst.sqnr_db
    assert [s.score_db for s in res.layers] == sorted(s.score_db for s in res.layers)
    assert {"dw1", "dw2", "pw2", "conv1", "predictions"} <= {s.layer for s in res.layers}
    scores = next(s for s in res.layers if s.layer == "predictions")  # (batch, classes): no channels to compare
    assert scores.channel_sqnr_db is None and scores.channel_ratio is None and scores.layers == ["predictions"]
    assert [r.name for r in res.rungs] == ["plain int8"] and res.rungs[0].status == "measured"


@pytest.mark.slow
def test_ladder_keeps_the_outlier_block_in_float(ladder):
    res, out = ladder
    assert res.met and res.chosen == "layers kept in float"
    assert [r.name for r in res.rungs] == ["plain int8", "more calibration samples", "layers kept in float"]
    assert [r.status for r in res.rungs] == ["over", "over", "within"]
    assert [r.calib_samples for r in res.rungs] == [100, 400, res.rungs[2].calib_samples]
    chosen = res.rungs[-1]
    # the loud tensor is pw's output: pw must run float AND its reader dw2 (else dw2 quantizes it again); minimal
    assert chosen.float_layers == ["pw", "dw2"]
    assert chosen.drop <= 0.05 and chosen.accuracy > res.int8_accuracy + 0.10
    assert [s["action"] for s in chosen.steps][0] == "add" and {"keep"} == {s["action"] for s in chosen.steps[1:]}
    plain = res.rungs[0]
    assert chosen.size_bytes > plain.size_bytes  # float weights cost bytes
    assert all(r.p50_ms and r.p50_ms > 0 for r in res.rungs)


@pytest.mark.slow
def test_ladder_artifact_manifest_and_recipe_reproduce_the_choice(ladder, models, tmp_path):
    from edgekit.exporters import export
    from edgekit.runtimes import load

    res, out = ladder
    art = res.export["tflite"]
    assert art.path.name == "relunet_int8_2-float.tflite" and art.path.parent == out
    assert sorted(p.name for p in out.iterdir()) == sorted([art.path.name, art.manifest.name,
                                                            art.path.name + ".recipe.yaml"]
                                                           + [p.name for p in out.glob("*.verify.npz")])
    man = json.loads(art.manifest.read_text())
    doc = man["doctor"]
    assert doc["rung"] == "layers kept in float" and doc["met"] is True and doc["float_layers"] == ["pw", "dw2"]
    assert man["float_layers"] == ["pw", "dw2"] and man["model"]["source"] == str(models[1])
    assert doc["cost"]["size_bytes"] == art.size_bytes and doc["cost"]["size_vs_plain_int8"] > 1
    assert doc["cost"]["p50_ms"] > 0 and doc["cost"]["plain_int8_p50_ms"] > 0
    assert [r["name"] for r in doc["rungs"]] == [r.name for r in res.rungs]
    keys = yaml.safe_load((out / (art.path.name + ".recipe.yaml")).read_text())
    assert keys["float_layers"] == ["pw", "dw2"] and keys["calib_samples"] == 100 and keys == {
        "name": art.path.stem, **res.recipe}
    # the recipe keys as export() arguments give the same bytes, without searching
    args = {k: v for k, v in res.recipe.items() if k not in ("model", "out")}
    again = export(str(models[1]), out=tmp_path, verify=False, **args)["tflite"]
    assert again.sha256 == art.sha256
    # and the artifact really is within budget on the eval data (measured independently of the doctor)
    from edgekit.data import load as load_data

    ev = load_data("fashion-mnist", input_shape=(RES, RES, 1), preprocess_mode="unit", split="test", limit=EVAL,
                   seed=1)
    acc = np.mean(load(art.path).predict(ev.x)[0].argmax(1) == ev.y)
    assert abs(acc - res.rungs[-1].accuracy) < 1e-5 and res.float_accuracy - acc <= 0.05


@pytest.mark.slow
def test_a_healthy_model_stops_at_plain_int8(models, tmp_path):
    from edgekit.doctor import run as doctor

    res = doctor(str(models[0]), calib_data="fashion-mnist", eval_data="fashion-mnist", max_drop=5, out=tmp_path,
                 **FAST)
    assert res.met and res.chosen == "plain int8" and [r.name for r in res.rungs] == ["plain int8"]
    assert res.rungs[0].float_layers == [] and res.export["tflite"].path.name == "relunet_int8.tflite"


@pytest.mark.slow
def test_onnx_ladder_with_qdq_debugging(models, tmp_path):
    pytest.importorskip("tf2onnx")
    from edgekit.doctor import run as doctor

    res = doctor(str(models[1]), calib_data="fashion-mnist", eval_data="fashion-mnist", max_drop=5, out=tmp_path,
                 format="onnx", **FAST)
    worst = res.layers[0]
    assert worst.layer == "pw" and "outlier channel" in " ".join(worst.findings)
    assert worst.weight_sqnr_db is not None and worst.weight_sqnr_db > 25
    assert all(s.channel_sqnr_db is None for s in res.layers if s.layer == "predictions")
    assert res.met and res.rungs[0].status == "over"
    names = [r.name for r in res.rungs]
    ladder = ["plain int8", "more calibration samples", "entropy calibration", "percentile calibration",
              "layers kept in float"]
    assert len(names) >= 3 and names == ladder[:len(names)]  # stops at the first rung within (KL clips the outlier)
    chosen = res.chosen_rung
    assert chosen.name == names[-1] and chosen.status == "within"
    if chosen.name == "layers kept in float":
        assert {"pw", "dw2"} <= set(chosen.float_layers)
    man = json.loads(res.export["onnx"].manifest.read_text())
    assert man["doctor"]["rung"] == chosen.name and man["calibration_method"] == chosen.calibration_method


@pytest.mark.slow
def test_budget_not_met_exits_1_and_writes_nothing_unless_keep_best(models, tmp_path, monkeypatch):
    """Every rung measured 30 points low: the table shows all that was tried, exit code 1."""
    from edgekit.doctor import ladder

    real = ladder.Search.accuracy
    monkeypatch.setattr(ladder.Search, "accuracy", lambda self, path: real(self, path) - 0.30)
    args = ["doctor", str(models[0]), "--calib-data", "fashion-mnist", "--eval-data", "fashion-mnist",
            "--max-drop", "10", "--calib-samples", "100", "--eval-samples", "200", "--latency-runs", "3",
            "--diagnose-samples", "8", "--json"]
    r = CliRunner().invoke(main, args + ["--out", str(tmp_path / "a")], catch_exceptions=False)
    assert r.exit_code == 1, r.output
    doc = json.loads(r.stdout)
    assert doc["met"] is False and doc["export"] is None
    assert all(isinstance(x["findings"], list) and x["score_db"] is not None for x in doc["layers"])
    measured = [x for x in doc["rungs"] if x["accuracy"] is not None]
    assert doc["best"] == max(measured, key=lambda x: x["accuracy"])["name"]
    assert [x["name"] for x in doc["rungs"]] == ["plain int8", "more calibration samples", "layers kept in float",
                                                 "int16x8 activations", "QAT fine-tuning"]
    assert doc["rungs"][-1]["status"] == "skipped" and "--train-data" in doc["rungs"][-1]["note"]
    assert all(x["status"] == "over" for x in doc["rungs"][:2] + doc["rungs"][3:4])
    assert not (tmp_path / "a").exists()
    r = CliRunner().invoke(main, ["export", str(models[0]), "--quantize", "int8", "--calib-data", "fashion-mnist",
                                  "--eval-data", "fashion-mnist", "--max-drop", "10", "--calib-samples", "100",
                                  "--eval-samples", "200", "--keep-best", "--out", str(tmp_path / "b")],
                           catch_exceptions=False)
    assert r.exit_code == 1 and "budget not met" in r.stdout and "<- best" in r.stdout
    written = sorted((tmp_path / "b").glob("*.tflite"))
    assert len(written) == 1
    man = json.loads(written[0].with_name(written[0].name + ".json").read_text())
    assert man["doctor"]["met"] is False and man["doctor"]["rung"] == doc["best"]


@pytest.mark.slow
def test_unlabelled_eval_data_measures_agreement_with_the_float_model(models, tmp_path):
    from edgekit.data import load
    from edgekit.doctor import run as doctor

    ev = load("fashion-mnist", input_shape=(RES, RES, 1), split="test", limit=300, seed=5)
    np.savez(tmp_path / "unlabelled.npz", x=ev.x)
    res = doctor(str(models[1]), calib_data="fashion-mnist", eval_data=str(tmp_path / "unlabelled.npz"),
                 calib_samples=100, diagnose_samples=8)
    assert res.metric == "top-1 agreement with the float model" and res.float_accuracy == 1.0
    assert any("no labels" in n for n in res.notes) and res.int8_drop > 0.10


# -- bad input: exit 2 with a hint, before anything is converted ---------------------------------------------------
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    relu_net("tiny").save(folder / "tiny.keras")
    rng = np.random.default_rng(0)
    np.savez(folder / "eval.npz", x=rng.random((40, RES, RES, 1), dtype=np.float32), y=rng.integers(0, 10, 40))
    np.savez(folder / "wrong_shape.npz", x=rng.random((40, 8, 8, 3), dtype=np.float32))
    np.savez(folder / "bad_labels.npz", x=rng.random((40, RES, RES, 1), dtype=np.float32), y=np.full(40, 12))
    from PIL import Image

    for c in range(10):    # 10 classes named otherwise than fashion-mnist's (T-shirt/top, Trouser, ...)
        (folder / "classes" / f"c{c}").mkdir(parents=True)
        Image.new("L", (28, 28), color=20 * c).save(folder / "classes" / f"c{c}" / "x.png")
    return folder


@pytest.mark.parametrize("cmd,extra,match", [
    ("doctor", ["--max-drop", "-1"], "max_drop must be a finite number of points >= 0"),
    ("doctor", ["--max-drop", "abc"], "max_drop must be a number of accuracy points"),
    ("doctor", ["--max-drop", "nan"], "finite"),
    ("doctor", ["--max-drop", "1"], r"40 eval samples cannot resolve --max-drop 1: the standard error .* needs at "
                                    r"least \d+ samples"),
    ("doctor", ["--max-drop", "0"], "max_drop=0 cannot be resolved"),
    ("doctor", ["--format", "tflite,onnx"], "unknown export format 'tflite,onnx'"),
    ("doctor", ["--eval-data", "{d}/wrong_shape.npz"], r"--eval-data: arrays .* have shape \(40, 8, 8, 3\)"),
    ("doctor", ["--eval-data", "{d}/bad_labels.npz"], "labels .* go from 12 to 12, the model has 10 classes"),
    ("doctor", ["--keep-best"], "keep_best goes with max_drop"),
    # the QAT rung trains on --train-data and is scored on --eval-data: label k must be the same class in both
    ("doctor", ["--max-drop", "5", "--train-data", "fashion-mnist", "--eval-data", "{d}/classes"],
     r"the classes of .*classes are not those of the training data fashion-mnist:train .*label 0: 'T-shirt/top' vs "
     r"'c0'"),
    ("export", ["--quantize", "fp16", "--max-drop", "1"], "--max-drop searches int8 quantizations"),
    ("export", ["--max-drop", "1"], "--max-drop searches int8 quantizations; received --quantize float32"),
    ("export", ["--quantize", "int8", "--max-drop", "1", "--per-tensor"], "per_tensor does not go with max_drop"),
    ("export", ["--quantize", "int8", "--max-drop", "1", "--format", "tflite,onnx"], "one format"),
    ("export", ["--quantize", "int8", "--eval-samples", "10"], "go with max_drop"),
])
def test_bad_input_exits_2_with_a_hint(tiny, tmp_path, cmd, extra, match):
    base = [cmd, str(tiny / "tiny.keras"), "--calib-data", str(tiny / "eval.npz"), "--out", str(tmp_path / "o")]
    if "--eval-data" not in extra:
        base += ["--eval-data", str(tiny / "eval.npz")]
    r = CliRunner().invoke(main, base + [e.format(d=tiny) for e in extra], catch_exceptions=False)
    assert r.exit_code == 2, r.output
    import re

    assert re.search(match, " ".join(r.stderr.split())), r.stderr
    assert "hint:" in r.stderr
    assert not (tmp_path / "o").exists()


def test_sample_size_rule():
    from edgekit.doctor.evaluate import samples_needed, standard_error

    assert samples_needed(0.9, 1.0) == 3600  # 4 * 0.09 / 0.01^2
    assert samples_needed(1.0, 1.0) == 396  # a perfect float model: the budget's own variance
    assert samples_needed(0.5, 0.0) is None
    assert abs(2 * standard_error(0.9, 3600) - 0.01) < 1e-12


def test_python_api_errors(tiny):
    from edgekit.doctor import run as doctor
    from edgekit.exporters import export

    with pytest.raises(InvalidArgument, match="needs --eval-data"):
        doctor(str(tiny / "tiny.keras"), calib_data=str(tiny / "eval.npz"), eval_data=None)
    with pytest.raises(InvalidArgument, match="needs --calib-data"):
        doctor(str(tiny / "tiny.keras"), calib_data=None, eval_data=str(tiny / "eval.npz"))
    with pytest.raises(InvalidArgument, match="max_drop must be a number"):
        export(str(tiny / "tiny.keras"), quantize="int8", max_drop=True, eval_data=str(tiny / "eval.npz"))
    assert issubclass(BudgetNotMet, Exception) and BudgetNotMet("x").exit_code == 1


@pytest.mark.slow
def test_recipe_file_runs_the_choice_without_searching(ladder, tmp_path):
    """`edgekit export --recipe <artifact>.recipe.yaml` rebuilds the chosen artifact byte for byte."""
    res, out = ladder
    art = res.export["tflite"]
    recipe = out / (art.path.name + ".recipe.yaml")
    r = CliRunner().invoke(main, ["export", "--recipe", str(recipe), "--out", str(tmp_path), "--json"],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    again = [a for a in doc["artifacts"] if a["format"] == "tflite"][0]
    assert again["sha256"] == art.sha256 and again["path"] == str(tmp_path / art.path.name)


@pytest.mark.slow
def test_export_recipe_with_max_drop_prints_the_ladder_and_writes_the_choice(models, tmp_path):
    """max_drop is an export recipe key too (the CLI's --max-drop is covered by the budget-not-met test)."""
    recipe = tmp_path / "search.yaml"
    recipe.write_text(yaml.safe_dump({"name": "search", "model": str(models[1]), "quantize": "int8",
                                      "calib_data": "fashion-mnist", "calib_samples": 100, "eval_data": "fashion-mnist",
                                      "eval_samples": EVAL, "max_drop": 5, "out": str(tmp_path)}))
    r = CliRunner().invoke(main, ["export", "--recipe", str(recipe)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    text = " ".join(r.stdout.split())
    assert "error each quantized op adds" in text and "ladder: budget 5 points" in text
    assert "<- chosen" in text and "float_layers:" in text and "within budget: layers kept in float" in text
    assert (tmp_path / "relunet_int8_2-float.tflite").is_file()


@pytest.mark.slow
def test_qat_rung_trains_exports_and_gives_compress_recipe_keys(models, tmp_path, monkeypatch):
    """Only the QAT candidate (and the file finally written, measured again when its bytes differ: metadata) is
    measured at its real accuracy (the others 40 points low): the ladder walks to the
    last rung, fine-tunes with tfmot's QAT on --train-data, exports that model as int8 and says how to redo it."""
    from edgekit.data import load
    from edgekit.doctor import ladder, run as doctor

    real = ladder.Search.accuracy
    monkeypatch.setattr(ladder.Search, "accuracy",
                        lambda self, path: real(self, path) - (0.0 if "_qat1_" in path.name  # the QAT candidate,
                                                               or path.parent == tmp_path / "out"  # the file written
                                                               else 0.40))
    ds = load("fashion-mnist", input_shape=(RES, RES, 1), split="train", limit=2000, seed=11)
    np.savez(tmp_path / "train.npz", x=ds.x, y=ds.y)
    res = doctor(str(models[0]), calib_data="fashion-mnist", eval_data="fashion-mnist", max_drop=10,
                 train_data=str(tmp_path / "train.npz"), qat_epochs=1, out=tmp_path / "out", calib_samples=100,
                 eval_samples=200, diagnose_samples=8, latency_runs=3)
    assert res.met and res.chosen == "QAT fine-tuning", [(r.name, r.status, r.accuracy) for r in res.rungs]
    qat = res.rungs[-1]
    assert qat.qat_epochs == 1 and qat.calib_samples is None and qat.drop <= 0.10
    assert res.recipe["qat"] is True and res.recipe["qat_epochs"] == 1
    assert res.recipe["data"] == str(tmp_path / "train.npz")
    assert "calib_data" not in res.recipe and "float_layers" not in res.recipe
    man = json.loads(res.export["tflite"].manifest.read_text())
    assert man["qat"] is True and man["calibration"]["kind"] == "qat" and man["doctor"]["rung"] == "QAT fine-tuning"


def test_a_qat_wrapped_softmax_output_is_trained_as_probabilities():
    """tfmot wraps the last Dense's softmax in a QuantizeAwareActivation: QAT fine-tuning (the doctor's QAT rung,
    compress --qat) must still use a probabilities loss, not from_logits=True on softmax outputs."""
    from edgekit._keras import keras, layers, tfmot
    from edgekit.compression.train import outputs_probabilities

    inp = keras.Input((8, 8, 1))
    x = layers.GlobalAveragePooling2D()(layers.Conv2D(4, 3)(inp))
    model = keras.Model(inp, layers.Dense(3, activation="softmax")(x))
    assert outputs_probabilities(model)
    assert outputs_probabilities(tfmot().quantization.keras.quantize_model(model))
    logits = keras.Model(inp, layers.Dense(3)(x))
    assert not outputs_probabilities(tfmot().quantization.keras.quantize_model(logits))


@pytest.mark.slow
def test_eval_data_from_an_image_folder_with_one_sub_folder_per_class(models, tmp_path):
    from PIL import Image

    from edgekit.data import DATASETS
    from edgekit.doctor import run as doctor

    images, labels, _ = DATASETS.get("fashion-mnist")("test")
    folder = tmp_path / "eval"
    for c in range(10):
        (folder / str(c)).mkdir(parents=True)
        for i in np.flatnonzero(labels == c)[:20]:
            Image.fromarray(images[i, :, :, 0]).save(folder / str(c) / f"{i}.png")
    res = doctor(str(models[1]), calib_data="fashion-mnist", eval_data=str(folder), calib_samples=100,
                 diagnose_samples=8)
    assert res.metric == "accuracy" and res.eval_samples == 200 and res.eval_source == str(folder)
    assert res.float_accuracy > 0.40 and res.int8_drop > 0.10
    (folder / "9").rename(tmp_path / "nine")  # 9 class folders for a 10-class model: labels would be shifted
    with pytest.raises(InvalidArgument, match="has 9 class folders, the model 10 classes"):
        doctor(str(models[1]), calib_data="fashion-mnist", eval_data=str(folder))
