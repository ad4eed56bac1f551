"""Export -> bench integration: artifacts written by ``edgekit.exporters.export`` (with their manifests) run on
the local device through the runner, and the rows carry the manifest's model name and precision."""
from __future__ import annotations

import pytest

from edgekit.devices import bench


@pytest.mark.slow
def test_bench_exported_artifacts_reads_manifests(tmp_path):
    exporters = pytest.importorskip("edgekit.exporters")
    from edgekit._keras import keras, layers

    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 3))
    x = layers.Conv2D(4, 3, padding="same", activation="relu")(inp)
    x = layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inp, layers.Dense(4)(x), name="bench_export_cnn")
    result = exporters.export(model, quantize="float16", formats=("tflite", "onnx"), out=tmp_path, verify=False)
    paths = [a.path for a in result.artifacts]
    assert all(a.manifest.is_file() for a in result.artifacts)
    rows = bench(paths, "local", runs=5, warmup=1)
    assert [(r.model, r.format, r.precision, r.status) for r in rows] == [
        ("bench_export_cnn", "tflite", "float16", "ok"), ("bench_export_cnn", "onnx", "float16", "ok")]
    assert {r.runtime for r in rows} == {"ai_edge_litert", "onnxruntime"}
    assert all(r.sha256 == a.sha256 for r, a in zip(rows, result.artifacts))
