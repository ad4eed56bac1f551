"""The export-side hooks of the int8 doctor: layers kept in float (TFLite denylisted nodes, ONNX nodes_to_exclude)
and onnxruntime's calibration methods, as export() arguments recorded in the manifest."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from edgekit.errors import InvalidArgument


def net(name="floatnet"):
    from edgekit._keras import keras, layers

    inp = keras.Input((16, 16, 1), name="image")
    x = layers.Conv2D(8, 3, padding="same", name="c1")(inp)
    x = layers.BatchNormalization(name="c1_bn")(x)
    x = layers.ReLU(name="c1_relu")(x)
    x = layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = layers.ReLU(name="dw_relu")(x)
    x = layers.Conv2D(16, 1, name="pw")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inp, layers.Dense(4, activation="softmax", name="head")(x), name=name)


@pytest.fixture(scope="module")
def model():
    from edgekit._keras import tf

    tf.keras.utils.set_random_seed(1)
    return net()


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return rng.random((160, 16, 16, 1), dtype=np.float32)


def _float_weight_ops(path):
    """Ops of a .tflite whose weights (2nd input) are float32."""
    from tensorflow.lite.tools import flatbuffer_utils

    m = flatbuffer_utils.read_model(str(path))
    g = m.subgraphs[0]
    names = []
    for op in g.operators:
        if len(op.inputs) > 1 and op.inputs[1] >= 0 and g.tensors[op.inputs[1]].type == 0:
            names.append(g.tensors[op.outputs[0]].name.decode())
    return names


@pytest.mark.slow
def test_tflite_float_layers_keep_those_ops_float(model, data, tmp_path):
    from edgekit.exporters import export

    plain = export(model, quantize="int8", calib_data=data, out=tmp_path, verify=False)
    mixed = export(model, quantize="int8", calib_data=data, out=tmp_path, float_layers="dw,pw", verify=False)
    art = mixed["tflite"]
    assert art.path.name == "floatnet_int8_2-float.tflite"
    assert _float_weight_ops(plain["tflite"].path) == []
    kept = _float_weight_ops(art.path)
    assert len(kept) == 2 and any("/dw/" in n for n in kept) and any("/pw/" in n for n in kept)
    assert art.size_bytes > plain["tflite"].size_bytes  # float weights cost bytes
    man = json.loads(art.manifest.read_text())
    assert man["float_layers"] == ["dw", "pw"]
    assert set(man["conversion"]["float_layer_nodes"]) == {"dw", "pw"}
    assert man["calibration_method"] == "minmax"
    assert "DEQUANTIZE" in man["ops"]  # int8 -> float hand-over before the float ops
    # the float-kept artifact still computes the model
    from edgekit.runtimes import load

    out = load(art.path).predict(data[:8])[0]
    assert np.abs(out - model.predict(data[:8], verbose=0)).max() < 0.05


@pytest.mark.slow
def test_onnx_float_layers_and_entropy_calibration(model, data, tmp_path, capfd):
    pytest.importorskip("tf2onnx")
    import onnx

    from edgekit.exporters import export

    res = export(model, quantize="int8", formats="onnx", calib_data=data, out=tmp_path, float_layers=["dw"],
                 calibration_method="entropy", verify=False)
    art = res["onnx"]
    assert art.path.name == "floatnet_int8_entropy_1-float.onnx"
    assert "entropy" not in capfd.readouterr().out.lower()  # onnxruntime's calibration print()s are kept off stdout
    man = json.loads(art.manifest.read_text())
    assert man["calibration_method"] == "entropy" and "Entropy" in man["conversion"]["quantizer"]
    assert man["float_layers"] == ["dw"]
    g = onnx.load(str(art.path)).graph
    dw = [n for n in g.node if n.name in man["conversion"]["float_layer_nodes"]["dw"]]
    assert dw and all(n.op_type == "Conv" for n in dw)
    weights = {t.name: t for t in g.initializer}
    assert weights[dw[0].input[1]].data_type == onnx.TensorProto.FLOAT  # kept float, not DequantizeLinear output
    others = [n for n in g.node if n.op_type == "Conv" and n not in dw]
    assert others and all(n.input[1] not in weights for n in others)  # their weights come through DequantizeLinear


@pytest.mark.parametrize("kwargs,match", [
    (dict(quantize="fp16", float_layers="dw"), "float_layers .* apply to post-training int8"),
    pytest.param(dict(quantize="int8", float_layers="dww"), "did you mean 'dw'", marks=pytest.mark.slow),  # converts
    (dict(quantize="int8", float_layers=[3]), "must be Keras layer names"),
    (dict(quantize="int8", calibration_method="entropy"), "'tflite' has no 'entropy' calibration"),
    (dict(quantize="int8", calibration_method="kl"), "unknown calibration_method"),
    (dict(quantize="none", calibration_method="percentile", formats="onnx"), "applies to calibrated precisions"),
])
def test_bad_float_layers_or_calibration_method(model, data, tmp_path, kwargs, match):
    from edgekit.exporters import export

    out = tmp_path / "out"
    with pytest.raises(InvalidArgument, match=match) as info:
        export(model, calib_data=data if kwargs.get("quantize") == "int8" else None, out=out, verify=False, **kwargs)
    assert info.value.exit_code == 2
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.slow
def test_onnx_entropy_and_percentile_set_other_ranges_than_minmax(model, data, tmp_path):
    """onnxruntime's Entropy default (128 bins for 128 levels) is MinMax in disguise: the exporter's is not."""
    pytest.importorskip("tf2onnx")
    import onnx
    from onnx import numpy_helper

    from edgekit.exporters import export

    def scales(method):
        res = export(model, quantize="int8", formats="onnx", calib_data=data, out=tmp_path / method, verify=False,
                     calibration_method=method)
        g = onnx.load(str(res["onnx"].path)).graph
        init = {t.name: t for t in g.initializer}
        # keyed by tensor name without tf2onnx's global node counter (``Conv2D__6:0``)
        return {re.sub(r"__\d+", "", n.input[0]): float(numpy_helper.to_array(init[n.input[1]])) for n in g.node
                if n.op_type == "QuantizeLinear" and n.input[1] in init}

    minmax, entropy, percentile = scales("minmax"), scales("entropy"), scales("percentile")
    assert len(minmax) >= 4 and set(minmax) == set(entropy) == set(percentile)
    assert sum(entropy[k] < 0.95 * minmax[k] for k in minmax) >= 2  # KL clips some tails
    assert any(percentile[k] != minmax[k] for k in minmax)
