"""Hostile model files, round 3 (issue 18): op layers that call TensorFlow symbols named in the file (ClassMethod,
TFOpLambda and kin), stored ``module``/function names, SavedModel graphs, archives and paths. Each input is built
here from scratch; a marker file under tmp_path proves that no code ran."""
from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import pytest

from edgekit import models
from edgekit.cli import main
from edgekit.models import UntrustedModelCode
from edgekit.models._safety import find_code


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    """A tiny tf-keras model (8x8x1 -> 10) saved as .h5 and as tf-keras .keras, and its config."""
    from edgekit._keras import keras, layers

    root = tmp_path_factory.mktemp("plain")
    inp = layers.Input((8, 8, 1), name="image")
    x = layers.Conv2D(4, 3, padding="same", name="conv")(inp)
    out = layers.Dense(10, activation="softmax", name="fc")(layers.GlobalAveragePooling2D(name="gap")(x))
    m = keras.Model(inp, out, name="plain_cnn")
    m.save(str(root / "plain.h5"))
    m.save(str(root / "plain.keras"))
    return root


def _with_layer(plain: Path, dest: Path, layer: dict) -> Path:
    """A copy of the plain .h5 (or .keras, by ``dest``'s suffix) whose model config holds ``layer`` too."""
    import h5py

    if dest.suffix == ".h5":
        dest.write_bytes((plain / "plain.h5").read_bytes())
        with h5py.File(dest, "r+") as f:
            cfg = json.loads(f.attrs["model_config"])
            cfg["config"]["layers"].append(layer)
            f.attrs["model_config"] = json.dumps(cfg)
        return dest
    with zipfile.ZipFile(plain / "plain.keras") as src, zipfile.ZipFile(dest, "w") as out:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "config.json":
                cfg = json.loads(data)
                cfg["config"]["layers"].append(layer)
                data = json.dumps(cfg).encode()
            out.writestr(item, data)
    return dest


def _const_node(*args) -> list:
    """A tf-keras inbound node calling the layer with constants only (no tensor from the model)."""
    return [[["_CONSTANT_VALUE", -1, a, {}] for a in args[:-1]] + [["_CONSTANT_VALUE", -1, args[-1], {"kwargs": {}}]]]


def _class_method(marker: Path, symbol: str = "io.write_file", method: str = "__call__") -> dict:
    return {"class_name": "ClassMethod", "name": "cm", "inbound_nodes": _const_node(str(marker), "data"),
            "config": {"name": "cm", "trainable": True, "dtype": "float32", "cls_symbol": symbol,
                       "method_name": method}}


def _tfop(marker: Path, function: str) -> dict:
    node = [[["_CONSTANT_VALUE", -1, "data", {"output_stream": f"file://{marker}"} if function == "print" else
              {"contents": "data"}]]]
    return {"class_name": "TFOpLambda", "name": "op", "inbound_nodes": node,
            "config": {"name": "op", "trainable": True, "dtype": "float32", "function": function}}


@pytest.mark.parametrize("suffix", [".h5", ".keras"])
def test_class_method_calling_write_file_is_refused(plain, tmp_path, cli, suffix):
    """The issue's ClassMethod (cls_symbol io.write_file) wrote its file while the model loaded."""
    marker = tmp_path / "MARKER"
    path = _with_layer(plain, tmp_path / f"cm{suffix}", _class_method(marker))
    for args in (("profile", path), ("export", "mobilenet_v1", "--alpha", "0.25", "--resolution", "32",
                                     "--weights", path)):
        res = cli(*args)
        assert not marker.exists(), f"{args[0]} ran tf.io.write_file from the {suffix} file"
        assert res.exit_code == 2, res.output
        lines = res.stderr.splitlines()
        assert lines[0].startswith("error:") and "ClassMethod layer 'cm'" in lines[0] and "io.write_file" in lines[0]
        assert lines[1].startswith("hint:") and "--trust-model-code" in lines[1]


@pytest.mark.parametrize("symbol", ["mlir.experimental.write_bytecode", "io.write_file", "io.gfile.copy",
                                    "io.gfile.remove", "io.gfile.rmtree", "test.main", "print",
                                    "quantization.experimental.QuantizationComponent",
                                    "__internal__.decorator.make_decorator", "compat.v1.io.write_file",
                                    "raw_ops.WriteFile", "strings.format", "nn.RNNCellDeviceWrapper",
                                    "image.decode_png", "linalg.experimental.conjugate_gradient", "math..add",
                                    "math.__class__", "nest.map_structure", "py_function"])
def test_tfop_lambda_outside_the_allowlist_is_refused(plain, tmp_path, symbol):
    marker = tmp_path / "MARKER"
    path = _with_layer(plain, tmp_path / "op.h5", _tfop(marker, symbol))
    with pytest.raises(UntrustedModelCode, match=r"TFOpLambda layer 'op'.*not on the allowlist"):
        models.load_model_file(path)
    assert not marker.exists()


def test_tfop_lambda_would_write(plain, tmp_path):
    """The hole is real: trusting the file lets a constant-only TFOpLambda (tf.print to a file) write at load."""
    marker = tmp_path / "MARKER"
    path = _with_layer(plain, tmp_path / "op.h5", _tfop(marker, "print"))
    with pytest.raises(Exception):  # noqa: B017 - tf-keras fails after the op ran (constant-only node)
        models.load_model_file(path, trust_model_code=True)
    assert marker.exists()


@pytest.mark.parametrize("name", ["__operators__.add", "__operators__.getitem", "reshape", "concat", "transpose",
                                  "math.reduce_mean", "nn.relu", "nn.relu6", "math.special.bessel_i0",
                                  "image.resize", "linalg.matmul", "clip_by_value", "where"])
def test_pure_ops_are_on_the_allowlist(name):
    from edgekit.models._safety import pure_tf_function

    assert pure_tf_function(name)


@pytest.mark.parametrize("layer", [
    {"class_name": "ClassMethod", "config": {"name": "c", "cls_symbol": "RaggedTensor", "method_name": "__init__"}},
    {"class_name": "ClassMethod", "config": {"name": "c", "cls_symbol": "io.gfile.GFile",
                                             "method_name": "from_row_splits"}},
    {"class_name": "InstanceMethod", "config": {"name": "c", "attr_name": "__setattr__"}},
    {"class_name": "InstanceProperty", "config": {"name": "c", "attr_name": "__class__"}},
    {"class_name": "Dense", "registered_name": "TFOpLambda", "config": {"name": "c", "function": "io.write_file"}},
    {"class_name": "SlicingOpLambda", "config": {"name": "c", "function": "io.write_file"}},
])
def test_op_layer_kin_outside_the_allowlist(layer):
    found = find_code({"class_name": "Functional", "config": {"layers": [layer]}})
    assert found and found[0].layer == "c" and "allowlist" in found[0].why


def test_ragged_class_methods_and_attrs_pass():
    ok = [{"class_name": "ClassMethod", "config": {"name": "c", "cls_symbol": "RaggedTensor",
                                                    "method_name": "from_row_lengths"}},
          {"class_name": "InstanceProperty", "config": {"name": "p", "attr_name": "flat_values"}},
          {"class_name": "InstanceMethod", "config": {"name": "m", "attr_name": "to_tensor"}}]
    assert find_code({"class_name": "Functional", "config": {"layers": ok}}) == []


@pytest.mark.parametrize("obj, words", [
    ({"module": "tensorflow.python.lib.io.file_io", "class_name": "function", "config": "write_string_to_file",
      "registered_name": None}, "write_string_to_file"),
    ({"module": "tf_keras.src.utils.generic_utils", "class_name": "function", "config": "func_load",
      "registered_name": None}, "func_load"),
    ({"module": "builtins", "class_name": "eval", "config": {}}, "builtins"),
    ({"module": "numpy", "class_name": "load", "config": {}}, "numpy"),
    ({"module": "tensorflow.python.platform.gfile", "class_name": "GFile", "config": {"name": "/etc/passwd"}},
     "tensorflow.python.platform.gfile"),
    ({"class_name": "__typespec__", "module": "tensorflow.python.lib.io.file_io", "spec_name": "FileIO",
      "registered_name": "x", "config": {}}, "FileIO"),
])
def test_stored_modules_and_functions_outside_the_allowlist(obj, words, tmp_path):
    layer = {"module": "keras.layers", "class_name": "Dense", "registered_name": None,
             "config": {"name": "d", "units": 2, "activation": obj}}
    found = find_code({"class_name": "Functional", "config": {"layers": [layer]}})
    assert found and words in found[0].why


def test_keras_activations_by_function_pass():
    act = {"module": "keras.activations", "class_name": "function", "config": "relu", "registered_name": None}
    spec = {"class_name": "__typespec__", "module": "tensorflow.python.framework.tensor", "spec_name": "TensorSpec",
            "registered_name": None, "config": [[None, 4], "float32"]}
    layer = {"module": "keras.layers", "class_name": "Dense", "config": {"name": "d", "units": 2, "activation": act,
                                                                        "spec": spec}}
    assert find_code({"class_name": "Functional", "config": {"layers": [layer]}}) == []


# -- SavedModel graphs -----------------------------------------------------------------------------------------------
def _savedmodel_with_resource(dest: Path, marker: Path) -> Path:
    """The issue's case: a tf-keras model holding a TrackableResource whose ``_initialize`` writes ``marker``."""
    from edgekit._keras import keras, layers, tf

    class Writer(tf.saved_model.experimental.TrackableResource):
        def _create_resource(self):
            return tf.raw_ops.VarHandleOp(dtype=tf.float32, shape=[], shared_name="w")

        def _initialize(self):
            tf.io.write_file(str(marker), "ran")

    inp = layers.Input((8, 8, 1))
    out = layers.Dense(10)(layers.Flatten()(inp))
    m = keras.Model(inp, out, name="res_cnn")
    m.writer = Writer()
    m.save(str(dest), save_format="tf")
    marker.unlink(missing_ok=True)
    return dest


def _savedmodel_with_writing_layer(dest: Path, marker: Path) -> Path:
    """A custom layer whose ``call`` writes ``marker`` (the revived function runs when the model runs)."""
    from edgekit._keras import keras, layers, tf

    class Writes(layers.Layer):
        def call(self, x):
            tf.io.write_file(str(marker), "ran")
            return x

    inp = layers.Input((8, 8, 1))
    out = layers.Dense(10)(layers.Flatten()(Writes(name="writes")(inp)))
    keras.Model(inp, out, name="writes_cnn").save(str(dest), save_format="tf")
    marker.unlink(missing_ok=True)
    return dest


@pytest.mark.parametrize("build, command, where", [
    (_savedmodel_with_resource, ("profile", "MODEL"), "_initialize"),
    (_savedmodel_with_writing_layer, ("export", "MODEL", "--quantize", "fp16"), "writes"),
])
def test_savedmodel_graph_ops_are_checked(tmp_path, cli, build, command, where):
    marker = tmp_path / "MARKER"
    path = build(tmp_path / "sm", marker)
    res = cli(*[path if a == "MODEL" else a for a in command])
    assert not marker.exists(), f"{command[0]} ran the SavedModel's WriteFile op"
    assert res.exit_code == 2, res.output
    lines = res.stderr.splitlines()
    assert lines[0].startswith("error:") and "op WriteFile in function" in lines[0] and where in lines[0], lines[0]
    assert lines[1].startswith("hint:") and "--trust-model-code" in lines[1]
    assert not list(Path.cwd().glob("artifacts/*"))


@pytest.mark.slow
def test_savedmodel_writes_when_trusted(tmp_path):
    """The hole is real: the trusted file's resource initializer writes the marker while the model loads."""
    marker = tmp_path / "MARKER"
    models.load_model_file(_savedmodel_with_resource(tmp_path / "sm", marker), trust_model_code=True)
    assert marker.exists()


@pytest.mark.slow
def test_savedmodel_saver_ops_only_in_the_saver(tmp_path):
    """SaveV2/RestoreV2 pass where TensorFlow puts them (traced save/restore called by the main graph only); a
    function of the model (e.g. a resource initializer) that saves a checkpoint is refused."""
    from edgekit._keras import keras, layers, tf
    from edgekit.models._graph_safety import find_graph_code, read_saved_model_proto

    class Saver(tf.saved_model.experimental.TrackableResource):
        def _create_resource(self):
            return tf.raw_ops.VarHandleOp(dtype=tf.float32, shape=[], shared_name="s")

        def _initialize(self):
            tf.raw_ops.SaveV2(prefix=str(tmp_path / "ckpt"), tensor_names=["x"], shape_and_slices=[""],
                              tensors=[tf.constant(1.0)])

    inp = layers.Input((4,))
    m = keras.Model(inp, layers.Dense(2)(inp))
    m.save(str(tmp_path / "plain_sm"), save_format="tf")
    assert find_graph_code(read_saved_model_proto(tmp_path / "plain_sm")) == []
    m.saver = Saver()
    m.save(str(tmp_path / "saver_sm"), save_format="tf")
    found = find_graph_code(read_saved_model_proto(tmp_path / "saver_sm"))
    assert [f.kind for f in found] == ["op SaveV2"] and "_initialize" in found[0].layer


@pytest.mark.slow
def test_zoo_savedmodel_passes_the_graph_check(tmp_path):
    """edgekit's own zoo models saved as SavedModel (batch norm, dropout, depthwise convs) load untrusted."""
    m = models.create("mobilenet_v2", alpha=0.35, resolution=32, weights="none", classes=10)
    m.save(str(tmp_path / "zoo_sm"), save_format="tf")
    loaded = models.load_model_file(tmp_path / "zoo_sm")
    assert loaded.count_params() == m.count_params()


# -- archives and stored JSON ----------------------------------------------------------------------------------------
def _rezip(plain: Path, dest: Path, *, config: bytes | None = None, extra: list[tuple[str, bytes]] = (),
           compress: int = zipfile.ZIP_DEFLATED) -> Path:
    """A copy of the plain tf-keras .keras with config.json replaced and ``extra`` entries added."""
    with zipfile.ZipFile(plain / "plain.keras") as src, zipfile.ZipFile(dest, "w", compress) as out:
        for item in src.infolist():
            out.writestr(item.filename, config if item.filename == "config.json" and config is not None
                         else src.read(item.filename))
        for name, data in extra:
            out.writestr(name, data)
    return dest


def _error_lines(res) -> list[str]:
    assert res.exit_code == 2, res.output
    lines = res.stderr.splitlines()
    assert lines[0].startswith("error:") and lines[1].startswith("hint:"), res.stderr
    assert "Traceback" not in res.output and "internal error" not in res.output
    return lines


def test_zip_bomb_is_refused_before_extraction(plain, tmp_path, cli, monkeypatch):
    """A 100 MiB zero entry packs to ~100 KiB: refused from the archive's directory, nothing unpacked."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    bomb = _rezip(plain, tmp_path / "bomb.keras", extra=[("assets/zeros", bytes(100 << 20))])
    assert bomb.stat().st_size < 1 << 20
    lines = _error_lines(cli("profile", bomb))
    assert "zip bomb" in lines[0]
    assert list((tmp_path / "tmp").iterdir()) == []


@pytest.mark.parametrize("name", ["../escape.txt", "/abs/path.txt", "assets/../../up.txt"])
def test_archive_entry_names_that_leave_the_folder(plain, tmp_path, cli, name):
    path = _rezip(plain, tmp_path / "names.keras", extra=[(name, b"x")])
    lines = _error_lines(cli("profile", path))
    assert "unpacked outside its folder" in lines[0]


def test_failed_tf_keras_load_leaves_no_unpacked_archive(plain, tmp_path, monkeypatch):
    """tf-keras unpacks a .keras with assets into mkdtemp() and left it there when loading failed (the issue: 301 MiB
    left in $TMPDIR); now every way out removes it."""
    import tempfile

    from edgekit.errors import ModelLoadError

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    cfg = json.loads(zipfile.ZipFile(plain / "plain.keras").read("config.json"))
    for layer in cfg["config"]["layers"]:
        if layer["class_name"] == "Dense":
            layer["config"]["units"] = 5        # the stored weights are for 10 units: loading fails after unpacking
    path = _rezip(plain, tmp_path / "bad.keras", config=json.dumps(cfg).encode(),
                  extra=[("assets/blob", bytes(1 << 20))])
    with pytest.raises(ModelLoadError):
        models.load_model_file(path)
    assert list(tmp.iterdir()) == []


@pytest.mark.parametrize("config, words", [
    (b"[" * 100_000 + b"]" * 100_000, "nested more than"),
    (b" " * (1 << 20), "unreadable config.json"),
    (b'{"class_name": "Functional", "config": ' * 500 + b"{}" + b"}" * 500, "nested more than"),
])
def test_hostile_config_json_is_a_clean_error(plain, tmp_path, cli, config, words):
    """100,000 nested brackets were an internal error (RecursionError); a 1 MiB config of spaces is a clean error."""
    path = _rezip(plain, tmp_path / "cfg.keras", config=config)
    lines = _error_lines(cli("profile", path))
    assert words in lines[0]


def test_layers_that_read_paths_named_in_the_file(plain, tmp_path):
    """A StringLookup whose vocabulary is a path reads that file into the model when it is built (a FIFO there hangs
    the load); Keras 3's TFSMLayer loads and runs the SavedModel at its filepath."""
    from edgekit.errors import ModelLoadError

    os.mkfifo(tmp_path / "vocab.txt")
    lookup = {"class_name": "StringLookup", "name": "lookup", "inbound_nodes": [],
              "config": {"name": "lookup", "vocabulary": str(tmp_path / "vocab.txt"), "num_oov_indices": 1,
                         "mask_token": None, "oov_token": "[UNK]", "output_mode": "int", "max_tokens": None,
                         "trainable": True, "dtype": "int64"}}
    path = _with_layer(plain, tmp_path / "lookup.h5", lookup)
    with pytest.raises(UntrustedModelCode, match=r"StringLookup.*reads the file .*vocab.txt"):
        models.load_model_file(path)
    tfsm = {"module": "keras.layers", "class_name": "TFSMLayer", "registered_name": None,
            "config": {"name": "sm", "filepath": str(tmp_path / "some_savedmodel")}}
    with pytest.raises(ModelLoadError, match="TFSMLayer layer 'sm'"):
        from edgekit.models._safety import check_no_code

        check_no_code([{"class_name": "Functional", "config": {"layers": [tfsm]}}], "m.keras")


HOSTILE_STUDENT = ("mobilenet_v1", "--alpha", "0.25", "--resolution", "32", "--input-channels", "1", "--classes", "10",
                   "--weights", "none")
#: every command that loads a model file; MODEL is the hostile file
HOSTILE_ENTRY_POINTS = {
    "profile": ("profile", "MODEL"),
    "export": ("export", "MODEL", "--quantize", "fp16"),
    "export --weights": ("export", "mobilenet_v1", "--alpha", "0.25", "--resolution", "32", "--input-channels", "1",
                         "--classes", "10", "--weights", "MODEL"),
    "train": ("train", "MODEL", "--data", "digits", "--epochs", "1"),
    "compress": ("compress", "MODEL", "--data", "digits", "--prune", "0.5"),
    "compress --distill-from": ("compress", *HOSTILE_STUDENT, "--data", "digits", "--distill-from", "MODEL",
                                "--distill-epochs", "1"),
    "doctor": ("doctor", "MODEL", "--calib-data", "digits", "--eval-data", "digits"),
    "sweep --weights": ("sweep", "mobilenet_v1", "--weights", "MODEL", "--data", "digits", "--grid", "alpha=0.25",
                        "--out", "sw"),
}


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".h5", ".keras"])
@pytest.mark.parametrize("entry", list(HOSTILE_ENTRY_POINTS))
def test_class_method_through_every_entry_point(plain, tmp_path, cli, entry, suffix):
    marker = tmp_path / "MARKER"
    path = _with_layer(plain, tmp_path / f"cm{suffix}", _class_method(marker))
    res = cli(*[str(path) if a == "MODEL" else a for a in HOSTILE_ENTRY_POINTS[entry]])
    assert not marker.exists(), f"{entry} ran tf.io.write_file from the {suffix} file"
    assert res.exit_code == 2, res.output
    lines = [line for line in res.stderr.splitlines() if not line.startswith("progress:")]
    assert lines[0].startswith("error:") and "ClassMethod layer 'cm'" in lines[0], res.stderr
    assert lines[1].startswith("hint:") and "--trust-model-code" in lines[1]
    assert not list(Path.cwd().glob("artifacts/*")) and not (Path.cwd() / "sw").exists()


@pytest.mark.slow
def test_ordinary_layers_pass_the_graph_check(tmp_path):
    """What tf-keras SavedModels of ordinary layers hold passes: LSTM/GRU (While loops, the cuDNN variants),
    augmentation (stateless random ops, generator state), lookups and embeddings (hash tables, ResourceGather),
    attention, batch norm, dropout."""
    from edgekit._keras import keras, layers
    from edgekit.models._graph_safety import find_graph_code, read_saved_model_proto

    inp = layers.Input((5, 3))
    seq = keras.Model(inp, layers.GRU(2)(layers.Dropout(0.2)(layers.LSTM(4, return_sequences=True)(inp))))
    img = layers.Input((8, 8, 3))
    x = layers.RandomRotation(0.1)(layers.RandomFlip()(img))
    x = layers.BatchNormalization()(layers.Normalization(mean=0.0, variance=1.0)(x))
    aug = keras.Model(img, layers.MultiHeadAttention(2, 4)(layers.Reshape((64, 3))(x), layers.Reshape((64, 3))(x)))
    words = layers.Input((3,), dtype="string")
    lookup = keras.Model(words, layers.Embedding(4, 2)(layers.StringLookup(vocabulary=["a", "b"])(words)))
    for name, m in {"seq": seq, "aug": aug, "lookup": lookup}.items():
        m.save(str(tmp_path / name), save_format="tf")
        assert find_graph_code(read_saved_model_proto(tmp_path / name)) == [], name
