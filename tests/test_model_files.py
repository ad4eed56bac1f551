"""Model files: the format is told by content, and ``input_shape`` fixes free input dimensions (same weights)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from edgekit import models
from edgekit.cli import main
from edgekit.errors import InvalidArgument
from edgekit.models import parse_input_shape
from edgekit.profiling import profile


@pytest.fixture(scope="module")
def free_cnn(tmp_path_factory):
    """A tf-keras CNN with free H and W (global pooling head), saved as .keras, and the model."""
    from edgekit._keras import keras, layers

    inp = layers.Input((None, None, 3), name="image")
    x = layers.Conv2D(8, 3, strides=2, padding="same", name="conv")(inp)
    x = layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = layers.Conv2D(16, 1, name="pw")(x)
    out = layers.Dense(4, name="fc")(layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inp, out, name="free_cnn")
    path = tmp_path_factory.mktemp("free") / "free_cnn.keras"
    model.save(str(path))
    return path, model


@pytest.fixture
def cli(monkeypatch, tmp_path):
    monkeypatch.setenv("EDGEKIT_CACHE", str(tmp_path / "cache"))
    runner = CliRunner()
    return lambda *args: runner.invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.mark.parametrize("value, expected", [
    ("224,224,3", [(None, (224, 224, 3))]),
    ("224x224x3", [(None, (224, 224, 3))]),
    ("(64, 64, 1)", [(None, (64, 64, 1))]),
    ("224,224,3;16", [(None, (224, 224, 3)), (None, (16,))]),
    ("image=224,224,3; mask=16", [("image", (224, 224, 3)), ("mask", (16,))]),
    ((224, 224, 3), [(None, (224, 224, 3))]),
    ([(8, 8, 1), (4,)], [(None, (8, 8, 1)), (None, (4,))]),
    ({"a": [43844, 1]}, [("a", (43844, 1))]),
])
def test_input_shape_forms(value, expected):
    assert parse_input_shape(value) == expected


@pytest.mark.parametrize("value", ["", "224,abc,3", "0,224,3", "-1,2", 3, None, ";", "a="])
def test_bad_input_shape_has_a_hint(value):
    with pytest.raises(InvalidArgument, match="input_shape must be dims without the batch") as info:
        parse_input_shape(value)
    assert "--input-shape 224,224,3" in info.value.hint


def test_free_dims_fixed_by_input_shape(free_cnn, cli):
    path, model = free_cnn
    with pytest.raises(InvalidArgument, match="unknown shape") as info:
        profile(str(path))
    assert "--input-shape" in info.value.hint
    fixed = models.create(path, input_shape=(64, 48, 3))
    assert tuple(fixed.input_shape) == (None, 64, 48, 3) and fixed.name == "free_cnn"
    x = np.random.default_rng(0).random((2, 64, 48, 3), dtype=np.float32)
    np.testing.assert_allclose(fixed.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    rep = profile(str(path), input_shape="64,48,3")
    macs = {r.name: r.mult_adds for r in rep.layers}
    assert macs["conv"] == 32 * 24 * 9 * 3 * 8 and macs["pw"] == 32 * 24 * 8 * 16 and macs["fc"] == 16 * 4
    res = cli("profile", path, "--input-shape", "64,48,3", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["total_mult_adds"] == rep.total_mult_adds
    # the same on a model object, and by input name
    assert tuple(models.resolve(model, input_shape={"image": (32, 32, 3)}).input_shape) == (None, 32, 32, 3)


@pytest.mark.slow
def test_free_dims_export_with_input_shape(free_cnn, tmp_path):
    from edgekit.exporters import export

    path, _ = free_cnn
    res = export(str(path), quantize="fp16", out=tmp_path, input_shape="40,40,3", verify_samples=10)
    art = res.artifacts[0]
    assert art.verification.passed and json.loads(art.manifest.read_text())["model"]["input_shape"] == [40, 40, 3]


@pytest.mark.parametrize("shape, words", [
    ((64, 64), "does not fit input 'image'"),             # wrong rank
    ((64, 64, 1), "does not fit input 'image'"),          # fixed channel dim changed
    ("image=64,64,3;mask=4", "gives 2 shape.s.; model .free_cnn. has 1 input"),
    ("mask=64,64,3", "names input 'mask'"),
])
def test_input_shape_that_does_not_fit(free_cnn, shape, words):
    path, _ = free_cnn
    with pytest.raises(InvalidArgument, match=words) as info:
        models.create(path, input_shape=shape)
    assert info.value.hint


def test_input_shape_is_for_model_files_only():
    with pytest.raises(InvalidArgument, match="input_shape applies to model files") as info:
        models.create("mobilenet_v1", input_shape=(64, 64, 3))
    assert "--resolution" in info.value.hint


def test_fixed_model_with_the_same_shape_is_unchanged(tmp_path):
    from edgekit._keras import keras, layers

    inp = layers.Input((8, 8, 1))
    m = keras.Model(inp, layers.Dense(2)(layers.Flatten()(inp)))
    assert models.with_input_shape(m, (8, 8, 1)) is m


def test_multi_input_sequential_and_keras3(tmp_path):
    import keras as keras3

    from edgekit._keras import keras, layers

    a, b = layers.Input((None, None, 3), name="a"), layers.Input((None, 2), name="b")
    pooled = layers.GlobalAveragePooling2D()(layers.Conv2D(4, 1)(a))
    two = keras.Model([a, b], layers.Concatenate()([pooled, layers.GlobalAveragePooling1D()(layers.Dense(4)(b))]))
    fixed = models.with_input_shape(two, "b=5,2;a=8,8,3")
    assert [tuple(t.shape) for t in fixed.inputs] == [(None, 8, 8, 3), (None, 5, 2)]
    seq = keras.Sequential([layers.Input((None, 2)), layers.Dense(3)])
    assert tuple(models.with_input_shape(seq, (7, 2)).input_shape) == (None, 7, 2)
    i3 = keras3.Input((None, None, 1))
    k3 = keras3.Model(i3, keras3.layers.GlobalMaxPooling2D()(keras3.layers.Conv2D(2, 3)(i3)))
    path = tmp_path / "k3free.keras"
    k3.save(str(path))
    fixed3 = models.create(path, input_shape=(16, 16, 1))
    assert tuple(fixed3.inputs[0].shape) == (None, 16, 16, 1)
    x = np.ones((1, 16, 16, 1), np.float32)
    np.testing.assert_allclose(fixed3.predict(x, verbose=0), k3.predict(x, verbose=0), atol=1e-6)


def test_format_by_content_not_suffix(tmp_path, free_cnn):
    """A .keras archive named .h5 and an HDF5 model named .keras load (as the Keras loaders would read them)."""
    from edgekit._keras import keras, layers

    path, _ = free_cnn
    renamed = tmp_path / "archive.h5"
    renamed.write_bytes(path.read_bytes())
    assert models.create(renamed).name == "free_cnn"
    inp = layers.Input((4,))
    h5 = tmp_path / "real.h5"
    keras.Model(inp, layers.Dense(2)(inp), name="tiny").save(str(h5))
    disguised = tmp_path / "disguised.keras"
    disguised.write_bytes(h5.read_bytes())
    assert models.create(disguised).name == "tiny"
    assert models.preprocess_mode(str(disguised)) == "unit"


def test_keras3_h5_and_exported_savedmodel(tmp_path):
    """Keras 3 also writes legacy .h5 (loaded as Keras 3); a SavedModel from Keras 3's model.export() holds no Keras
    model at all: a clear error naming what to pass instead."""
    import keras as keras3

    from edgekit import _keras3
    from edgekit.errors import ModelLoadError

    inp = keras3.Input((6,))
    m = keras3.Model(inp, keras3.layers.Dense(2)(inp), name="k3h5")
    m.save(str(tmp_path / "k3.h5"))
    loaded = models.create(tmp_path / "k3.h5")
    assert _keras3.is_model(loaded) and loaded.name == "k3h5"
    m.export(str(tmp_path / "exported"), verbose=False)
    with pytest.raises(ModelLoadError, match="holds no Keras model") as info:
        models.create(tmp_path / "exported")
    assert ".keras" in info.value.hint


def test_tfmot_wrapped_files_load(tmp_path):
    """A model saved with its pruning wrappers (.keras) or QAT layers (.h5) loads inside tfmot's scopes (a pruned
    .keras failed with "'str' object is not callable"); a QAT .keras, which tfmot cannot reload, says so."""
    from edgekit._keras import tfmot
    from edgekit.errors import ModelLoadError

    mot = tfmot()

    def small():
        return models.create("mobilenet_v1", alpha=0.25, resolution=32, input_channels=1, classes=10, weights="none")

    mot.sparsity.keras.prune_low_magnitude(small()).save(str(tmp_path / "pruned.keras"))
    pruned = models.create(tmp_path / "pruned.keras")
    assert any(type(layer).__name__ == "PruneLowMagnitude" for layer in pruned.layers)
    qat = mot.quantization.keras.quantize_model(small())
    qat.save(str(tmp_path / "qat.h5"))
    assert models.create(tmp_path / "qat.h5").count_params() == qat.count_params()
    qat.save(str(tmp_path / "qat.keras"))
    with pytest.raises(ModelLoadError, match="cannot load model") as info:
        models.create(tmp_path / "qat.keras")
    assert "tfmot wrappers" in info.value.hint and ".h5" in info.value.hint
