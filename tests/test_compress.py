"""Compression stages and Pipeline: wrap -> fit -> strip leaves plain models, sparsity/cluster/2:4 invariants hold,
invalid pipelines fail before any training, the report reads the exported artifact.

Tiny setup: MobileNet v1 alpha=0.25 at 32x32x1 (10 classes), a few hundred Fashion-MNIST samples, 1 epoch.
"""
from __future__ import annotations

import inspect
import json

import numpy as np
import pytest

from edgekit.compression import STAGES, Pipeline, compress
from edgekit.compression.weights import huffman_bits, huffman_lengths, quantize_per_channel, weight_stats
from edgekit.errors import PipelineError

OPTS = dict(alpha=0.25, resolution=32, input_channels=1, classes=10, weights="none")
RUN = dict(limit=256, test_limit=128, batch_size=64, seed=0)


def tiny_model():
    from edgekit import models

    return models.create("mobilenet_v1", **OPTS)


@pytest.fixture(scope="module")
def data(fashion_mnist_available):
    from edgekit.data import load

    return load("fashion-mnist", input_shape=(32, 32, 1), preprocess_mode="tf", limit=256, seed=0)


@pytest.fixture()
def no_fit(monkeypatch):
    """Fail the test if anything trains."""
    from edgekit._keras import keras

    def boom(*a, **k):
        raise AssertionError("training started before validation failed")

    monkeypatch.setattr(keras.Model, "fit", boom)


# -- validation before training (no model needed) ---------------------------------------------------------------
@pytest.mark.parametrize("stages, words", [
    ([{"cluster": 16}, {"prune": 0.5}], "prune after cluster"),
    (["qat", {"prune": 0.5}], "prune after qat"),
    (["qat", {"cluster": 8}], "cluster after qat"),
    (["qat", {"export": "dynamic"}], "qat then a 'dynamic' export"),
    (["qat", {"export": "fp16"}], "qat then a 'float16' export"),
    ([{"export": "int8"}, {"prune": 0.5}], "export must be the last"),
    ([{"prnue": 0.5}], "unknown compression stage 'prnue'"),
    ([{"prune": {"sparsty": 0.5}}], "unknown key 'sparsty'"),
    ([{"prune": {"sparsity": 0.3, "structure": "2:4"}}], "structure 2:4 means sparsity 0.5"),
    ([{"prune": 1.5}], "sparsity must be in (0, 1)"),
    ([{"cluster": 1}], "clusters must be an integer in [2, 256]"),
    ([{"cluster": {"clusters": 8, "init": "kmeans"}}], "unknown init"),
    ([{"train": {"epochs": 0}}], "train: epochs must be >= 1"),
    ([{"qat": {"epochs": 0}}], "qat: epochs must be >= 1"),
])
def test_invalid_pipeline_is_rejected_when_built(stages, words):
    with pytest.raises(PipelineError) as info:
        Pipeline(stages)
    assert words in str(info.value)


def test_unknown_key_has_did_you_mean():
    with pytest.raises(PipelineError) as info:
        Pipeline([{"cluster": {"cluters": 8}}])
    assert "did you mean 'clusters'" in str(info.value)


@pytest.mark.parametrize("name", STAGES.list())
def test_every_registered_stage_builds_from_a_spec(name):
    spec = {name: {"teacher": "model.keras"}} if name == "distill" else name
    stage = Pipeline([spec]).stages[0]
    assert stage.name == name
    assert isinstance(stage.config(), dict)


def test_flag_api_rejects_qat_without_int8_export():
    with pytest.raises(PipelineError, match="qat needs an int8 export"):
        compress("mobilenet_v1", data="fashion-mnist", qat=True, **OPTS)


@pytest.mark.parametrize("kwargs, words", [
    ({"cluster": 16, "prune_structure": "2:4", "quantize": "int8"}, "prune_structure given without prune"),
    ({"prune": 0.5, "cluster_per_channel": True, "quantize": "int8"}, "cluster_per_channel given without cluster"),
    ({"prune": 0.5, "temperature": 2.0, "quantize": "int8"}, "temperature given without distill_from"),
    ({"prune": 0.5, "latency": True}, "latency given without quantize"),
    ({"epochs": 3, "quantize": "int8"}, "without a compression stage"),
    ({"stages": [{"prune": 0.5}], "prune_epochs": 5, "quantize": "int8"}, "ignored with a stages list"),
])
def test_stage_options_without_their_stage_are_rejected(kwargs, words):
    with pytest.raises(PipelineError, match=words):
        compress("mobilenet_v1", data="fashion-mnist", **kwargs, **OPTS)


@pytest.mark.slow
@pytest.mark.parametrize("stages, words", [
    ([{"prune": {"sparsity": 0.5, "layers": ["nothing_*"]}}], "matches no prune-able layer"),
    ([{"prune": {"sparsity": 0.5, "policy": "xnnpack"}}], "policy 'xnnpack' does not fit"),
    ([{"prune": 0.5}, {"cluster": {"clusters": 8, "preserve_sparsity": False}}], "would undo the pruning"),
    ([{"prune": 0.5}, {"distill": {"teacher": "mobilenet_v1", "teacher_epochs": 1}}], "distill after prune"),
    ([{"distill": {"teacher": "mobilenet_v1"}}], "starts untrained"),
    ([{"distill": {"teacher": "mobilenet_v9", "teacher_epochs": 1}}], "unknown model"),
])
def test_model_checks_fail_before_any_training(stages, words, no_fit, fashion_mnist_available):
    with pytest.raises(PipelineError) as info:
        Pipeline(stages).run(tiny_model(), "fashion-mnist", RUN)
    assert words in str(info.value)


# -- report helpers (no TensorFlow) -------------------------------------------------------------------------------
def test_huffman_lengths_match_the_textbook_example():
    # counts 45,13,12,16,9,5 (CLRS): optimal lengths 1,3,3,3,4,4 -> 224 bits
    lengths = huffman_lengths([45, 13, 12, 16, 9, 5])
    assert sum(c * n for c, n in zip([45, 13, 12, 16, 9, 5], lengths)) == 224


def test_weight_stats_sees_zeros_and_shrinks_with_entropy():
    rng = np.random.default_rng(0)
    dense = rng.integers(-127, 128, size=10000).astype(np.int8)
    sparse = dense.copy()
    sparse[rng.permutation(10000)[:5000]] = 0
    d, s = weight_stats([("d", dense, False)]), weight_stats([("s", sparse, True)])
    assert s.sparsity == pytest.approx(0.5, abs=0.01) and s.pruned_sparsity == pytest.approx(0.5, abs=0.01)
    assert d.pruned_sparsity is None
    assert s.huffman_bytes < 0.7 * d.huffman_bytes
    payload, book = huffman_bits(np.zeros(100, np.int8))
    assert payload == 100 and book == 16


def test_per_channel_quantization_keeps_zeros_and_uses_full_range():
    k = np.random.default_rng(1).normal(size=(1, 1, 8, 4)).astype(np.float32)
    k[0, 0, :4, :] = 0.0
    q = quantize_per_channel(k)
    assert (q[0, 0, :4, :] == 0).all()
    assert (np.abs(q).max(axis=(0, 1, 2)) == 127).all()


# -- stages on a tiny model (train for real: slow) ---------------------------------------------------------------
def _kernels(model, names):
    return {layer.name: layer.get_weights()[0] for layer in model.layers if layer.name in names}


def _assert_plain(model):
    from edgekit.compression.ordering import wrapper_layers

    assert wrapper_layers(model) == []


@pytest.mark.slow
def test_prune_reaches_target_sparsity_and_strips(data):
    res = Pipeline([{"prune": {"sparsity": 0.5, "epochs": 1}}]).run(tiny_model(), data, RUN)
    model, rep = res.model, res.report
    assert json.loads(res.to_json())["model"] == model.name and res.to_dict()["report"]["seed"] == 0
    _assert_plain(model)
    pruned = rep.stages[0].layers
    assert "conv1" not in pruned and "conv_preds" not in pruned  # first/last skipped by default
    for name, k in _kernels(model, pruned).items():
        assert np.mean(k == 0) == pytest.approx(0.5, abs=0.01), name
    assert rep.stages[0].weights.pruned_sparsity == pytest.approx(0.5, abs=0.01)


@pytest.mark.slow
def test_prune_2_4_structure_holds(data):
    res = Pipeline([{"prune": {"sparsity": 0.5, "structure": "2:4", "epochs": 1,
                               "schedule": "constant"}}]).run(tiny_model(), data, RUN)
    model, rep = res.model, res.report
    _assert_plain(model)
    for name, k in _kernels(model, rep.stages[0].layers).items():
        cin = k.shape[-2]
        groups = np.moveaxis(k, -2, -1).reshape(-1, cin // 4, 4)  # 4 consecutive input channels
        assert (np.count_nonzero(groups, axis=-1) <= 2).all(), name


@pytest.mark.slow
def test_prune_then_cluster_keeps_zeros_and_at_most_n_values(data):
    res = Pipeline([{"prune": {"sparsity": 0.5, "epochs": 1}},
                    {"cluster": {"clusters": 8, "epochs": 1}}]).run(tiny_model(), data, RUN)
    model, rep = res.model, res.report
    _assert_plain(model)
    assert rep.stages[1].params["preserve_sparsity"] is True
    assert rep.stages[1].weights.clustered_max_unique <= 8
    for name, k in _kernels(model, rep.stages[1].layers).items():
        assert len(np.unique(k)) <= 8, name
        if name in rep.stages[0].layers:
            assert np.mean(k == 0) >= 0.49, name


@pytest.mark.slow
def test_distiller_returns_plain_student_and_calls_hooks(data):
    from edgekit._keras import keras
    from edgekit.compression import Distill

    calls = {"student": 0, "distill": 0, "epochs": 0}
    ce = keras.losses.SparseCategoricalCrossentropy()
    kl = keras.losses.KLDivergence()

    def student_loss(y, p):
        calls["student"] += 1
        return ce(y, p)

    def distill_loss(t, s):
        calls["distill"] += 1
        return kl(t, s)

    class Count(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            calls["epochs"] += 1

    teacher = tiny_model()
    stage = Distill(teacher, student_loss=student_loss, distill_loss=distill_loss, callbacks=[Count()], epochs=1)
    res = Pipeline([stage]).run(tiny_model(), data, RUN)
    student, rep = res.model, res.report
    assert type(student) is keras.Model or type(student).__name__ == "Functional"
    assert not any("distill" in type(layer).__name__.lower() for layer in student.layers)
    assert calls["student"] > 0 and calls["distill"] > 0 and calls["epochs"] == 1
    assert rep.stages[0].params["teacher_report"]["source"] == "model"


@pytest.mark.slow
def test_compress_prune_int8_measures_sparsity_in_the_artifact(tmp_path, trained_mnv1):
    """With verification on (the default): the artifact is checked against Keras on the held-out test split, and the
    manifest names the real data (the training split calibrated, the test split verified; no temporary file)."""
    # from a trained model (conftest.trained_mnv1): a 1-epoch/256-image model is at chance with near-constant outputs
    # (verification inconclusive), one trained a little fails int8's top-1 agreement
    res = compress("mobilenet_v1", data="fashion-mnist", train_epochs=1, prune=0.5, prune_epochs=1,
                   quantize="int8", calib_samples=100, out=str(tmp_path), **{**RUN, "limit": 2048},
                   **{**OPTS, "weights": trained_mnv1})
    assert res.stages == ["train", "prune", "export"]
    art = res.report.artifacts[0]
    assert art.path.endswith("_int8.tflite")
    assert art.weights.pruned_sparsity == pytest.approx(0.5, abs=0.02)  # read from the .tflite buffers
    assert art.file_bytes > art.gzip_bytes > 0 and art.weights.huffman_bytes < art.weights.bytes
    man = json.loads(open(art.path + ".json").read())
    assert man["calibration"]["kind"] == "data" and man["calibration"]["count"] == 100
    assert man["calibration"]["source"] == "fashion-mnist:train"
    assert man["verification_data"].startswith("fashion-mnist:test (128 samples")
    assert man["verification"]["status"] == "passed" and res.export.artifacts[0].verification.passed
    assert man["verification"]["keras_accuracy"] > 0.4  # a trained model (chance is 0.1): the check means something
    # the report's accuracy (edgekit.runtimes, one sample at a time) is the verifier's on the same 128 test images
    assert art.test_samples == 128
    assert art.test_accuracy == pytest.approx(man["verification"]["artifact_accuracy"], abs=1e-9)
    saved = json.loads(open(res.report.report_json).read())
    assert saved["artifacts"][0]["weights"]["pruned_sparsity"] == pytest.approx(0.5, abs=0.02)
    png = open(res.report.plot_png, "rb").read()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob("*.part"))


@pytest.mark.slow
def test_qat_keeps_fake_quant_and_exports_int8(tmp_path, data):
    from edgekit.compression.ordering import wrapper_layers

    res = Pipeline([{"qat": {"epochs": 1}}, {"export": {"quantize": "int8", "calib_samples": 64,
                                                        "verify": False, "out": str(tmp_path)}}]).run(
        tiny_model(), data, RUN)
    model, rep = res.model, res.report
    assert wrapper_layers(model)  # QAT wrappers stay on purpose: the converter reads their ranges
    assert "default_8bit" in rep.stages[0].notes[0]
    assert rep.export.calibration.kind == "qat"
    assert rep.artifacts[0].path.endswith("_int8.tflite") and rep.artifacts[0].test_accuracy is not None


def test_xnnpack_policy_selects_only_1x1_convs_of_a_fitting_model():
    from edgekit._keras import keras, layers
    from edgekit.compression import Prune, make_stage
    from edgekit.compression.prune import prunable
    from edgekit.compression.stages import select_layers

    inp = keras.Input((32, 32, 3))
    x = layers.ZeroPadding2D(((1, 1), (1, 1)), name="pad")(inp)
    x = layers.ReLU(name="r0")(layers.Conv2D(8, 3, strides=2, padding="valid", name="stem")(x))
    x = layers.ReLU(name="r1")(layers.DepthwiseConv2D(3, padding="same", name="dw")(x))
    x = layers.ReLU(name="r2")(layers.Conv2D(16, 1, name="pw1")(x))
    x = layers.ReLU(name="r3")(layers.Conv2D(16, 1, name="pw2")(x))
    x = layers.GlobalAveragePooling2D(keepdims=True, name="gap")(x)
    out = layers.Dense(10, activation="softmax", name="fc")(layers.Flatten(name="flat")(x))
    m = keras.Model(inp, out)
    stage = make_stage({"prune": {"sparsity": 0.5, "policy": "xnnpack"}})
    Pipeline([stage]).validate(m)
    assert isinstance(stage, Prune)
    assert select_layers(m, prunable, None, ["@first", "@last"], "prune", stage._allow()) == ["pw1", "pw2"]


@pytest.mark.slow
def test_distill_from_a_teacher_file(tmp_path, data):
    teacher = tiny_model()
    teacher.save(tmp_path / "teacher.keras")
    res = Pipeline([{"distill": {"teacher": str(tmp_path / "teacher.keras"), "epochs": 1}}]).run(
        tiny_model(), data, RUN)
    student, rep = res.model, res.report
    info = rep.stages[0].params["teacher_report"]
    assert info["source"] == "file" and info["epochs_trained"] == 0
    assert rep.stages[0].val_accuracy is not None and len(rep.stages[0].history) == 1


@pytest.mark.slow
def test_save_model_keeps_the_training_when_export_fails(tmp_path, monkeypatch, fashion_mnist_available):
    from edgekit.compression.export_stage import Export
    from edgekit.errors import VerificationError

    def failing_export(self, model, ctx):
        raise VerificationError("int8 disagrees with Keras")

    monkeypatch.setattr(Export, "export", failing_export)
    dest = tmp_path / "trained.keras"
    with pytest.raises(VerificationError):
        compress("mobilenet_v1", data="fashion-mnist", train_epochs=1, quantize="int8", out=str(tmp_path / "art"),
                 save_model=str(dest), **RUN, **OPTS)
    assert dest.is_file()


def test_local_latency_reports_a_device_error_as_a_note(tmp_path):
    from edgekit.compression.artifacts import local_latency

    p50, note = local_latency(tmp_path / "missing.tflite")
    assert p50 is None and note.startswith("latency not measured:") and "missing.tflite" in note


def test_distill_zoo_teacher_check_translates_only_edgekit_errors(monkeypatch):
    """An unknown zoo teacher is a PipelineError with the registry's did-you-mean; a bug inside models.info (not an
    EdgekitError) surfaces as itself, not as a 'distill:' message."""
    from edgekit import models
    from edgekit.compression.distill import Distill

    with pytest.raises(PipelineError, match="distill: .*mobilenet_v9") as info:
        Distill(teacher="mobilenet_v9", teacher_epochs=1).check(None, [])
    assert info.value.message == "distill: unknown model 'mobilenet_v9'" and "'mobilenet_v1'" in info.value.hint

    def broken(name):
        raise KeyError("a bug, not bad input")

    monkeypatch.setattr(models, "info", broken)
    with pytest.raises(KeyError, match="a bug"):
        Distill(teacher="mobilenet_v1", teacher_epochs=1).check(None, [])


def test_tfmot_wrappers_in_a_stored_config_come_from_the_one_table():
    from edgekit._layers import TFMOT_WRAPPERS
    from edgekit.models._files import _uses_tfmot

    for cls in TFMOT_WRAPPERS:
        assert _uses_tfmot([{"config": {"layers": [{"class_name": cls, "config": {}}]}}]), cls
    assert not _uses_tfmot([{"config": {"layers": [{"class_name": "Conv2D", "config": {}}]}}])


def test_pipeline_config_is_a_fit_spec_checked_before_anything_runs():
    """``Pipeline(stages).run(model, data, config)``: config is the FitSpec (or its keys) the CLI and recipes build;
    a bad key is refused with a did-you-mean before any model is built or data read."""
    from edgekit.errors import InvalidArgument
    from edgekit.specs import FitSpec

    pipe = Pipeline([{"prune": 0.5}])
    with pytest.raises(InvalidArgument, match="unknown key 'batch_sise'") as info:
        pipe.run("no-such-model", "no-such-data", {"batch_sise": 8})
    assert "batch_size" in info.value.hint
    with pytest.raises(InvalidArgument, match="batch_size"):
        pipe.run("no-such-model", "no-such-data", {"batch_size": 0})
    with pytest.raises(TypeError):
        pipe.run("no-such-model", "no-such-data", seed=1)  # the old unpacked keywords are gone
    assert list(inspect.signature(Pipeline.run).parameters)[:4] == ["self", "model", "data", "config"]
    assert isinstance(FitSpec.build({"seed": 3}, model="m", data="d"), FitSpec)
