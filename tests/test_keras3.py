"""Keras 3 model files (``keras>=3`` .keras): loaded as Keras 3 models, profiled and exported directly (verification
against the Keras 3 model), inspected and benchmarked; translated to tf-keras (same outputs within 1e-5) for the
compression stages, which a Keras 3 MobileNet goes through (prune 0.5 + int8, sparsity read from the .tflite)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from edgekit import _keras3, models
from edgekit.cli import main
from edgekit.errors import InvalidArgument, ModelLoadError


def _residual_cnn(keras):
    """A functional CNN with residual adds and the everyday layers of a mobile model (and Keras 3 ops: x + y)."""
    L = keras.layers
    inp = keras.Input((32, 32, 3), name="image")
    x = L.Rescaling(2.0, offset=-1.0)(inp)
    x = L.ZeroPadding2D(1)(x)
    x = L.Conv2D(16, 3, strides=2, use_bias=False, name="stem")(x)
    x = L.BatchNormalization()(x)
    x = L.Activation("relu6")(x)
    y = L.SeparableConv2D(16, 3, padding="same", activation="hard_swish")(x)
    y = L.BatchNormalization()(y)
    x = L.Add(name="residual_1")([x, y])
    y = L.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    y = L.Conv2D(16, 1, activation="silu")(y)
    x = x + y                                       # a Keras 3 op, not a layer
    s = L.GlobalAveragePooling2D(keepdims=True)(x)
    s = L.Dense(16, activation="hard_sigmoid")(s)
    x = L.Multiply()([x, s * 2.0])
    x = L.Concatenate()([L.MaxPooling2D(2)(x), L.AveragePooling2D(2)(x)])
    x = L.Dropout(0.2)(L.Reshape((8 * 8 * 32,))(x))
    out = L.Dense(10, activation="softmax", name="probs")(L.LeakyReLU(0.1)(L.Dense(32)(x)))
    return keras.Model(inp, out, name="residual_cnn")


BUILDERS = {
    "mobilenet": lambda k: k.applications.MobileNet(weights=None, input_shape=(32, 32, 3), alpha=0.25, classes=10),
    "mobilenet_v2": lambda k: k.applications.MobileNetV2(weights=None, input_shape=(32, 32, 3), alpha=0.35,
                                                         classes=10),
    "residual_cnn": _residual_cnn,
}


def images(n: int, seed: int, labels: bool = False):
    """Image-like 32x32x3 inputs of 10 kinds (coarse 4x4 patterns, each varied, per-image contrast, a little pixel
    noise), with their kinds as labels when asked: i.i.d. pixel noise makes every input look alike to a deep net."""
    protos = np.random.default_rng(1234).random((10, 4, 4, 3), dtype=np.float32)
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    coarse = protos[y] + 0.1 * rng.standard_normal((n, 4, 4, 3)).astype(np.float32)
    x = np.kron(coarse, np.ones((1, 8, 8, 1), np.float32)) * rng.uniform(0.7, 1.0, (n, 1, 1, 1))
    x = (x + 0.05 * rng.random((n, 32, 32, 3))).astype(np.float32)
    return (x, y) if labels else x


def set_weights_like_trained(keras, model, seed: int = 0) -> None:
    """Deterministic, non-trivial weights without training. With Keras' initialisation and identity BatchNorm
    statistics a random MobileNet's activations shrink ~100x per block and every input gives the same output
    (verification could only say "inconclusive"); with per-channel statistics alone a BatchNorm network at random
    init is chaotic and amplifies any rounding error, and a random head gives near-ties that no int8 model
    reproduces. So: BatchNorm moving statistics measured on a batch of :func:`images` (every layer normalised),
    gamma 0.5 and beta in [1, 2] (ReLUs mostly in their linear range, as in trained models), and a nearest-class-
    mean head (the last layer with a bias) on the penultimate features of the 10 kinds of image."""
    rng = np.random.default_rng(seed)
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in bns:
        c = layer.gamma.shape[0]
        layer.gamma.assign(np.full(c, 0.5, np.float32))
        layer.beta.assign(rng.uniform(1.0, 2.0, c).astype(np.float32))
    x, y = images(200, seed, labels=True)
    if bns:   # training=True normalises each layer by its batch statistics: the values to store
        for layer, a in zip(bns, keras.Model(model.inputs, [b.input for b in bns])([x], training=True)):
            a = np.asarray(a)
            layer.moving_mean.assign(a.mean(axis=tuple(range(a.ndim - 1))))
            layer.moving_variance.assign(a.var(axis=tuple(range(a.ndim - 1))))
    head = [layer for layer in model.layers if getattr(layer, "bias", None) is not None][-1]
    f = np.asarray(keras.Model(model.inputs, head.input)([x], training=False)).reshape(len(x), -1)
    mu = f.mean(axis=0)
    m = np.stack([f[y == k].mean(axis=0) for k in range(10)]) - mu
    s = 2.0 / np.abs(m @ m.T).mean()   # logits of a few units: confident, not saturated
    head.kernel.assign((s * m.T).reshape(head.kernel.shape).astype(np.float32))
    head.bias.assign((s * (-(m @ mu) - 0.5 * (m * m).sum(axis=1))).astype(np.float32))


@pytest.fixture(scope="module")
def k3_files(tmp_path_factory):
    """{name: path} of Keras 3 models saved by Keras 3 as .keras (untrained, 32x32x3 -> 10 classes, outputs that
    depend on the input: :func:`set_weights_like_trained`)."""
    import keras

    assert int(keras.__version__.split(".")[0]) >= 3
    root = tmp_path_factory.mktemp("keras3")
    paths = {}
    for name, build in BUILDERS.items():
        keras.utils.set_random_seed(0)
        paths[name] = root / f"{name}.keras"
        model = build(keras)
        set_weights_like_trained(keras, model)
        x, y = images(100, 1, labels=True)
        p = np.asarray(model(x, training=False))
        assert np.mean(p.argmax(axis=1) == y) > 0.9 and 0.3 < p.max(axis=1).mean() < 0.99, name
        model.save(str(paths[name]))
    return paths


@pytest.fixture
def cli(monkeypatch, tmp_path):
    monkeypatch.setenv("EDGEKIT_CACHE", str(tmp_path / "cache"))
    runner = CliRunner()
    return lambda *args: runner.invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_keras3_files_load_as_keras3_models(k3_files):
    from edgekit._keras import keras as tfk

    for path in k3_files.values():
        m = models.create(path)
        assert _keras3.is_model(m) and not isinstance(m, tfk.Model)
    # a tf-keras model is not a Keras 3 one
    assert not _keras3.is_model(models.create("mobilenet_v1", alpha=0.25, resolution=32, weights="none"))


@pytest.mark.parametrize("name", list(BUILDERS))
def test_translation_to_tf_keras_is_exact(k3_files, name):
    from edgekit._keras import keras as tfk

    m = models.create(k3_files[name])
    t = _keras3.to_tf_keras(m)   # checks every layer on its own inputs: max abs error <= 1e-5 (relative)
    assert isinstance(t, tfk.Model) and t.name == m.name and t.count_params() == m.count_params()
    x, _ = images(16, 3, labels=True)
    ref, got = m.predict(x, verbose=0), t.predict(x, verbose=0)
    assert ref.std(axis=0).max() > 0.1   # outputs that depend on the input
    # end to end, float32 rounding of ~50 layers adds up (1.3e-5 on MobileNetV2's probabilities)
    assert np.max(np.abs(ref - got)) <= 1e-4
    assert models.resolve(k3_files[name], tf_keras=True).count_params() == m.count_params()


def test_translation_check_finds_a_wrong_layer_the_output_does_not_show(monkeypatch):
    """A model whose output is the same for every input (as Keras' own random MobileNet's is: its activations
    vanish); a translation that doubles its conv's output still gives that output, and the check names the layer."""
    import keras

    inp = keras.Input((8, 8, 3), name="img")
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3, activation="relu", name="conv1")(inp))
    m = keras.Model(inp, keras.layers.Dense(3, activation="softmax", kernel_initializer="zeros")(x), name="flat3")
    x = np.random.default_rng(0).random((4, 8, 8, 3), dtype=np.float32)
    assert np.asarray(m(x)).std(axis=0).max() < 1e-6   # constant output
    make = _keras3._Translator.make

    def wrong(self, op):
        fn = make(self, op)
        if op.name != "conv1":
            return fn
        double = self.tfk.layers.Rescaling(2.0, name="conv1_doubled")
        return lambda *a: double(fn(*a))

    monkeypatch.setattr(_keras3._Translator, "make", wrong)
    t = _keras3.to_tf_keras(m, check=False)
    assert np.max(np.abs(np.asarray(m(x)) - np.asarray(t(x)))) < 1e-6   # the output cannot tell
    with pytest.raises(ModelLoadError, match="differs from it at layer 'conv1' by"):
        _keras3.to_tf_keras(m)


def test_profile_keras3_equals_tf_keras(k3_files):
    from edgekit.profiling import profile

    k3 = profile(str(k3_files["mobilenet"]))
    zoo = profile("mobilenet_v1", alpha=0.25, resolution=32, classes=10)   # the same network, built by edgekit
    assert (k3.total_mult_adds, k3.total_params, len(k3.separable)) == \
           (zoo.total_mult_adds, zoo.total_params, len(zoo.separable))
    assert k3.peak_memory.elements == zoo.peak_memory.elements
    for name in ("mobilenet_v2", "residual_cnn"):
        a = profile(str(k3_files[name]))
        b = profile(models.resolve(k3_files[name], tf_keras=True))
        assert (a.total_mult_adds, a.total_params) == (b.total_mult_adds, b.total_params) and a.total_mult_adds > 0


@pytest.mark.slow
@pytest.mark.parametrize("name", list(BUILDERS))
def test_export_verify_inspect_bench(k3_files, tmp_path, cli, name):
    """tflite int8 + fp16 and onnx, verified against the Keras 3 model; then inspect and bench each artifact."""
    from edgekit.devices import bench
    from edgekit.exporters import export, inspect

    path = str(k3_files[name])
    np.save(tmp_path / "images.npy", images(140, 2))
    arts = []
    for quantize in ("int8", "fp16"):
        # int8 calibrates on 120 of the images and verifies on the other 20; fp16 verifies on 20 of them
        data = {"calib_data" if quantize == "int8" else "verify_data": str(tmp_path / "images.npy")}
        # MobileNetV2's tf2onnx conversion is the suite's slowest: its float16 ONNX is left to the other models
        formats = "tflite" if (name, quantize) == ("mobilenet_v2", "fp16") else "tflite,onnx"
        res = export(path, quantize=quantize, formats=formats, out=tmp_path / "out", verify_samples=20,
                     verify=True, **data)
        assert res.model == models.create(path).name
        for a in res.artifacts:
            v = a.verification
            print(f"{a.path.name}: SQNR {v.sqnr_db:.1f} dB, top-1 agreement {v.top1_agreement_all:.2f}")
            assert v.status == "passed", (a.path.name, v.failures, v.sqnr_db, v.top1_agreement)
            assert v.outputs[0].classifier and v.sqnr_db >= (30 if quantize == "fp16" else 10)
            assert json.loads(a.manifest.read_text())["conversion"]["converter"].startswith("keras 3 ExportArchive")
        arts += res.artifacts
    for a in arts:
        rep = inspect(a.path)
        assert rep.inputs[0].shape[1:] == [32, 32, 3] and rep.outputs[0].shape[-1] == 10
    rows = bench([a.path for a in arts], "local", runs=3, warmup=1)
    assert [r.status for r in rows] == ["ok"] * len(arts) and all(r.p50_ms > 0 for r in rows)
    res = cli("inspect", arts[0].path)
    assert res.exit_code == 0 and "int8" in res.stdout


def test_unsupported_layer_is_a_clear_error(tmp_path, cli):
    import keras

    inp = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3)(inp)
    x = keras.layers.GroupNormalization(groups=2, name="groupnorm")(x)
    m = keras.Model(inp, keras.layers.Dense(2)(keras.layers.Flatten()(x)), name="gn")
    path = tmp_path / "gn.keras"
    m.save(str(path))
    with pytest.raises(InvalidArgument, match="layer 'groupnorm' \\(GroupNormalization\\) has no tf-keras"):
        models.resolve(path, tf_keras=True)
    from edgekit.profiling import profile

    assert profile(str(path)).total_params == m.count_params()   # profiling needs no translation
    res = cli("train", path, "--data", "digits", "--epochs", "1")
    assert res.exit_code == 2 and "groupnorm" in res.stderr and res.stderr.startswith("error:")


@pytest.mark.slow
def test_compress_keras3_mobilenet_prune_int8(k3_files, tmp_path, cli, fashion_mnist_available):
    out = tmp_path / "out"
    res = cli("compress", k3_files["mobilenet"], "--data", "fashion-mnist", "--prune", "0.5", "--prune-epochs", "1",
              "--quantize", "int8", "--limit", "256", "--test-limit", "128", "--calib-samples", "64", "--out", out,
              "--json")
    assert res.exit_code == 0, res.output
    result = json.loads(res.stdout)
    art = result["report"]["artifacts"][0]
    assert art["path"].endswith("_int8.tflite")
    assert art["weights"]["pruned_sparsity"] == pytest.approx(0.5, abs=0.02)   # read from the .tflite buffers
    from edgekit.compression.artifacts import tflite_weight_tensors

    kernels = [arr for _, arr, _, _ in tflite_weight_tensors(art["path"]) if arr.size >= 512]
    halves = [float(np.mean(arr == 0)) for arr in kernels if abs(float(np.mean(arr == 0)) - 0.5) <= 0.02]
    assert len(halves) >= 5   # the pruned kernels themselves, read independently from the file


@pytest.fixture(scope="module")
def k3_digits(tmp_path_factory):
    """A small Keras 3 CNN for 8x8x1 digits; Keras 3's export names its tensors ``k3d_1/c1_1/...``."""
    import keras

    keras.utils.set_random_seed(0)
    L = keras.layers
    inp = keras.Input((8, 8, 1), name="img")
    x = L.Conv2D(8, 3, activation="relu", name="c1")(inp)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    path = tmp_path_factory.mktemp("k3d") / "k3d.keras"
    keras.Model(inp, L.Dense(10, activation="softmax", name="fc")(x), name="k3d").save(str(path))
    return path


@pytest.mark.slow
def test_doctor_and_float_layers_map_keras3_tensor_names_to_layers(k3_digits, tmp_path):
    """Keras 3's scopes carry a ``_<n>`` suffix (``k3d_1/c1_1/convolution``): the doctor maps every quantized op to
    its Keras 3 layer and ``float_layers=c1`` keeps that conv float (not just the SOFTMAX named by the signature)."""
    from edgekit import _tflite
    from edgekit.doctor import run as doctor
    from edgekit.exporters import export

    res = doctor(str(k3_digits), calib_data="digits", eval_data="digits", calib_samples=100, eval_samples=100,
                 diagnose_samples=8)
    rows = {(s.op, s.layer) for s in res.layers}
    assert {("CONV_2D", "c1"), ("FULLY_CONNECTED", "fc"), ("MEAN", "gap"), ("SOFTMAX", "fc")} <= rows, rows
    out = export(str(k3_digits), quantize="int8", calib_data="digits", calib_samples=100, float_layers="c1",
                 out=tmp_path, verify=False)
    art = out["tflite"]
    g = _tflite.read(art.path.read_bytes()).main
    weights = {g.tensors[op.outputs[0]].name: g.tensors[op.inputs[1]] for op in g.operators if op.name == "CONV_2D"}
    assert len(weights) == 1 and all(w.dtype == "float32" and not w.quantized for w in weights.values()), weights
    fc = [g.tensors[op.inputs[1]] for op in g.operators if op.name == "FULLY_CONNECTED"]
    assert fc and all(w.dtype == "int8" for w in fc)   # the rest is still int8
    assert json.loads(art.manifest.read_text())["conversion"]["float_layer_nodes"]["c1"]


def test_layer_names_match_exactly_first_then_without_the_scope_suffix():
    from edgekit.exporters._float_layers import layers_in

    assert layers_in("k3d_1/c1_1/Relu;k3d_1/c1_1/convolution", {"c1", "fc"}) == ["c1"]
    assert layers_in("model/c1_1/Conv2D", {"c1", "c1_1"}) == ["c1_1"]      # a layer named c1_1 is itself
    assert layers_in("model/block_12/Conv2D", {"blocks"}) == []
    assert layers_in("model/block_12/Conv2D", {"block", "block_12"}) == ["block_12"]
    assert layers_in("StatefulPartitionedCall_1:0", {"fc"}) == []
