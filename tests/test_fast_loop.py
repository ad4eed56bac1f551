"""The fast loop (``-m "not slow"``) cannot train or convert: the guard of tests/no_training.py fires in this process
and in subprocesses for tests not marked slow, and stays off for slow ones."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import no_training
from no_training import TrainingInFastTest


def test_guard_is_on_in_a_test_not_marked_slow(request):
    assert no_training.active() == request.node.nodeid
    # installed once, also in an xdist worker, which is a subprocess and loads it from sitecustomize too
    assert sum(getattr(f, "edgekit_no_training", False) for f in sys.meta_path) == 1


@pytest.mark.slow
def test_guard_is_off_in_a_slow_test():
    assert no_training.active() is None


def test_keras_fit_and_the_converters_raise_in_a_fast_test():
    from edgekit._keras import keras, tf
    from edgekit.compression.fit import fit

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)])
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = np.zeros((4, 2), np.float32), np.zeros(4, np.int64)
    with pytest.raises(TrainingInFastTest, match="test_keras_fit_and_the_converters_raise_in_a_fast_test trains a "
                                                 "Keras model .*not marked slow"):
        model.fit(x, y, epochs=1, verbose=0)
    with pytest.raises(TrainingInFastTest, match="trains a Keras model"):
        model.train_on_batch(x, y)
    with pytest.raises(TrainingInFastTest, match="converts a model to TFLite"):
        tf.lite.TFLiteConverter.from_keras_model(model).convert()
    fn = tf.function(lambda t: t * 2.0, input_signature=[tf.TensorSpec([1], tf.float32)])
    with pytest.raises(TrainingInFastTest, match="converts a model to TFLite"):   # every converter class
        tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], fn).convert()
    # edgekit's one fit loop (train, compress stages, distill) ends in Keras' fit
    from edgekit.compression.train import as_source
    from edgekit.data import Dataset

    source = as_source(Dataset(x, y, "zeros", class_names=["a", "b"]), model)
    with pytest.raises(TrainingInFastTest, match="trains a Keras model"):
        fit(model, source, None, epochs=1, batch_size=2, task="t")


def test_onnx_conversion_raises_in_a_fast_test():
    tf2onnx = pytest.importorskip("tf2onnx")
    from edgekit._keras import keras
    from edgekit.exporters.onnx import to_onnx

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)])
    with pytest.raises(TrainingInFastTest, match="converts a model to ONNX"):
        tf2onnx.convert.from_keras(model)
    with pytest.raises(TrainingInFastTest, match="converts a model to ONNX"):
        to_onnx(model, 13)


def test_keras3_fit_raises_in_a_fast_test():
    keras3 = pytest.importorskip("keras")
    if not keras3.__version__.startswith("3"):
        pytest.skip("Keras 3 is not installed")
    model = keras3.Sequential([keras3.Input((2,)), keras3.layers.Dense(1)])
    model.compile("sgd", "mse")
    with pytest.raises(TrainingInFastTest, match="trains a Keras model"):
        model.fit(np.zeros((2, 2)), np.zeros((2, 1)), epochs=1, verbose=0)


def test_guard_reaches_python_subprocesses():
    """CLI tests run edgekit in a subprocess: the guard is installed there too (sitecustomize) and reads the test
    id from the inherited environment."""
    code = ("import tf_keras as k, numpy as np; m = k.Sequential([k.Input((2,)), k.layers.Dense(1)]); "
            "m.compile('sgd', 'mse'); m.fit(np.zeros((2, 2)), np.zeros((2, 1)), verbose=0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "TrainingInFastTest" in done.stderr and "test_guard_reaches_python_subprocesses trains a Keras model" \
        in done.stderr, done.stderr[-2000:]
    env = {k: v for k, v in os.environ.items() if k != no_training.ENV}   # without the variable: no guard
    check = "import sys; print(sum(getattr(f, 'edgekit_no_training', False) for f in sys.meta_path))"
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=60, env=env)
    assert done.stdout.strip() == "1", done.stderr


def test_cli_help_and_listings_import_no_tensorflow():
    """The commands' help, ``models list`` and the specs stay fast: they never import TensorFlow or Keras."""
    code = ("import sys\nfrom edgekit.cli import main\n"
            "for args in (['--help'], ['export', '--help'], ['bench', '--help'], ['sweep', '--help'], "
            "['doctor', '--help'], ['compress', '--help'], ['models', 'list']):\n"
            "    try:\n        main(args)\n    except SystemExit as exc:\n        assert not exc.code, (args, exc.code)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tf_keras', 'keras')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
