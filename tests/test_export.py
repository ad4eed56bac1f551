"""Round-trip every exporter x precision in the registry through its runtime and compare with Keras.

A small MobileNet-style net is trained for a moment on real Fashion-MNIST, exported once per precision (all formats
of a precision in one call, sharing one calibration set of real samples) and reused by every test here.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgekit.exporters import EXPORTERS, PRECISIONS, TOLERANCES
from edgekit.verification import verify_outputs

PAIRS = [(fmt, prec) for fmt in EXPORTERS.list() for prec in EXPORTERS.get(fmt).precisions]
CALIB = 200


def tiny_net(name: str = "tinynet"):
    from edgekit._keras import keras, layers

    inp = keras.Input((32, 32, 1), name="image")
    x = layers.Conv2D(16, 3, strides=2, padding="same", use_bias=False, name="conv1")(inp)
    x = layers.BatchNormalization(name="conv1_bn")(x)
    x = layers.ReLU(6.0, name="conv1_relu")(x)
    x = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw1")(x)
    x = layers.BatchNormalization(name="dw1_bn")(x)
    x = layers.ReLU(6.0, name="dw1_relu")(x)
    x = layers.Conv2D(32, 1, name="pw1")(x)
    x = layers.ReLU(6.0, name="pw1_relu")(x)
    x = layers.Conv2D(64, 3, strides=2, padding="same", name="conv2")(x)  # >= 1024 weights: dynamic-range quantizes it
    x = layers.ReLU(6.0, name="conv2_relu")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    out = layers.Dense(10, activation="softmax", name="predictions")(x)
    return keras.Model(inp, out, name=name)


@pytest.fixture(scope="module")
def trained(fashion_mnist_available):
    from edgekit._keras import tf
    from edgekit.data import load

    tf.keras.utils.set_random_seed(0)
    ds = load("fashion-mnist", input_shape=(32, 32, 1), split="train", limit=3000, seed=7)
    model = tiny_net()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(ds.x, ds.y, epochs=2, batch_size=64, verbose=0)
    return model


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    """{precision: ExportResult}: one export call per precision with every format that supports it."""
    from edgekit.exporters import export

    out = tmp_path_factory.mktemp("artifacts")
    results = {}
    for prec in PRECISIONS.list():
        fmts = [f for f in EXPORTERS.list() if prec in EXPORTERS.get(f).precisions]
        kw = dict(calib_data="fashion-mnist", calib_samples=CALIB) if PRECISIONS.get(prec).calibrated else \
            dict(verify_data="fashion-mnist")
        results[prec] = export(trained, quantize=prec, formats=fmts, out=out, verify_samples=100, **kw)
    return results


@pytest.mark.slow
@pytest.mark.parametrize("fmt,prec", PAIRS)
def test_round_trip_matches_keras(exported, trained, fmt, prec):
    from edgekit.data import load
    from edgekit.runtimes import load as load_runtime

    art = exported[prec][fmt]
    assert art.path.is_file() and art.manifest.is_file()
    assert art.path.name == f"tinynet_{PRECISIONS.get(prec).name}{EXPORTERS.get(fmt).suffix}"
    v = art.verification
    assert v.passed, v.failures
    assert v.samples == 100
    # independent check through the runtime registry on fresh real test images, against the library's own
    # thresholds (not looser ones): its primary criteria, without the output-LSB fallback
    x = load("fashion-mnist", input_shape=(32, 32, 1), split="test", limit=100, seed=3).x
    ref = trained.predict(x, verbose=0)
    sess = load_runtime(art.path)
    assert sess.name == EXPORTERS.entry(fmt).meta["runtime"]
    got = np.concatenate([sess.predict(x[i:i + 1])[0] for i in range(len(x))])
    label = PRECISIONS.get(prec).name
    check = verify_outputs([ref], [got], precision=label)
    assert check.passed, check.failures
    th = TOLERANCES[label]
    floor = th.agreement if th.max_err_lsb else 0.0  # the old rule's top-1 threshold: int8 and int16x8 only
    assert check.outputs[0].classifier and check.top1_agreement_all >= floor
    assert check.sqnr_db >= (th.min_sqnr_db if th.min_sqnr_db is not None else -np.inf)
    assert check.max_abs_err <= (th.max_abs_err if th.max_abs_err is not None else np.inf)


@pytest.mark.slow
@pytest.mark.parametrize("fmt,prec", PAIRS)
def test_manifest_describes_artifact(exported, fmt, prec):
    from edgekit._io import sha256_file as sha256

    art = exported[prec][fmt]
    man = json.loads(art.manifest.read_text())
    assert man["artifact"]["file"] == art.path.name
    assert man["artifact"]["sha256"] == sha256(art.path) == art.sha256
    assert man["artifact"]["size_bytes"] == art.path.stat().st_size
    assert man["artifact"]["weights_bytes"] + man["artifact"]["graph_bytes"] == art.size_bytes
    assert man["precision"] == PRECISIONS.get(prec).name and "quantize" not in man
    assert man["model"]["name"] == "tinynet" and man["model"]["input_shape"] == [32, 32, 1]
    assert man["tools"]["tensorflow"] and man["tools"]["onnxruntime"] and man["edgekit"]
    assert man["inputs"][0]["shape"][1:] == [32, 32, 1] and man["outputs"][0]["shape"][-1] == 10
    assert sum(man["ops"].values()) > 3
    assert man["verification"]["passed"] is True
    if PRECISIONS.get(prec).calibrated:
        assert man["calibration"] == {**man["calibration"], "kind": "data", "source": "fashion-mnist:train",
                                      "count": CALIB}
        assert "held-out" in man["verification_data"]
        # labelled real data: both accuracies recorded, and int8 keeps the float model's accuracy within a few points
        v = man["verification"]
        assert abs(v["keras_accuracy"] - v["artifact_accuracy"]) <= 0.05
    else:
        assert man["calibration"]["kind"] == "none"


@pytest.mark.slow
@pytest.mark.parametrize("prec", PRECISIONS.list())
def test_artifact_computes_in_its_precision(exported, prec):
    for art in exported[prec].artifacts:  # one vocabulary: what it computes in is named like the precision asked
        assert art.computes_in == prec, (art.path.name, art.computes_in)


@pytest.mark.slow
def test_int8_is_smaller_and_full_integer(exported):
    f32 = exported["float32"]["tflite"]
    i8 = exported["int8"]["tflite"]
    from edgekit.exporters import inspect

    rep = inspect(i8.path)
    assert not rep.warnings, rep.warnings
    assert set(rep.weight_dtypes) <= {"int8", "int32"}
    assert rep.inputs[0].dtype == "float32" and rep.inputs[0].via == "quantize"
    assert inspect(f32.path).weights_bytes > 3 * rep.weights_bytes


@pytest.mark.slow
def test_formats_share_one_calibration(exported):
    res = exported["int8"]
    assert [a.format for a in res.artifacts] == ["onnx", "tflite"]
    mans = [json.loads(a.manifest.read_text()) for a in res.artifacts]
    assert mans[0]["calibration"] == mans[1]["calibration"]
    assert mans[0]["verification_data"] == mans[1]["verification_data"]


@pytest.mark.slow
@pytest.mark.parametrize("quantize,io", [("int8", "int8"), ("int8", "uint8"), ("int16x8", "int16")])
def test_integer_io_is_quantized_and_verified(trained, tmp_path, quantize, io):
    from edgekit.exporters import export
    from edgekit.runtimes import load

    res = export(trained, quantize=quantize, io=io, calib_data="fashion-mnist", calib_samples=120, out=tmp_path)
    art = res["tflite"]
    assert art.path.name == f"tinynet_{quantize}_{io}-io.tflite"
    sess = load(art.path)
    assert sess.inputs[0].dtype == io and sess.inputs[0].quantized and sess.outputs[0].dtype == io
    th = TOLERANCES[PRECISIONS.get(quantize).name]
    assert art.verification.passed and art.verification.top1_agreement_all >= th.agreement  # int8 / int16x8


@pytest.mark.slow
def test_per_tensor_int8_has_one_scale_per_weight(trained, exported, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    from edgekit.exporters import export

    def conv2_scales(path):
        it = Interpreter(model_path=str(path))
        return [t["quantization_parameters"]["scales"].size for t in it.get_tensor_details()
                if t["dtype"] == np.int8 and list(t["shape"]) == [64, 3, 3, 32]]

    assert conv2_scales(exported["int8"]["tflite"].path) == [64]  # per-channel by default
    res = export(trained, quantize="int8", per_tensor=True, calib_data="fashion-mnist", calib_samples=120,
                 out=tmp_path, formats="tflite")
    assert res["tflite"].path.name == "tinynet_int8_per-tensor.tflite"
    assert conv2_scales(res["tflite"].path) == [1]
    assert json.loads(res["tflite"].manifest.read_text())["per_channel"] is False


@pytest.mark.slow
def test_qat_model_exports_int8_and_is_recorded(tmp_path, fashion_mnist_available):
    from edgekit._keras import tfmot
    from edgekit.exporters import export

    from edgekit.data import load

    qat = tfmot().quantization.keras.quantize_model(tiny_net("tinyqat"))
    ds = load("fashion-mnist", input_shape=(32, 32, 1), split="train", limit=1000, seed=2)
    qat.compile("adam", "sparse_categorical_crossentropy")
    qat.fit(ds.x, ds.y, epochs=1, batch_size=64, verbose=0)  # learned ranges (an untrained one is constant)
    res = export(qat, quantize="int8", out=tmp_path, verify_data="fashion-mnist", verify_samples=50)
    art = res["tflite"]
    man = json.loads(art.manifest.read_text())
    assert man["qat"] is True and man["calibration"]["kind"] == "qat"
    assert art.computes_in == "int8" and art.verification.passed


@pytest.mark.slow
def test_synthetic_calibration_warns_loudly_and_is_recorded(tmp_path):
    from edgekit.errors import EdgekitWarning
    from edgekit.exporters import export

    with pytest.warns(EdgekitWarning, match="SYNTHETIC"):
        res = export(tiny_net("tinysyn"), quantize="int8", calib_samples=20, verify_samples=10, out=tmp_path)
    man = json.loads(res["tflite"].manifest.read_text())
    assert man["calibration"]["kind"] == "synthetic" and man["calibration"]["count"] == 20
    assert "synthetic" in man["verification_data"]


@pytest.mark.slow
def test_few_calibration_samples_warn(tmp_path, fashion_mnist_available):
    from edgekit.errors import EdgekitWarning
    from edgekit.exporters import export

    with pytest.warns(EdgekitWarning, match="only 30 calibration samples"):
        res = export(tiny_net("tinyfew"), quantize="int8", calib_data="fashion-mnist", calib_samples=30,
                     verify_samples=10, out=tmp_path)
    assert res.calibration.count == 30 and Path(res["tflite"].path).is_file()


@pytest.mark.slow
def test_onnx_folds_batchnorm_on_1x1_feature_maps():
    """tf2onnx leaves BN after a 1x1-spatial Conv unfused (Reshape in between); to_onnx folds it into the Conv."""
    import onnxruntime as ort

    from edgekit._keras import keras, layers
    from edgekit.exporters.onnx import to_onnx

    inp = keras.Input((4, 4, 3))
    x = layers.Conv2D(8, 4, name="to1x1")(inp)  # -> 1x1 feature map
    x = layers.BatchNormalization(name="bn")(x)
    x = layers.ReLU(6.0)(x)
    x = layers.Conv2D(5, 1, use_bias=False, name="pw")(x)
    x = layers.BatchNormalization(name="bn2")(x)
    m = keras.Model(inp, layers.Flatten()(x), name="bn1x1")
    rng = np.random.default_rng(0)
    for bn in (m.get_layer("bn"), m.get_layer("bn2")):
        n = bn.gamma.shape[0]
        bn.set_weights([rng.uniform(0.5, 1.5, n), rng.normal(0, 0.2, n), rng.normal(0, 0.2, n), rng.uniform(0.5, 2, n)])
    proto = to_onnx(m, 17)
    assert "BatchNormalization" not in {n.op_type for n in proto.graph.node}
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    x = rng.standard_normal((6, 4, 4, 3)).astype(np.float32)
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(got, m.predict(x, verbose=0), atol=1e-5)


@pytest.mark.slow
def test_calibration_from_an_image_folder(tmp_path, fashion_mnist_available):
    from PIL import Image

    from edgekit.data import DATASETS
    from edgekit.errors import EdgekitWarning
    from edgekit.exporters import export

    images, labels, names = DATASETS.get("fashion-mnist")("test")
    for i in range(40):  # 28x28 grayscale PNGs and JPEGs in class folders, resized to 32x32 by the loader
        d = tmp_path / "imgs" / names[labels[i]].replace("/", "-")
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[i, :, :, 0]).save(d / f"{i}.{'png' if i % 2 else 'jpg'}")
    with pytest.warns(EdgekitWarning, match="calibration samples"):
        res = export(tiny_net("tinyimg"), quantize="int8", calib_data=tmp_path / "imgs", out=tmp_path / "out")
    man = json.loads(res["tflite"].manifest.read_text())
    assert man["calibration"]["kind"] == "data" and man["calibration"]["source"] == str(tmp_path / "imgs")
    assert man["calibration"]["count"] == 32 and man["verification"]["samples"] == 8  # 20% held out
    assert "held-out" in man["verification_data"]


@pytest.mark.slow
def test_calibration_from_in_memory_arrays_and_datasets(tmp_path, fashion_mnist_available):
    """From Python, calib_data/verify_data also take a numpy array, (x, y) or an edgekit.data Dataset."""
    from edgekit.data import load
    from edgekit.exporters import export

    ds = load("fashion-mnist", input_shape=(32, 32, 1), split="test", limit=150, seed=5)
    m = tiny_net("tinymem")
    res = export(m, quantize="int8", calib_data=ds.x[:120], verify_data=(ds.x[120:], ds.y[120:]), out=tmp_path)
    assert res.calibration.count == 120 and res.calibration.source == "array (120, 32, 32, 1)"
    assert res["tflite"].verification.samples == 30 and res["tflite"].verification.keras_accuracy is not None
    res = export(m, quantize="int8", calib_data=ds, calib_samples=100, verify_samples=20, out=tmp_path)
    assert res.calibration.source == "fashion-mnist:test" and res.calibration.count == 100
