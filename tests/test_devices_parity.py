"""On-device parity (issue 13 part 1): the export writes verification data; bench --verify replays it on a device."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from edgekit import _verify_data as verify_data
from edgekit.devices import bench

pytestmark = pytest.mark.slow  # exports real (tiny) models


def tiny_cnn(seed: int):
    """A small trained-free CNN with logits (random weights give outputs that differ from one seed to another)."""
    from edgekit._keras import keras, layers

    keras.utils.set_random_seed(seed)
    inp = keras.Input((8, 8, 1), name="image")
    x = layers.Conv2D(8, 3, padding="same", activation="relu", name="conv")(inp)
    x = layers.Conv2D(8, 3, padding="same", activation="relu", name="conv2")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inp, layers.Dense(10, name="logits")(x), name=f"tiny_cnn_{seed}")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny CNN exported float32 + int8 (.tflite) and int8 (.onnx) on real samples (sklearn digits, 8x8x1), and a
    deliberately WRONG artifact: the same architecture with other weights."""
    import edgekit

    out = tmp_path_factory.mktemp("parity")
    arts = {}
    for q, fmts in (("none", ("tflite",)), ("int8", ("tflite", "onnx"))):
        data = {"calib_data": "digits", "calib_samples": 100} if q == "int8" else {"verify_data": "digits"}
        r = edgekit.export(tiny_cnn(0), quantize=q, formats=fmts, verify_samples=12, out=out, **data)
        for a in r.artifacts:
            arts[f"{a.format}-{a.precision}"] = a.path
    wrong = edgekit.export(tiny_cnn(1), quantize="none", verify_data="digits", verify_samples=12, out=out / "wrong")
    arts["wrong"] = wrong.artifacts[0].path
    return arts


def test_export_writes_verification_data_referenced_by_the_manifest(exported):
    for path in exported.values():
        man = json.loads(Path(str(path) + ".json").read_text())
        entry = man["verification_inputs"]
        vfile = path.with_name(entry["file"])
        assert vfile.name == path.name + verify_data.VERIFY_SUFFIX and vfile.is_file()
        assert entry["sha256"] == hashlib.sha256(vfile.read_bytes()).hexdigest()
        vd = verify_data.read(vfile)
        assert vd.samples == entry["samples"] == 12 and vd.input_names == entry["inputs"]
        assert vd.inputs[0].shape == (12, 8, 8, 1) and vd.inputs[0].dtype == np.float32
        assert vd.reference[0].shape == (12, 10) and vd.host[0].shape == (12, 10) and vd.labels.shape == (12,)
        assert entry["precision"] == man["precision"]
    assert not list(Path(exported["tflite-int8"]).parent.glob(".edgekit-export-*"))


def test_damaged_verification_data_is_a_clear_error(tmp_path):
    from edgekit.errors import InvalidArgument

    bad = tmp_path / "m.tflite.verify.npz"
    bad.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(InvalidArgument, match="re-export"):
        verify_data.read(bad)


def test_parity_locally_per_precision(exported):
    rows = bench([exported["tflite-float32"], exported["tflite-int8"], exported["onnx-int8"]], "local", runs=5,
                 warmup=1, verify=True)
    for r in rows:
        assert r.ok and r.parity["status"] == "passed", (r.artifact, r.error, r.parity)
        (out,) = r.parity["outputs"]
        assert r.parity["samples"] == 12 and out["top1_agreement"] is not None
        assert out["host_max_abs_err"] <= 1e-6  # same machine, same runtime: the host's own outputs, exactly
    assert rows[0].parity["outputs"][0]["max_abs_err"] <= 1e-4 and rows[0].parity["thresholds"]["max_abs_err"]
    assert rows[1].parity["outputs"][0]["sqnr_db"] >= 10 and rows[1].parity["precision"] == "int8"


def test_wrong_artifact_is_caught_as_parity_failed(exported, tmp_path):
    right = Path(str(exported["tflite-float32"]) + verify_data.VERIFY_SUFFIX)
    (row,) = bench([exported["wrong"]], "local", runs=3, warmup=0, verify=True, verify_data=right)
    assert row.status == "parity_failed" and not row.ok and row.parity["status"] == "failed"
    assert "max abs error" in row.error and row.parity["failures"]
    # and the CLI says so in its exit code and summary line
    from click.testing import CliRunner

    from edgekit.cli import main

    r = CliRunner().invoke(main, ["bench", str(exported["wrong"]), str(exported["tflite-float32"]), "--verify",
                                  "--verify-data", str(right), "--runs", "3", "--no-history"])
    assert r.exit_code == 1 and "1 of 2 rows failed" in r.output and "parity_failed" in r.output, r.output


def test_verify_without_verification_data_is_a_clear_row_error(exported, tmp_path):
    import shutil

    bare = tmp_path / "bare_float32.tflite"
    shutil.copy(exported["tflite-float32"], bare)  # no manifest beside it
    (row,) = bench([bare], "local", runs=2, warmup=0, verify=True)
    assert row.status == "invalid_argument" and "no verification data" in row.error and "re-export" in row.hint


@pytest.mark.device
@pytest.mark.parametrize("flavour,int8_delegate", [("tflite", "auto"), ("litert", "none")])
def test_parity_on_aarch64_over_ssh(arm64_ssh, exported, flavour, int8_delegate):
    """The same artifacts on an emulated Raspberry Pi 4 (arm64 kernels of tflite-runtime 2.14 / ai-edge-litert 2.3).

    ai-edge-litert 2.3's XNNPACK int8 path gives different outputs under this qemu (7.2) than on x86 (SQNR ~0 dB on
    this model) while its reference kernels (--delegate none) and tflite-runtime 2.14's XNNPACK agree with the host:
    exactly what --verify is for; whether qemu or the kernels are at fault needs a real board. The int8 row of the
    litert flavour therefore runs the reference kernels."""
    kw = dict(key_file=arm64_ssh["SSHD_KEY"], known_hosts=arm64_ssh["SSHD_KNOWN_HOSTS"],
              python=arm64_ssh["python"][flavour], runs=3, warmup=1, verify=True)
    (f32,) = bench([exported["tflite-float32"]], arm64_ssh["url"], **kw)
    (i8,) = bench([exported["tflite-int8"]], arm64_ssh["url"], delegate=int8_delegate, **kw)
    for r in (f32, i8):
        assert r.ok and r.machine == "aarch64", (r.artifact, r.error)
        assert r.parity["status"] == "passed", r.parity
        (out,) = r.parity["outputs"]
        assert out["top1_agreement"] == 1.0 and out["host_sqnr_db"] is not None
    assert f32.parity["outputs"][0]["max_abs_err"] <= 1e-4


def test_constant_reference_is_inconclusive_not_a_parity_failure(tmp_path):
    """Verification's third outcome reaches parity: an untrained model's constant outputs prove nothing either way."""
    from edgekit.devices.parity import evaluate
    from edgekit._verify_data import VerifyData

    ref = np.full((6, 4), 0.25, np.float32)
    vd = VerifyData(tmp_path / "m.tflite.verify.npz", ["x"], ["y"], [np.zeros((6, 2), np.float32)], [ref], None, None)
    assert evaluate(vd, ["y"], [ref.copy()], precision="float32").status == "inconclusive"
    assert evaluate(vd, ["y"], [ref + 0.5], precision="float32").status == "failed"
