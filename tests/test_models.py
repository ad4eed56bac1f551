"""Model zoo: every registered model builds at a small input, options are validated, weights and files handled."""
from __future__ import annotations

import fnmatch
import socket

import numpy as np
import pytest

from edgekit import models
from edgekit.data import PREPROCESS_MODES
from edgekit.errors import InvalidArgument, ModelLoadError, UnknownNameError, WeightsUnavailable

#: models that take > ~3 s to build on a loaded 2-core machine (still run in CI, in the whole suite; the fast loop
#: keeps a smaller member of each family: resnet18/34/50, efficientnet_b0)
SLOW = ("efficientnet_b[1-7]", "densenet*", "resnet101", "resnet152")
NAMES = models.list()


def _param(name: str):
    slow = any(fnmatch.fnmatch(name, p) for p in SLOW)
    return pytest.param(name, marks=pytest.mark.slow) if slow else name


def small_resolution(name: str) -> int:
    return max(models.info(name).min_resolution, 32)


def build_small(name: str):
    """A registry model at its smallest input with 10 classes."""
    return models.create(name, weights="none", resolution=small_resolution(name), classes=10)


def builder_representatives() -> list[str]:
    """One registered model per entrypoint code (EfficientNet B0-B7 share one builder, as do the DenseNets)."""
    firsts: dict[object, str] = {}
    for n in NAMES:
        firsts.setdefault(models.MODELS.get(n).__code__, n)
    return sorted(firsts.values())


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No Keras cache (HOME is empty) and no network, whatever the machine has."""
    monkeypatch.setenv("HOME", str(tmp_path))

    def refuse(*args, **kwargs):
        raise socket.gaierror(-2, "Name or service not known (blocked by test)")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return tmp_path


def test_registry_has_every_family():
    families = {models.info(n).family for n in NAMES}
    assert families == {"mobilenet_v1", "mobilenet_v2", "mobilenet_v3", "efficientnet", "resnet", "vgg", "densenet",
                        "googlenet", "alexnet", "xception", "squeezenet", "shufflenet"}
    for expected in ("mobilenet_v1", "efficientnet_b7", "resnet18", "resnet152", "vgg19", "densenet201",
                     "googlenet", "squeezenet1_1", "shufflenet_v2", "mobilenet_v3_small", "xception", "alexnet"):
        assert expected in NAMES


@pytest.mark.parametrize("name", [_param(n) for n in NAMES])
def test_every_model_builds_small_and_runs(name):
    model = build_small(name)
    res = small_resolution(name)
    assert tuple(model.input_shape) == (None, res, res, 3)
    y = model(np.zeros((1, res, res, 3), np.float32), training=False)
    assert tuple(y.shape) == (1, 10)
    np.testing.assert_allclose(np.asarray(y).sum(), 1.0, rtol=1e-4)   # softmax head
    assert model.name.startswith(name) and model.name.endswith(f"_{res}_10cls")
    names = [layer.name for layer in model.layers]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("name", [_param(n) for n in builder_representatives()])
def test_layer_names_are_deterministic(name):
    from edgekit._keras import layers

    first = [layer.name for layer in build_small(name).layers]
    layers.Add()  # auto-named layers created in between must not shift the zoo's names
    layers.Rescaling(1.0)
    again = build_small(name)
    assert [layer.name for layer in again.layers] == first


@pytest.mark.parametrize("name", NAMES)
def test_info_is_complete(name):
    i = models.info(name)
    assert i.preprocess in PREPROCESS_MODES
    assert i.paper_url.startswith("https://arxiv.org/abs/")
    assert i.input_shape[2] == 3 and i.input_shape[0] >= i.min_resolution
    assert {"classes", "input_channels", "include_top", "resolution", "rho"} <= set(i.options)
    assert i.has_imagenet == bool(i.imagenet_resolutions)


@pytest.mark.parametrize("name", NAMES)
def test_resolution_below_minimum_is_rejected(name):
    low = models.info(name).min_resolution - 1
    with pytest.raises(InvalidArgument, match=rf"at least {low + 1}x{low + 1}"):
        models.create(name, weights="none", resolution=low)


def test_preprocess_modes_match_keras_applications():
    expect = {"mobilenet_v1": "tf", "mobilenet_v2": "tf", "xception": "tf", "resnet50": "caffe", "vgg16": "caffe",
              "densenet121": "torch", "efficientnet_b0": "raw", "mobilenet_v3_small": "raw"}
    assert {n: models.preprocess_mode(n) for n in expect} == expect


def test_alias_and_canonical_names():
    m = models.create("mobilenet", weights="none")
    assert m.name == "mobilenet_v1_1.00_224"
    assert models.info("inception_v1").name == "googlenet"
    m = models.create("mobilenet_v1", weights="none", alpha=0.25, resolution=32)
    assert m.name == "mobilenet_v1_0.25_32"
    m = models.create("mobilenet_v1", weights="none", alpha=0.5, rho=0.5714, input_channels=1, classes=10)
    assert m.name == "mobilenet_v1_0.50_128_1ch_10cls" and tuple(m.input_shape) == (None, 128, 128, 1)
    m = models.create("mobilenet_v1", weights="none", alpha=0.25, resolution=32, include_top=False, depth_multiplier=2)
    assert m.name == "mobilenet_v1_0.25_32_dm2_notop" and len(m.output_shape) == 4


def test_numpy_option_values():
    m = models.create("mobilenet_v1", weights="none", alpha=np.float32(0.25), resolution=np.int64(32),
                      classes=np.int64(10), depth_multiplier=np.int64(1))
    assert m.name == "mobilenet_v1_0.25_32_10cls"


def test_rho_scales_input_not_depth():
    a = models.create("mobilenet_v1", weights="none", alpha=0.25, rho=0.5)
    b = models.create("mobilenet_v1", weights="none", alpha=0.25, resolution=112)
    assert tuple(a.input_shape) == (None, 112, 112, 3)
    assert a.count_params() == b.count_params()   # resolution does not change the weights
    assert a.get_layer("conv_dw_1").depth_multiplier == 1


def test_any_alpha_up_to_1_5():
    m = models.create("mobilenet_v1", weights="none", alpha=0.01, resolution=32)
    assert m.get_layer("conv1").filters == 1      # never fewer than one channel
    m = models.create("mobilenet_v1", weights="none", alpha=1.5, resolution=32)
    assert m.get_layer("conv_pw_13").filters == 1536


@pytest.mark.parametrize("alpha", [0, -0.5, 1.51, 3, 99, "wide", [0.5, 1.0]])
def test_alpha_out_of_range(alpha):
    with pytest.raises(InvalidArgument, match="alpha") as info:
        models.create("mobilenet_v1", weights="none", alpha=alpha)
    assert "--alpha" in info.value.hint   # the hint names the fix: the valid range or one number
    assert "(0, 1.5]" in info.value.hint if not isinstance(alpha, (str, list)) else "one number" in info.value.hint


@pytest.mark.parametrize("model", ["mobilenet_v1", "mobilenet_v2", "mobilenet_v3_small"])
@pytest.mark.parametrize("alpha", [0, 99])
def test_alpha_out_of_range_is_named_before_the_imagenet_weights(model, alpha):
    """Issue 8: without --weights none, ``--alpha 0`` first complained that no ImageNet weights exist for alpha 0."""
    with pytest.raises(InvalidArgument, match=r"alpha must be in \(0, 1\.5\]") as info:
        models.create(model, alpha=alpha)  # default weights: imagenet
    assert "--alpha in (0, 1.5]" in info.value.hint


@pytest.mark.parametrize("options, hint", [
    (dict(resolution=5000), "--resolution between 32 and 4096"),
    (dict(resolution=[128, 224]), "give one integer, e.g. --resolution 224"),
    (dict(rho=1.2), "--rho in (0, 1]"),
    (dict(dropout=1.0), "--dropout in [0, 1)"),
    (dict(classes=0), "--classes 1 or more"),
    (dict(input_channels=0), "--input-channels 1"),
    (dict(depth_multiplier=0), "--depth-multiplier 1"),
])
def test_bad_knobs_have_a_hint_naming_the_range(options, hint):
    with pytest.raises(InvalidArgument) as info:
        models.create("mobilenet_v1", weights="none", **options)
    assert info.value.hint and hint in info.value.hint


@pytest.mark.parametrize("options, match", [
    (dict(rho=0.5, resolution=112), "either rho or resolution"),
    (dict(rho=1.2), r"rho must be in \(0, 1\]"),
    (dict(classes=0), "classes"),
    (dict(input_channels=0), "input_channels"),
    (dict(depth_multiplier=0), "depth_multiplier"),
    (dict(dropout=1.0), "dropout"),
    (dict(resolution=5000), "limit of 4096"),
    (dict(resolution=100.5), "integer"),
])
def test_bad_options(options, match):
    with pytest.raises(InvalidArgument, match=match):
        models.create("mobilenet_v1", weights="none", **options)


def test_option_a_family_does_not_take():
    with pytest.raises(InvalidArgument, match="resnet50 does not take option.*alpha"):
        models.create("resnet50", weights="none", alpha=0.5)
    with pytest.raises(InvalidArgument, match="depth_multiplier"):
        models.create("mobilenet_v2", weights="none", depth_multiplier=2)


def test_shufflenet_widths():
    m = models.create("shufflenet_v2", weights="none", alpha=0.5, resolution=32, classes=10)
    assert m.name == "shufflenet_v2_0.50_32_10cls" and m.get_layer("conv5").filters == 1024
    with pytest.raises(InvalidArgument, match="0.5, 1.0, 1.5, 2.0"):
        models.create("shufflenet_v2", weights="none", alpha=0.75)


def test_unknown_model_suggests():
    with pytest.raises(UnknownNameError, match="mobilenet"):
        models.create("mobilenett")


def test_imagenet_offline_is_a_clear_error(offline):
    with pytest.raises(WeightsUnavailable) as exc:
        models.create("mobilenet_v1", weights="imagenet", alpha=0.25, resolution=128)
    assert "--weights none" in exc.value.hint and "mobilenet_2_5_128_tf.h5" in exc.value.hint
    # the default for a family with ImageNet weights is imagenet: it never falls back to random silently
    with pytest.raises(WeightsUnavailable, match="resnet50"):
        models.create("resnet50", resolution=32, include_top=False)


def test_default_weights_without_imagenet_is_random_init(offline):
    assert models.create("squeezenet1_1", resolution=31, classes=10).name == "squeezenet1_1_31_10cls"


def test_imagenet_from_the_keras_cache(offline):
    ref = models.create("mobilenet_v1", weights="none", alpha=0.25, resolution=128)
    cache = offline / ".keras" / "models"
    cache.mkdir(parents=True)
    ref.save_weights(str(cache / "mobilenet_2_5_128_tf.h5"))
    m = models.create("mobilenet_v1", weights="imagenet", alpha=0.25, resolution=128)
    np.testing.assert_array_equal(m.get_layer("conv_pw_13").get_weights()[0],
                                  ref.get_layer("conv_pw_13").get_weights()[0])


@pytest.mark.parametrize("options, match", [
    (dict(classes=10), "classes=10"),
    (dict(input_channels=1, include_top=False), "input_channels=1"),
    (dict(alpha=0.3), "alpha=0.3"),
    (dict(resolution=100), "resolution=100"),
])
def test_imagenet_incompatible_options(options, match):
    with pytest.raises(InvalidArgument, match=match) as exc:
        models.create("mobilenet_v1", weights="imagenet", **options)
    assert "--weights none" in exc.value.hint


def test_imagenet_where_the_family_has_none():
    with pytest.raises(InvalidArgument, match="no ImageNet weights"):
        models.create("resnet18", weights="imagenet")


def test_weights_file_roundtrip_and_mismatch(tmp_path):
    opts = dict(alpha=0.25, resolution=32, classes=10)
    a = models.create("mobilenet_v1", weights="none", **opts)
    path = tmp_path / "w.weights.h5"
    a.save_weights(str(path))
    b = models.create("mobilenet_v1", weights=str(path), **opts)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    with pytest.raises(ModelLoadError, match="cannot load weights"):
        models.create("mobilenet_v1", weights=str(path), alpha=0.5, resolution=32, classes=10)
    with pytest.raises(InvalidArgument, match="does not exist"):
        models.create("mobilenet_v1", weights=str(tmp_path / "missing.h5"))


def test_weights_file_into_a_model_built_here(tmp_path):
    a = models.create("shufflenet_v2", weights="none", alpha=0.5, resolution=32, classes=3)
    path = tmp_path / "s.weights.h5"
    a.save_weights(str(path))
    b = models.create("shufflenet_v2", weights=str(path), alpha=0.5, resolution=32, classes=3)
    x = np.random.default_rng(1).random((1, 32, 32, 3), np.float32)
    np.testing.assert_allclose(b(x), a(x), atol=1e-6)


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_full_model_file_as_weights(tmp_path, suffix):
    opts = dict(alpha=0.25, resolution=32, classes=10)
    m = models.create("mobilenet_v1", weights="none", **opts)
    path = tmp_path / f"m{suffix}"
    m.save(str(path))
    again = models.create("mobilenet_v1", weights=str(path), dropout=0.2, **opts)   # same graph, another dropout
    for a, b in zip(m.get_weights(), again.get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ModelLoadError, match="does not have the architecture") as exc:
        models.create("mobilenet_v1", weights=str(path), alpha=0.5, resolution=32, classes=10)
    assert "MODEL" in exc.value.hint


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_user_model_file(tmp_path, suffix):
    m = models.create("mobilenet_v1", weights="none", alpha=0.25, resolution=32, classes=10)
    path = tmp_path / f"mine{suffix}"
    m.save(str(path))
    loaded = models.create(str(path))
    assert loaded.name == m.name
    x = np.random.default_rng(0).random((2, 32, 32, 3), np.float32)
    np.testing.assert_allclose(loaded(x), m(x), atol=1e-6)
    assert models.preprocess_mode(str(path)) == "tf"          # a saved zoo model keeps its family's mode
    assert models.preprocess_mode(loaded) == "tf"
    with pytest.raises(InvalidArgument, match="alpha"):
        models.create(str(path), alpha=0.5)


def test_user_model_preprocess_default_is_unit():
    from edgekit._keras import keras, layers

    inp = layers.Input((8, 8, 1))
    m = keras.Model(inp, layers.Dense(2)(layers.Flatten()(inp)), name="my_net")
    assert models.preprocess_mode(m) == "unit"


@pytest.mark.slow
def test_savedmodel_dir(tmp_path):
    m = models.create("squeezenet1_1", weights="none", resolution=31, classes=3)
    path = tmp_path / "sm"
    m.save(str(path), save_format="tf")
    loaded = models.create(str(path))
    x = np.random.default_rng(0).random((1, 31, 31, 3), np.float32)
    np.testing.assert_allclose(loaded(x), m(x), atol=1e-6)


def test_bad_model_files(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        models.create(str(tmp_path / "nope.keras"))
    corrupt = tmp_path / "corrupt.keras"
    corrupt.write_bytes(b"this is not a zip file")
    with pytest.raises(ModelLoadError, match="cannot load model"):
        models.create(str(corrupt))
    bad_h5 = tmp_path / "bad.h5"
    bad_h5.write_bytes(b"\x00" * 64)
    with pytest.raises(ModelLoadError, match="HDF5"):
        models.create(str(bad_h5))
    weights_only = tmp_path / "w.h5"
    models.create("squeezenet1_1", weights="none", resolution=31, classes=3).save_weights(str(weights_only))
    with pytest.raises(ModelLoadError, match="weights only"):
        models.create(str(weights_only))
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    with pytest.raises(ModelLoadError, match="saved_model.pb"):
        models.create(str(empty_dir))


def test_packaged_stats_cover_the_registry():
    from edgekit.zoo import _packaged

    assert sorted(_packaged()) == NAMES


@pytest.mark.parametrize("name", [n if n in ("mobilenet_v1", "squeezenet1_1", "resnet18", "shufflenet_v2")
                                  else pytest.param(n, marks=pytest.mark.slow) for n in builder_representatives()])
def test_packaged_stats_match_a_live_build(name):
    """One model per builder at its default input (variants of a builder differ only in tf-keras' own tables)."""
    from edgekit.zoo import _packaged, compute_stats

    assert _packaged()[name] == compute_stats(name)


@pytest.mark.parametrize("name", ["mobilenet_v3_small", "efficientnet_b0", "mobilenet_v1"])
def test_dropout_of_one_is_refused_by_every_family(name):
    """dropout=1 drops every feature (MobileNet v3 and EfficientNet accepted it)."""
    with pytest.raises(InvalidArgument, match=r"dropout must be in \[0, 1\)") as info:
        models.create(name, weights="none", dropout=1.0, resolution=small_resolution(name), classes=10)
    assert "--dropout in [0, 1)" in info.value.hint


def test_zoo_table_sits_above_models_and_profiling():
    """edgekit.models (the registry) never imports the profiler; the zoo table (edgekit.zoo) uses both, and its rows
    are the registry's ModelInfo with the counts filled in (one dataclass, not two)."""
    import subprocess
    import sys

    code = ("import sys, edgekit.models as m; m.info('mobilenet_v1'); "
            "print(sorted(k for k in sys.modules if k in ('edgekit.profiling', 'edgekit.zoo', 'tensorflow')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    from edgekit import zoo

    [row] = zoo.summary("mobilenet_v1")
    assert isinstance(row, models.ModelInfo) and (row.params, row.mult_adds) == (4_253_864, 568_740_352)
    assert models.info("mobilenet_v1").params is None
    assert row.paper_url == models.info("mobilenet_v1").paper_url
