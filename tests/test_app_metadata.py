"""App metadata in every artifact (TFLite Model Metadata, ONNX metadata_props), label files, the fixed .tflite batch."""
from __future__ import annotations

import json
import sys
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner

from edgekit import _tflite, _tflite_metadata as tm
from edgekit.cli import main
from edgekit.errors import InvalidArgument, MissingDependency


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """An RGB classifier with a Flatten (the layer whose free batch costs SHAPE/STRIDED_SLICE/PACK ops) and .npz data
    naming its classes."""
    from edgekit._keras import keras, layers

    inp = keras.Input((16, 16, 3), name="image")
    x = layers.Conv2D(4, 3, strides=2, activation="relu", name="c")(inp)
    x = layers.Flatten(name="flat")(x)
    m = keras.Model(inp, layers.Dense(3, activation="softmax", name="probs")(x), name="metanet")
    d = tmp_path_factory.mktemp("meta")
    m.save(d / "metanet.keras")
    rng = np.random.default_rng(0)
    np.savez(d / "data.npz", x=rng.random((140, 16, 16, 3), dtype=np.float32), y=rng.integers(0, 3, 140),
             class_names=np.array(["cat", "dog", "bird"]))
    return d / "metanet.keras"


def test_metadata_round_trip_and_replace():
    """attach() writes what read() reads back (labels from the zipped file); attaching again replaces it."""
    data = _probe_model()
    meta = tm.AppMetadata("m", "d", "1.0", "me", "MIT",
                          [tm.TensorMetadata("in", tm.IMAGE, color_space="RGB", mean=[127.5], std=[127.5])],
                          [tm.TensorMetadata("out", labels=["a", "b"], labels_file="labels.txt")])
    out = tm.attach(data, meta)
    back = tm.read(out)
    assert back.inputs[0].mean == [127.5] and back.inputs[0].color_space == "RGB" and back.author == "me"
    assert back.outputs[0].labels == ["a", "b"] and back.min_parser_version == "1.0.0"
    assert zipfile.ZipFile(__import__("io").BytesIO(out)).namelist() == ["labels.txt"]
    meta.outputs[0].labels = ["x", "y"]
    again = tm.attach(out, meta)
    assert tm.read(again).outputs[0].labels == ["x", "y"]
    assert _tflite.read(again).metadata.count(tm.METADATA_NAME) == 1
    assert tm.read(data) is None


def test_same_model_and_labels_give_the_same_bytes_at_any_time(monkeypatch):
    """The label files zipped onto a model carry no clock time: the doctor's recipe reproduces its artifact byte for
    byte only if an export a minute later writes the same bytes (zipfile dated each entry with time.time())."""
    data = _probe_model()
    meta = tm.AppMetadata("m", "d", "", "", "", [tm.TensorMetadata("in")],
                          [tm.TensorMetadata("out", labels=["a", "b"], labels_file="labels.txt")])
    first = tm.attach(data, meta)
    monkeypatch.setattr(zipfile.time, "time", lambda: 2_000_000_000.0)  # 2033
    assert tm.attach(data, meta) == first


def _probe_model() -> bytes:
    return _tflite._probe_model(_tflite.schema(), "X")


def test_missing_flatbuffers_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "flatbuffers", None)
    with pytest.raises(MissingDependency, match="flatbuffers") as e:
        tm.metadata_buffer(tm.AppMetadata("m"))
    assert "edgekit[metadata]" in e.value.hint


@pytest.mark.parametrize("content,match", [
    (b"cat\ndog\n", "has 2 labels; the model's output 'probs' has 3 classes"),
    (b"", "is empty"),
    (b"\n \n", "is empty"),
    (b"cat\n\nbird\n", "line 2 is empty"),
    (b"cat\ndog\nb\xe9ar\n", "is not UTF-8 text"),
])
def test_bad_label_file_is_an_error_and_nothing_is_written(model_file, tmp_path, content, match):
    labels = tmp_path / "labels.txt"
    labels.write_bytes(content)
    out = tmp_path / "out"
    r = run("export", model_file, "--labels", labels, "--out", out)
    assert r.exit_code == 2, r.output
    assert "error:" in r.output and "hint:" in r.output and match in r.output
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("args,match", [
    (("--metadata", "autor=x"), "unknown metadata key 'autor' (did you mean 'author'?)"),
    (("--metadata", "author"), "is not KEY=VALUE"),
    (("--no-metadata", "--labels", "x.txt"), "--no-metadata"),
    (("--batch", "2", "--format", "onnx"), "batch applies to the tflite format only"),
])
def test_metadata_option_errors(model_file, tmp_path, args, match):
    r = run("export", model_file, *args, "--out", tmp_path / "out")
    assert r.exit_code == 2 and match in r.output, r.output


@pytest.mark.slow   # converts to TFLite/ONNX
def test_export_writes_metadata_and_fixed_batch(model_file, tmp_path):
    """float32 .tflite + .onnx: labels from the .npz's class_names, normalization of 'unit' preprocessing, facts
    from --metadata; batch 1 (no SHAPE/STRIDED_SLICE/PACK); the manifest's sha256 is the final file's;
    inspect prints the metadata."""
    from edgekit._io import sha256_file

    out = tmp_path / "out"
    r = run("export", model_file, "--format", "tflite,onnx", "--verify-data", model_file.parent / "data.npz",
            "--metadata", "author=Jane Doe", "--metadata", "version=2.1", "--out", out)
    assert r.exit_code == 0, r.output
    path = out / "metanet_float32.tflite"
    meta = tm.read(path.read_bytes())
    assert (meta.name, meta.author, meta.version) == ("metanet", "Jane Doe", "2.1")
    (i,), (o,) = meta.inputs, meta.outputs
    assert (i.name, i.kind, i.color_space, i.mean, i.std, i.min, i.max) == ("image", "image", "RGB", [0.0], [255.0],
                                                                           [0.0], [1.0])
    assert (o.name, o.labels, o.labels_file) == ("probs", ["cat", "dog", "bird"], "labels.txt")
    fb = _tflite.read(path.read_bytes())
    assert fb.main.tensors[fb.main.inputs[0]].shape == [1, 16, 16, 3]
    assert not {"SHAPE", "STRIDED_SLICE", "PACK"} & {op.name for op in fb.main.operators}
    man = json.loads((out / "metanet_float32.tflite.json").read_text())
    assert man["artifact"]["sha256"] == sha256_file(path)
    assert man["app_metadata"]["outputs"][0]["scores"] == "probabilities"
    assert man["verification"]["status"] == "passed"
    import onnx

    props = {e.key: e.value for e in onnx.load(str(out / "metanet_float32.onnx")).metadata_props}
    assert props["labels"] == "cat\ndog\nbird" and props["author"] == "Jane Doe"
    assert (props["color_space"], props["normalization_mean"], props["normalization_std"]) == ("RGB", "0", "255")
    r = run("inspect", path)
    assert "app metadata: name 'metanet', version '2.1', author 'Jane Doe'" in r.output
    assert "3 labels (labels.txt): cat, dog, bird" in r.output and "dynamic" not in r.output


@pytest.mark.slow   # converts to TFLite/ONNX
def test_no_metadata_and_batch(model_file, tmp_path):
    """--no-metadata: no TFLITE_METADATA and inspect says so; --batch 4: a batch-4 file verified in batches of 4."""
    out = tmp_path / "out"
    r = run("export", model_file, "--no-metadata", "--batch", "4", "--verify-samples", "10", "--out", out)
    assert r.exit_code == 0, r.output
    path = out / "metanet_float32.tflite"
    fb = _tflite.read(path.read_bytes())
    assert tm.METADATA_NAME not in fb.metadata and tm.read(path.read_bytes()) is None
    assert fb.main.tensors[fb.main.inputs[0]].shape == [4, 16, 16, 3]
    from edgekit._keras import keras
    from edgekit.runtimes import load

    x = np.random.default_rng(1).random((7, 16, 16, 3), dtype=np.float32)  # 7 samples: 4 + 3 (padded)
    ref = keras.models.load_model(model_file).predict(x, verbose=0)
    np.testing.assert_allclose(load(path).predict(x)[0], ref, atol=1e-5)
    man = json.loads((out / "metanet_float32.tflite.json").read_text())
    assert man["app_metadata"]["written"] is False and man["verification"]["samples"] == 10
    assert "app metadata: none" in run("inspect", path).output
    # the on-device runner replays the 10 verification samples 4 at a time (the last 2 padded)
    r = run("bench", path, "--device", "local", "--verify", "--runs", "2", "--warmup", "0", "--no-history", "--json", "-")
    assert r.exit_code == 0, r.output
    (row,) = json.loads(r.output[r.output.index("["):])
    assert row["parity"]["status"] == "passed" and row["parity"]["samples"] == 10, row["parity"]


@pytest.mark.slow   # converts to TFLite/ONNX
def test_uint8_io_and_grayscale_warnings(tmp_path):
    """Client warnings at export: a grayscale model (MediaPipe wants 3/4 channels), int8 I/O (clients feed float32
    or uint8 images); labels given from Python; a wrong count from Python names both numbers."""
    import edgekit
    from edgekit._keras import keras, layers

    inp = keras.Input((8, 8, 1), name="gray")
    x = layers.GlobalAveragePooling2D()(layers.Conv2D(2, 3)(inp))
    m = keras.Model(inp, layers.Dense(2, activation="softmax", name="p")(x), name="graynet")
    with pytest.raises(InvalidArgument, match="labels has 3 labels; the model's output 'p' has 2 classes"):
        edgekit.export(m, labels=["a", "b", "c"], out=str(tmp_path / "o"))
    with pytest.warns(Warning):
        res = edgekit.export(m, quantize="int8", io="int8", labels=["a", "b"], out=str(tmp_path / "o"),
                             verify_samples=10, calib_samples=20)
    text = " ".join(res.warnings)
    assert "MediaPipe Tasks cannot take this model" in text and "1 channel (grayscale)" in text
    assert "input 'gray' is int8" in text
    meta = tm.read(res["tflite"].path.read_bytes())
    assert meta.inputs[0].color_space == "GRAYSCALE" and meta.inputs[0].min == [-128.0]
    assert meta.outputs[0].labels == ["a", "b"]


def test_recipe_keys():
    """Recipe keys are the API's: metadata as a mapping or KEY=VALUE items, labels, app_metadata, batch."""
    from edgekit.recipes import recipe_spec

    spec = recipe_spec({"model": "m.keras", "metadata": {"author": "Jane", "license": "MIT"}, "labels": "l.txt",
                        "batch": 2})
    assert spec.metadata_facts == {"author": "Jane", "license": "MIT"} and spec.labels == "l.txt" and spec.batch == 2
    assert recipe_spec({"model": "m.keras", "metadata": ["version=3"]}).metadata_facts == {"version": "3"}
    assert recipe_spec({"model": "m.keras", "app_metadata": False}).app_metadata is False


@pytest.mark.slow   # converts to TFLite/ONNX
def test_int8_head_has_no_batch_ops(tmp_path):
    """An int8 MobileNet-style head (pooling, Reshape, 1x1 conv, Reshape, softmax): with a free batch the converter
    computes the Reshape targets at run time (SHAPE, STRIDED_SLICE, PACK); the fixed batch leaves them out."""
    import edgekit
    from edgekit._keras import keras, layers

    inp = keras.Input((16, 16, 3), name="image")
    x = layers.GlobalAveragePooling2D(keepdims=True)(layers.Conv2D(8, 3, activation="relu")(inp))
    x = layers.Conv2D(4, 1, name="preds")(x)
    x = layers.Reshape((4,), name="flat")(x)
    m = keras.Model(inp, layers.Activation("softmax", name="probs")(x), name="headnet")
    with pytest.warns(Warning):  # synthetic calibration
        res = edgekit.export(m, quantize="int8", out=str(tmp_path), calib_samples=20, verify_samples=10)
    ops = {op.name for op in _tflite.read(res["tflite"].path.read_bytes()).main.operators}
    assert "RESHAPE" in ops and not {"SHAPE", "STRIDED_SLICE", "PACK"} & ops, ops


@pytest.mark.parametrize("extra,key", [(dict(labels="l.txt"), "labels"), (dict(metadata=("author=x",)), "metadata"),
                                       (dict(batch=2), "batch"), (dict(app_metadata=False), "app_metadata")])
def test_max_drop_refuses_app_options(extra, key):
    """export --max-drop (the doctor's ladder writes the export) does not take them yet: refused, not dropped."""
    from edgekit.specs.export import ExportSpec

    with pytest.raises(InvalidArgument, match=f"{key} does not go with max_drop"):
        ExportSpec(model="m.keras", quantize="int8", max_drop=1.0, eval_data="fashion-mnist", **extra)
