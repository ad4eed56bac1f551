"""The TFLite converter reads a tf-keras model through a bare holder of its variables, not the Keras model: the
converter saves what it is given as a SavedModel first, and a tf-keras model's SavedModel serialises every layer's
traced calls (most of an export's time). Same bytes either way, for every model shape edgekit exports."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest

pytestmark = pytest.mark.slow


def _models():
    from edgekit._keras import keras
    from edgekit.models import create

    mnv1 = create("mobilenet_v1", weights="none", alpha=0.25, resolution=32, input_channels=1, classes=10)
    a, b = keras.Input((16, 16, 3), name="image"), keras.Input((8,), name="extra")
    x = keras.layers.BatchNormalization()(keras.layers.Conv2D(4, 3)(a))
    x = keras.layers.Concatenate()([keras.layers.GlobalAveragePooling2D()(x), b])
    two = keras.Model([a, b], [keras.layers.Dense(3, activation="softmax", name="cls")(x),
                               keras.layers.Dense(1, name="score")(x)], name="two_in_two_out")
    seq = keras.Input((40,), name="signal")   # a non-image input
    one_d = keras.Model(seq, keras.layers.Dense(2, name="out")(keras.layers.Reshape((40, 1))(seq)[:, :, 0]),
                        name="signal_net")
    return [mnv1, two, one_d]


def _convert(conv, model, quantize):
    from edgekit._keras import tf

    from edgekit.exporters.tflite import _representative, input_names

    if quantize == "int8":
        rng = np.random.default_rng(0)
        xs = [rng.random((8, *t.shape[1:]), dtype=np.float32) for t in model.inputs]
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = _representative(xs, input_names(model), lambda *a: None)
    return hashlib.sha256(conv.convert()).hexdigest()


def test_holder_gives_the_bytes_the_keras_model_gives():
    from edgekit._keras import tf
    from edgekit.exporters import tflite

    for model, quantize in zip(_models(), ("none", "int8", "none")):
        conv = tflite._source(model, 1)
        assert isinstance(conv._trackable_obj, tf.Module) and conv._trackable_obj is not model
        ref = tf.lite.TFLiteConverter.from_concrete_functions(conv._funcs, model)   # what it was given before
        assert _convert(conv, model, quantize) == _convert(ref, model, quantize), model.name


def test_a_captured_resource_that_is_no_variable_keeps_the_keras_model():
    from edgekit._keras import tf
    from edgekit.exporters import tflite

    model = _models()[0]
    extra = tf.Variable(1.0, name="outside_the_model")

    def serve(x):
        return {"y": model(x, training=False) * extra}

    fn = tf.function(serve, input_signature=[tf.TensorSpec((1, 32, 32, 1), tf.float32)]).get_concrete_function()
    assert tflite._variables_holder(tf, model, fn) is model
