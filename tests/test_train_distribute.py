"""tf.distribute for the training stages (issue 14): MirroredStrategy over two logical CPUs and two
MultiWorkerMirroredStrategy workers on loopback, each with distillation from a teacher file and tfmot's pruning,
clustering and QAT in one chain.

Strategies must be set up before TensorFlow runs anything, so every run is a fresh process.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from conftest import free_ports



@pytest.fixture(scope="module")
def small_cnn(tmp_path_factory) -> str:
    """A 10-layer MobileNet-style CNN (conv/BN/ReLU, depthwise, pointwise, dense) saved as .keras: the strategies'
    per-stage tracing cost grows with the layer count (MobileNet v1's 90 layers cost ~15 min for both tests on 2 cores)."""
    from edgekit._keras import keras

    L = keras.layers
    x = inp = L.Input((28, 28, 1))
    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(8, 3, strides=2, use_bias=False)(x)))
    x = L.ReLU()(L.BatchNormalization()(L.DepthwiseConv2D(3, use_bias=False)(x)))
    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(16, 1, use_bias=False)(x)))
    out = L.Dense(10, activation="softmax")(L.GlobalAveragePooling2D()(x))
    path = tmp_path_factory.mktemp("model") / "small_cnn.keras"
    keras.Model(inp, out, name="small_cnn").save(str(path))
    return str(path)

CHAIN = ["--train-epochs", "1", "--distill-epochs", "1", "--prune", "0.5", "--prune-epochs", "1", "--cluster", "8", "--cluster-epochs", "1",
         "--qat", "--quantize", "int8", "--no-verify", "--limit", "256", "--test-limit", "128", "--batch-size", "32"]
EDGEKIT = [sys.executable, "-c", "import sys; from edgekit.cli import main; sys.exit(main())"]


def _env(**extra) -> dict:
    return dict(os.environ, TF_NUM_INTEROP_THREADS="1", TF_NUM_INTRAOP_THREADS="1", PYTHONUNBUFFERED="1", **extra)


def _check_chain(report: dict, replicas: int) -> None:
    assert report["training"]["replicas"] == replicas
    stages = {s["stage"]: s for s in report["stages"]}
    assert list(stages) == ["train", "distill", "prune", "cluster", "qat"]
    distill = stages["distill"]   # the student trained against the teacher file under the strategy
    assert distill["params"]["teacher_report"]["source"] == "file" and len(distill["history"]) == 1
    assert abs(stages["prune"]["weights"]["pruned_sparsity"] - 0.5) < 0.02  # tfmot pruning under the strategy
    assert stages["cluster"]["weights"]["clustered_max_unique"] <= 8  # clustering: <= 8 values per channel
    assert any("scheme" in n for n in stages["qat"]["notes"])  # QAT wrapped and trained
    art = report["artifacts"][0]
    assert art["path"].endswith("_int8.tflite") and 0.0 <= art["test_accuracy"] <= 1.0


@pytest.mark.slow
def test_mirrored_strategy_over_two_replicas(tmp_path, fashion_mnist_available, small_cnn):
    script = textwrap.dedent(f"""
        import json, sys
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from edgekit.compression import compress
        res = compress({small_cnn!r}, data="fashion-mnist", train_epochs=1, distill_from={small_cnn!r},
                       distill_epochs=1, prune=0.5, prune_epochs=1, cluster=8, cluster_epochs=1,
                       qat=True, quantize="int8", verify=False, limit=256, test_limit=128, batch_size=32,
                       strategy="mirrored", out={str(tmp_path)!r})  # over the two logical CPUs
        print("REPORT" + res.report.to_json(indent=None))
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=_env(TF_USE_LEGACY_KERAS="1"),
                       timeout=1500)
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads(r.stdout.split("REPORT", 1)[1])
    _check_chain(report, replicas=2)
    assert report["training"]["strategy"] == "mirrored"


@pytest.mark.slow
def test_two_workers_on_loopback(tmp_path, fashion_mnist_available, small_cnn):
    """Two processes with TF_CONFIG on 127.0.0.1 run the same command; the chief alone writes artifacts."""
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    out = tmp_path / "out"
    cmd = [*EDGEKIT, "compress", small_cnn, "--data", "fashion-mnist", *CHAIN, "--distill-from", small_cnn,
           "--strategy", "multi-worker",
           "--out", str(out), "--save-model", str(tmp_path / "m.keras"), "--backup-dir", str(tmp_path / "backup"),
           "--json"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=_env(TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker",
                                                                                          "index": i}})))
             for i in range(2)]
    try:
        results = [p.communicate(timeout=1500) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (_, err) in zip(procs, results):
        assert p.returncode == 0, err[-3000:]
    chief, worker = (json.loads(o)["report"] for o, _ in results)
    assert chief["training"]["chief"] and not worker["training"]["chief"]
    assert chief["training"]["strategy"] == "multi-worker" and chief["training"]["workers"] == 2
    _check_chain(chief, replicas=2)
    assert worker["artifacts"] == [] and worker["stages"][0]["val_accuracy"] is None  # only the chief measures
    written = sorted(p.name for p in out.iterdir())
    assert any(n.endswith("_int8.tflite") for n in written) and any(n.endswith(".compression.json") for n in written)
    assert (tmp_path / "m.keras").is_file()
    assert not any((tmp_path / "backup").iterdir())  # finished: the per-stage backups are gone
