"""Models that are not single-output image classifiers: several outputs and inputs the converters reorder, a raw
audio input of rank 2, and constant (untrained) outputs. Verification pairs outputs and inputs by name, reports
per-output metrics, takes top-1 from the classifier output, and every format/precision passes with the library's
own thresholds."""
from __future__ import annotations

import json

import numpy as np
import pytest

import multi_models as mm
from edgekit.errors import DataError, InvalidArgument, VerificationError


@pytest.fixture(scope="module")
def onet(fashion_mnist_available):
    x, y = mm.onet_data(2000)
    model = mm.train(mm.onet(), x, y, epochs=3)
    xt, yt = mm.onet_data(400, split="test", seed=1)
    return model, xt, yt


@pytest.mark.slow
@pytest.mark.parametrize("quantize", ["int8", "fp16"])
def test_onet_outputs_are_paired_by_name(onet, tmp_path, quantize):
    """The converters reorder ONet's outputs (TFLite: prob, bbox, landmarks): joined in the two orders they used to
    fail as 'SQNR 3.3 dB'. Paired by name, every output passes, each with its own numbers."""
    from edgekit.exporters import THRESHOLDS, export
    from edgekit.runtimes import load

    model, xt, yt = onet
    kw = dict(calib_data=xt[:300]) if quantize == "int8" else {}
    res = export(model, quantize=quantize, formats="tflite,onnx", out=tmp_path, verify_data=(xt[300:], yt["conv6-1"][300:]),
                 **kw)
    th = THRESHOLDS[res["tflite"].precision]
    assert [o.key for o in load(res["tflite"].path).outputs] == ["conv6-1", "conv6-2", "conv6-3"]  # not Keras order
    for art in res.artifacts:
        v = art.verification
        assert v.status == "passed" and v.passed, (art.format, v.failures)
        assert [c.name for c in v.outputs] == ["conv6-2", "conv6-3", "conv6-1"]  # Keras order, paired by name
        assert {c.matched_by for c in v.outputs} == {"name"} and [c.shape for c in v.outputs] == [[4], [10], [2]]
        assert [c.classifier for c in v.outputs] == [False, False, True]  # top-1 only where it means something
        prob = v.outputs[2]
        assert v.top1_agreement == prob.top1_agreement >= th.get("min_top1_agreement", 0.0)
        assert v.keras_accuracy == prob.keras_accuracy and v.artifact_accuracy == prob.artifact_accuracy
        assert all(c.sqnr_db >= th["min_sqnr_db"] for c in v.outputs)
        assert v.sqnr_db == min(c.sqnr_db for c in v.outputs) and v.max_abs_err == max(c.max_abs_err for c in v.outputs)
        man = json.loads(art.manifest.read_text())
        assert man["verification"]["status"] == "passed"
        assert [o["name"] for o in man["verification"]["outputs"]] == ["conv6-2", "conv6-3", "conv6-1"]
    _profile_inspect_bench(model, res, th, {"input_1"}, {"conv6-1", "conv6-2", "conv6-3"})


def _profile_inspect_bench(model, res, th, inputs: set, outputs: set) -> None:
    """The rest of the pipeline on a multi-input/-output model: profile, inspect (signature keys) and bench on the
    local device with on-device verification passed for every output."""
    import edgekit

    prof = edgekit.profile(model)
    assert prof.total_params == model.count_params() and prof.total_mult_adds > 0
    for art in res.artifacts:
        rep = edgekit.inspect(art.path)
        assert {o.key for o in rep.outputs} == outputs and {i.key for i in rep.inputs} == inputs, art.path.name
    rows = edgekit.bench([a.path for a in res.artifacts], "local", verify=True, runs=2, warmup=0)
    for art, row in zip(res.artifacts, rows):
        par = row.parity
        print(f"{art.path.name}: export " + ", ".join(f"{c.name} {c.sqnr_db:.1f} dB" for c in art.verification.outputs)
              + "; bench --verify " + ", ".join(f"{o['name']} {o['sqnr_db']:.1f} dB" for o in par["outputs"]))
        assert row.status == "ok" and par["status"] == "passed", (row.artifact, par)
        assert {o["name"] for o in par["outputs"]} == outputs
        assert all(o["sqnr_db"] >= th["min_sqnr_db"] for o in par["outputs"]), par["outputs"]


@pytest.mark.slow
def test_verify_data_file_pairs_reference_with_artifact_outputs(onet, tmp_path):
    """<artifact>.verify.npz (replayed on devices) holds the Keras reference in the artifact's output order."""
    from edgekit._verify_data import read

    from edgekit.exporters import export

    model, xt, _ = onet
    res = export(model, quantize="fp16", out=tmp_path, verify_data=xt[:20])
    vd = read(res["tflite"].path.with_name(res["tflite"].path.name + ".verify.npz"))
    ref = dict(zip(model.output_names, model.predict(xt[:20], verbose=0)))
    widths = {"conv6-1": 2, "conv6-2": 4, "conv6-3": 10}
    assert [r.shape[1] for r in vd.reference] == [widths[k] for k in ("conv6-1", "conv6-2", "conv6-3")]
    np.testing.assert_allclose(vd.reference[0], ref["conv6-1"], atol=1e-6)
    # the device parity table labels each output with its signature name, not StatefulPartitionedCall:k
    from edgekit.devices import bench

    assert vd.output_keys == ["conv6-1", "conv6-2", "conv6-3"], (vd.output_keys, vd.output_names)
    (row,) = bench([res["tflite"].path], "local", verify=True, runs=2, warmup=0)
    assert row.parity["status"] == "passed", row.parity
    assert [o["name"] for o in row.parity["outputs"]] == ["conv6-1", "conv6-2", "conv6-3"], row.parity["outputs"]


def test_fp16_failure_does_not_blame_calibration(tmp_path, monkeypatch):
    from edgekit.exporters import THRESHOLDS, export

    monkeypatch.setitem(THRESHOLDS, "float16", {"min_sqnr_db": 999.0})
    with pytest.raises(VerificationError) as info:
        export(mm.two_input("twofail"), quantize="fp16", out=tmp_path, verify_samples=8)
    assert "--calib-data" not in info.value.hint and "check the calibration" not in info.value.hint
    assert "float16 uses no calibration data" in info.value.hint
    assert "zcls: SQNR" in info.value.message and "abox: SQNR" in info.value.message  # per output


@pytest.fixture(scope="module")
def two_input(fashion_mnist_available):
    xs, ys = mm.two_input_data(3000)
    model = mm.train(mm.two_input(), xs, ys, epochs=6)
    xt, yt = mm.two_input_data(500, split="test", seed=1)
    return model, xt, yt


@pytest.mark.slow
def test_two_inputs_from_an_npz_by_input_name(two_input, tmp_path):
    """Calibration data for several inputs is an .npz keyed by input name; the converted .tflite takes the inputs in
    another order (ameta, zimage): calibration, verification and the replay file all go by name."""
    from edgekit._verify_data import read
    from edgekit.exporters import THRESHOLDS, export
    from edgekit.runtimes import load

    model, xt, yt = two_input
    calib = tmp_path / "calib.npz"
    np.savez(calib, zimage=xt["zimage"], ameta=xt["ameta"], y=yt["zcls"])
    res = export(model, quantize="int8", formats="tflite,onnx", calib_data=calib, calib_samples=400,
                 verify_samples=100, out=tmp_path / "out")
    assert res.calibration.count == 400 and res.calibration.source == str(calib)
    sess = load(res["tflite"].path)
    assert [i.key for i in sess.inputs] == ["ameta", "zimage"] and {o.key for o in sess.outputs} == {"abox", "zcls"}
    for art in res.artifacts:
        v = art.verification
        assert v.passed, (art.format, v.failures)
        assert [(c.name, c.classifier) for c in v.outputs] == [("zcls", True), ("abox", False)]
        assert v.top1_agreement >= THRESHOLDS["int8"]["min_top1_agreement"] and v.keras_accuracy > 0.6
        assert all(c.sqnr_db >= THRESHOLDS["int8"]["min_sqnr_db"] for c in v.outputs)
    man = json.loads(res["tflite"].manifest.read_text())
    assert [i["name"] for i in man["model"]["inputs"]] == ["zimage", "ameta"] and "input_shape" not in man["model"]
    vd = read(res["tflite"].path.with_name(res["tflite"].path.name + ".verify.npz"))
    assert [a.shape[1:] for a in vd.inputs] == [(5,), (32, 32, 1)]  # in the artifact's input order
    _profile_inspect_bench(model, res, THRESHOLDS["int8"], {"zimage", "ameta"}, {"zcls", "abox"})


def test_multi_input_data_errors(tmp_path):
    from edgekit.exporters import export

    model = mm.two_input("twobad")
    bad = tmp_path / "bad.npz"
    np.savez(bad, zimage=np.zeros((10, 32, 32, 1), np.float32), meta=np.zeros((10, 5), np.float32))
    with pytest.raises(DataError, match=r"the model's inputs are \['zimage', 'ameta'\]"):
        export(model, verify_data=bad, out=tmp_path / "out")
    with pytest.raises(DataError, match="give an .npz with one array per input name"):
        export(model, verify_data="fashion-mnist", out=tmp_path / "out")
    with pytest.raises(DataError, match="different numbers of samples"):
        export(model, verify_data={"zimage": np.zeros((4, 32, 32, 1)), "ameta": np.zeros((3, 5))}, out=tmp_path / "o")
    assert not (tmp_path / "out").exists() and not (tmp_path / "o").exists()


@pytest.fixture(scope="module")
def audio():
    x, y = mm.audio_data(600)
    model = mm.train(mm.audio(), x, y, epochs=8)
    return model, *mm.audio_data(250, seed=1)


@pytest.mark.slow
def test_audio_input_of_any_rank_exports_with_its_own_data(audio, tmp_path):
    """A fixed (43844, 1) waveform input (was refused as 'needs a fixed (H, W, C)'): calibration and verification
    arrays of its shape, no image preprocessing."""
    from edgekit.exporters import THRESHOLDS, export

    model, x, y = audio
    np.save(tmp_path / "calib.npy", x[:150])
    res = export(model, quantize="int8", formats="tflite,onnx", calib_data=tmp_path / "calib.npy",
                 verify_data=(x[150:], y[150:]), out=tmp_path / "out")
    for art in res.artifacts:
        v = art.verification
        assert v.passed and v.samples == 100, (art.format, v.failures)
        assert v.top1_agreement >= THRESHOLDS["int8"]["min_top1_agreement"] and v.keras_accuracy >= 0.8
    man = json.loads(res["tflite"].manifest.read_text())
    assert man["model"]["input_shape"] == [43844, 1] and man["model"]["preprocess"] is None
    assert man["inputs"][0]["shape"][1:] == [43844, 1]


@pytest.mark.slow
def test_audio_without_data_uses_synthetic_waveforms(audio, tmp_path):
    from edgekit.errors import EdgekitWarning
    from edgekit.exporters import export

    model = audio[0]
    with pytest.warns(EdgekitWarning, match="SYNTHETIC random inputs: int8 ranges will not match real inputs"):
        res = export(model, quantize="int8", calib_samples=100, verify_samples=20, out=tmp_path)
    assert res.calibration.kind == "synthetic" and "[-1, 1]" in res.calibration.source
    assert res["tflite"].verification.status in ("passed", "failed")  # verified on waveforms, not pixels


def test_non_image_input_refuses_image_sources_and_preprocessing(tmp_path):
    from edgekit.exporters import export

    model = mm.audio("tonesbad")
    with pytest.raises(DataError, match=r"holds images, but input 'wave' takes \(43844, 1\) arrays"):
        export(model, verify_data="fashion-mnist", out=tmp_path / "out")
    with pytest.raises(InvalidArgument, match="preprocess applies to image inputs"):
        export(model, preprocess="tf", out=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_free_dimensions_take_the_input_shape_option(tmp_path):
    """A model file with a free H/W: the error names --input-shape (it used to say --resolution, which model files
    refuse), and input_shape fixes it."""
    from edgekit._keras import keras, layers
    from edgekit.exporters import export

    inp = keras.Input((None, None, 3), name="img")
    m = keras.Model(inp, layers.Dense(4, activation="softmax")(layers.GlobalAveragePooling2D()(
        layers.Conv2D(8, 3)(inp))), name="freehw")
    path = tmp_path / "freehw.keras"
    m.save(path)
    with pytest.raises(InvalidArgument, match=r"input 'img' of model 'freehw' has free dimensions") as info:
        export(str(path), out=tmp_path / "out")
    assert "--input-shape" in info.value.hint and not (tmp_path / "out").exists()
    res = export(str(path), input_shape="24,24,3", formats="tflite,onnx", out=tmp_path / "out", verify_samples=8)
    assert all(a.verification.status != "failed" for a in res.artifacts)
    man = json.loads(res["onnx"].manifest.read_text())
    assert man["model"]["input_shape"] == [24, 24, 3] and man["inputs"][0]["shape"][1:] == [24, 24, 3]


def test_constant_outputs_are_inconclusive_not_failed(tmp_path):
    """An untrained model whose output is the same for every input: kept, status inconclusive, in the manifest."""
    from edgekit._keras import keras, layers
    from edgekit.exporters import export

    inp = keras.Input((8, 8, 1), name="img")
    x = layers.Conv2D(4, 3, kernel_initializer="zeros", name="c")(inp)
    out = layers.Dense(3, activation="softmax", name="p")(layers.Flatten()(x))
    res = export(keras.Model(inp, out, name="flat"), formats="tflite,onnx", out=tmp_path, verify_samples=10)
    for art in res.artifacts:
        v = art.verification
        assert v.status == "inconclusive" and not v.passed and not v.failures and "inconclusive" in v.note
        man = json.loads(art.manifest.read_text())
        assert man["verification"]["status"] == "inconclusive"
        assert not any("FAILED" in w for w in art.warnings)


@pytest.mark.slow
def test_cli_shows_every_output_and_takes_an_npz_per_input(tmp_path):
    from click.testing import CliRunner

    from edgekit.cli import main

    path = tmp_path / "twoin.keras"
    mm.two_input("twocli").save(path)
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "v.npz", zimage=rng.random((30, 32, 32, 1), dtype=np.float32), ameta=rng.normal(0, 1, (30, 5)))
    r = CliRunner().invoke(main, ["export", str(path), "--quantize", "fp16", "--format", "tflite,onnx",
                                  "--verify-data", str(tmp_path / "v.npz"), "--out", str(tmp_path / "out")],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    for fmt in ("tflite", "onnx"):
        line = next(ln for ln in r.stdout.splitlines() if ln.startswith(f"twocli_float16.{fmt}: "))
        assert "zcls SQNR" in line and "abox SQNR" in line and "top-1" in line


@pytest.mark.slow
def test_keras3_three_outputs_are_paired_by_name(tmp_path):
    """A Keras 3 .keras with three heads (Keras order zbox, mland, acls; the converters emit them sorted): exported
    through Keras 3's own path, each output is paired with the artifact's output of the same name and passes."""
    from edgekit.exporters import THRESHOLDS, export
    from edgekit.runtimes import load

    path = mm.keras3_heads(tmp_path / "k3heads.keras")
    x, y = mm.keras3_heads_data(300, seed=1)
    np.save(tmp_path / "calib.npy", x[:200])
    for quantize in ("int8", "fp16"):
        kw = dict(calib_data=tmp_path / "calib.npy") if quantize == "int8" else {}
        res = export(str(path), quantize=quantize, formats="tflite,onnx", out=tmp_path / "out",
                     verify_data=(x[200:], y["acls"][200:]), **kw)
        th = THRESHOLDS[res["tflite"].precision]
        assert [o.key for o in load(res["tflite"].path).outputs] == ["acls", "mland", "zbox"]  # not Keras order
        for art in res.artifacts:
            v = art.verification
            print(f"{art.path.name}: " + ", ".join(f"{c.name} SQNR {c.sqnr_db:.1f} dB" + (
                f" top-1 {c.top1_agreement:.2f}" if c.classifier else "") for c in v.outputs))
            assert v.status == "passed", (art.path.name, v.failures)
            assert [c.name for c in v.outputs] == ["zbox", "mland", "acls"]   # Keras order, paired by name
            assert {c.matched_by for c in v.outputs} == {"name"} and [c.shape for c in v.outputs] == [[4], [6], [3]]
            assert [c.classifier for c in v.outputs] == [False, False, True]
            assert all(c.sqnr_db >= th["min_sqnr_db"] for c in v.outputs)
            assert v.top1_agreement >= th.get("min_top1_agreement", 0.0) and v.keras_accuracy > 0.9
            assert json.loads(art.manifest.read_text())["conversion"]["converter"].startswith("keras 3 ExportArchive")
