"""edgekit's .tflite files in real app-side clients: MediaPipe Tasks' ImageClassifier and the TFLite Task Library's
(tflite-support), loaded as an app loads them, from the file alone (its metadata: normalization, labels).

The clients live in their own venv (``.venv-clients``, made by the README's test setup command: mediapipe's absl-py
and tflite-support's protobuf pins clash with TensorFlow's and tfmot's); each runs tests/clients/classify.py there. An
RGB classifier trained here on Fashion-MNIST (grey replicated to RGB) is exported as float32, int8 (float I/O) and int8
(uint8 I/O); on held-out test images every client must return edgekit's own top-1 (LiteRT) for >= 99 % of them, with
the class names of the data. Without the clients' venv the tests skip (in CI they fail: the setup makes it).
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tests" / "clients" / "classify.py"
CLIENTS_PYTHON = Path(os.environ.get("EDGEKIT_CLIENTS_PYTHON", ROOT / ".venv-clients" / "bin" / "python"))
HELD_OUT = 300
EXPORTS = {"float32": dict(quantize="none"),
           "int8": dict(quantize="int8", calib_data="fashion-mnist", calib_samples=300),
           "int8-uint8-io": dict(quantize="int8", io="uint8", calib_data="fashion-mnist", calib_samples=300)}

pytestmark = pytest.mark.slow


def _has(module: str) -> bool:
    if not CLIENTS_PYTHON.exists():
        return False
    return subprocess.run([str(CLIENTS_PYTHON), "-c", f"import {module}"], capture_output=True).returncode == 0


def _need(module: str, what: str) -> None:
    if _has(module):
        return
    why = f"{what} is not installed in {CLIENTS_PYTHON} (the README's test setup command makes that venv)"
    if os.environ.get("CI") and module == "mediapipe":
        pytest.fail(why)
    pytest.skip(why)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, fashion_mnist_available):
    """One RGB classifier trained here, exported three ways, and held-out RGB test images (uint8) with labels."""
    import edgekit
    from edgekit._keras import keras, layers
    from edgekit.data import FASHION_MNIST_CLASSES, load

    keras.utils.set_random_seed(0)
    train = load("fashion-mnist", input_shape=(28, 28, 3), split="train", limit=6000, seed=0)
    inp = keras.Input((28, 28, 3), name="image")
    x = layers.Conv2D(16, 3, activation="relu")(inp)
    x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(32, 3, activation="relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    m = keras.Model(inp, layers.Dense(10, activation="softmax", name="probs")(x), name="fmnist_rgb")
    m.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    m.fit(train.x, train.y, epochs=4, batch_size=64, verbose=0)
    out = tmp_path_factory.mktemp("clients")
    arts = {}
    for key, kw in EXPORTS.items():
        res = edgekit.export(m, verify_data="fashion-mnist", out=str(out / key), **kw)
        arts[key] = res["tflite"].path
    test = load("fashion-mnist", input_shape=(28, 28, 3), split="test", limit=HELD_OUT, seed=1, preprocess_mode="raw")
    images = np.clip(np.rint(test.x), 0, 255).astype(np.uint8)
    np.save(out / "images.npy", images)
    return arts, images, test.y, out / "images.npy", list(FASHION_MNIST_CLASSES)


def _edgekit_top1(path: Path, images: np.ndarray) -> np.ndarray:
    from edgekit.runtimes import load

    sess = load(path)
    x = images.astype(np.float32) / 255.0  # the model's preprocessing ('unit'), as edgekit's verification feeds it
    return np.array([int(np.argmax(sess.predict(x[i:i + 1])[0])) for i in range(len(x))])


def _client_top1(client: str, path: Path, images_file: Path) -> list:
    proc = subprocess.run([str(CLIENTS_PYTHON), str(SCRIPT), client, str(path), str(images_file)],
                          capture_output=True, text=True, timeout=600)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert proc.returncode == 0 and lines, f"{client} failed on {path.name}: {proc.stdout[-2000:]}{proc.stderr[-2000:]}"
    return json.loads(lines[-1])["top"]


@pytest.mark.parametrize("client,module", [("mediapipe", "mediapipe"), ("tasklib", "tflite_support")])
@pytest.mark.parametrize("key", list(EXPORTS))
def test_client_agrees_with_edgekit(exported, client, module, key):
    _need(module, {"mediapipe": "MediaPipe Tasks (mediapipe)", "tasklib": "tflite-support"}[client])
    arts, images, labels, images_file, names = exported
    ours = _edgekit_top1(arts[key], images)
    top = _client_top1(client, arts[key], images_file)
    theirs = np.array([t[0] for t in top])
    agreement = float(np.mean(theirs == ours))
    accuracy = float(np.mean(theirs == labels))
    print(f"{client} {key}: agreement {agreement:.4f}, client accuracy {accuracy:.4f}, "
          f"edgekit accuracy {float(np.mean(ours == labels)):.4f} on {len(images)} held-out images")
    assert agreement >= 0.99, f"{client} {key}: top-1 agrees with edgekit's on {agreement:.2%} of the images"
    assert all(name == names[i] for i, name, _ in top), "the client's class names are not the data's"
    assert accuracy > 0.5  # a trained model, not a constant one (10 classes)
