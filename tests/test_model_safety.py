"""A model file never runs code: Lambda layers & co are refused from .h5, .keras (tf-keras and Keras 3) and SavedModel
files before Keras deserialises anything, by every command that loads a model file, unless --trust-model-code."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from edgekit import models
from edgekit.errors import InvalidArgument, ModelLoadError
from edgekit.models import UntrustedModelCode
from edgekit.models._safety import find_code

FORMATS = ("h5", "keras", "savedmodel", "keras3")


def _evil_function(marker: Path):
    """A lambda that writes ``marker`` whenever it runs (its code, with the path as a constant, is saved in the file)."""
    return eval(f"lambda x: (__import__('pathlib').Path({str(marker)!r}).write_text('ran'), x)[1]")  # noqa: S307


@pytest.fixture(scope="module")
def evil(tmp_path_factory):
    """{format: path} of small CNNs (8x8x1 -> 10 classes) with a Lambda layer named 'evil' that writes a marker file,
    and the marker's path (removed after saving: saving traces the layer)."""
    import keras as keras3

    from edgekit._keras import keras, layers

    root = tmp_path_factory.mktemp("evil")
    marker = root / "MARKER"
    inp = layers.Input((8, 8, 1))
    x = layers.Conv2D(4, 3, padding="same")(inp)
    x = layers.Lambda(_evil_function(marker), name="evil")(x)
    out = layers.Dense(10, activation="softmax")(layers.GlobalAveragePooling2D()(x))
    m = keras.Model(inp, out, name="evil_cnn")
    paths = {"h5": root / "evil.h5", "keras": root / "evil.keras", "savedmodel": root / "evil_savedmodel",
             "keras3": root / "evil3.keras"}
    m.save(str(paths["h5"]))
    m.save(str(paths["keras"]))
    m.save(str(paths["savedmodel"]), save_format="tf")
    inp3 = keras3.Input((8, 8, 1))
    x3 = keras3.layers.Lambda(_evil_function(marker), name="evil")(keras3.layers.Conv2D(4, 3, padding="same")(inp3))
    out3 = keras3.layers.Dense(10, activation="softmax")(keras3.layers.GlobalAveragePooling2D()(x3))
    keras3.Model(inp3, out3, name="evil_cnn3").save(str(paths["keras3"]))
    marker.unlink(missing_ok=True)
    return paths, marker


STUDENT = ("mobilenet_v1", "--alpha", "0.25", "--resolution", "32", "--input-channels", "1", "--classes", "10",
           "--weights", "none")
#: every command that loads a model file; MODEL is the hostile file
ENTRY_POINTS = {
    "profile": ("profile", "MODEL"),
    "export": ("export", "MODEL", "--quantize", "fp16"),
    "train": ("train", "MODEL", "--data", "digits", "--epochs", "1"),
    "compress": ("compress", "MODEL", "--data", "digits", "--prune", "0.5", "--quantize", "int8"),
    "distillation teacher": ("compress", *STUDENT, "--data", "digits", "--distill-from", "MODEL",
                             "--distill-epochs", "1"),
}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_lambda_is_refused_by_every_entry_point(evil, cli, fmt, entry):
    paths, marker = evil
    args = [str(paths[fmt]) if a == "MODEL" else a for a in ENTRY_POINTS[entry]]
    res = cli(*args)
    assert not marker.exists(), f"{entry} ran the Lambda's code from the {fmt} file"
    assert res.exit_code == 2, res.output
    lines = res.stderr.splitlines()
    assert lines[0].startswith("error:") and "Lambda layer 'evil'" in lines[0] and "run code" in lines[0]
    assert lines[1].startswith("hint:") and "--trust-model-code" in lines[1]
    assert "Traceback" not in res.output and not list(Path.cwd().glob("artifacts/*"))


@pytest.mark.parametrize("fmt", FORMATS)
def test_python_api_refuses_and_trust_model_code_loads(evil, fmt):
    from edgekit.compression import compress
    from edgekit.exporters import export
    from edgekit.profiling import profile

    paths, marker = evil
    for call in (lambda: models.create(paths[fmt]), lambda: profile(str(paths[fmt])),
                 lambda: export(str(paths[fmt]), quantize="fp16"),
                 lambda: compress(str(paths[fmt]), data="digits", prune=0.5)):
        with pytest.raises(UntrustedModelCode, match="Lambda layer 'evil'") as info:
            call()
        assert "trust_model_code=True" in info.value.hint and not marker.exists()
    # the test can see code run: trusting the file runs the Lambda (when Keras builds the layer graph)
    model = models.create(paths[fmt], trust_model_code=True)
    model.predict(__import__("numpy").zeros((1, 8, 8, 1), "float32"), verbose=0)
    assert marker.exists()
    marker.unlink()


def test_trust_model_code_on_the_cli(evil, cli):
    paths, marker = evil
    res = cli("profile", paths["h5"], "--trust-model-code", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["model"] == "evil_cnn" and marker.exists()
    marker.unlink()


def test_teacher_is_checked_before_any_training(evil):
    """A trusted student with an untrusted teacher file: refused while validating, not after training."""
    from edgekit.compression import Distill, Pipeline

    paths, marker = evil
    pipe = Pipeline([Distill(str(paths["h5"]), epochs=1)])
    student = models.create("mobilenet_v1", alpha=0.25, resolution=32, input_channels=1, classes=10, weights="none")
    with pytest.raises(UntrustedModelCode, match="evil"):
        pipe.validate(student)
    assert not marker.exists()
    with pytest.raises(InvalidArgument, match="trust_model_code must be true or false"):
        Distill(str(paths["h5"]), trust_model_code="yes")


def _zip_with(path: Path, config: dict, extra: list[tuple[str, bytes]] = ()) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("metadata.json", json.dumps({"keras_version": "2.21.0"}))
        z.writestr("config.json", json.dumps(config))
        for name, data in extra:
            z.writestr(name, data)
    return path


def _functional(*layers_: dict) -> dict:
    return {"module": "keras", "class_name": "Functional", "config": {"name": "m", "layers": list(layers_)}}


def test_hostile_configs_are_refused(tmp_path):
    """Tricks around the plain Lambda: a module import, a TF op with side effects, a lambda activation, a second
    config.json shadowing the first, a .keras archive named .h5."""
    imports_os = _functional({"module": "os", "class_name": "system", "config": {"name": "boom"}})
    with pytest.raises(UntrustedModelCode, match="imports Python module 'os'"):
        models.load_model_file(_zip_with(tmp_path / "imports.keras", imports_os))
    writes = _functional({"class_name": "TFOpLambda", "config": {"name": "w", "function": "io.write_file"}})
    with pytest.raises(UntrustedModelCode, match="tf.io.write_file"):
        models.load_model_file(_zip_with(tmp_path / "writes.keras", writes))
    act = _functional({"class_name": "Dense", "config": {"name": "d", "units": 2, "activation": {
        "class_name": "__lambda__", "config": {"code": "AAAA"}}}})
    with pytest.raises(UntrustedModelCode, match="layer 'd'"):
        models.load_model_file(_zip_with(tmp_path / "act.keras", act))
    shadow = _zip_with(tmp_path / "shadow.keras", _functional(), [("config.json", b"{}")])
    with pytest.raises(ModelLoadError, match="2 config.json entries"):
        models.load_model_file(shadow)
    renamed = tmp_path / "renamed.h5"
    renamed.write_bytes(_zip_with(tmp_path / "x.keras", writes).read_bytes())
    with pytest.raises(UntrustedModelCode, match="io.write_file"):
        models.load_model_file(renamed)


def test_ordinary_layers_pass_the_check():
    """Plain TF-op layers (x + 1, reshape), initializers and Keras/TF modules are not code."""
    from edgekit._keras import keras, layers

    inp = layers.Input((4,))
    out = layers.Dense(2, kernel_regularizer="l2")(inp + 1.0)
    cfg = keras.Model(inp, out).get_config()
    assert find_code(json.loads(json.dumps(cfg, default=str))) == []
    z = models.create("mobilenet_v1", alpha=0.25, resolution=32, weights="none").get_config()
    assert find_code(json.loads(json.dumps(z, default=str))) == []


def test_weights_from_a_model_file_and_recipe_key(evil):
    """A whole model file given as --weights is loaded too: same rule. trust_model_code is a recipe key."""
    from edgekit.recipes import validate_recipe

    paths, marker = evil
    with pytest.raises(UntrustedModelCode, match="evil"):
        models.create("mobilenet_v1", alpha=0.25, resolution=32, input_channels=1, classes=10, weights=str(paths["h5"]))
    assert not marker.exists()
    recipe = validate_recipe({"model": str(paths["h5"]), "data": "digits", "quantize": "int8",
                              "trust_model_code": True})
    assert recipe["trust_model_code"] is True
