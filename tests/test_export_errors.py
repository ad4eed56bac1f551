"""Bad input to export: a clear error (InvalidArgument family, exit code 2) and no partial artifact left behind."""
from __future__ import annotations

import json

import numpy as np
import pytest

from edgekit.errors import (DataError, EdgekitWarning, ExportError, InvalidArgument, ModelLoadError, UnknownNameError,
                            VerificationError)


def small(name="errnet"):
    from edgekit._keras import keras, layers

    inp = keras.Input((16, 16, 1))
    x = layers.Conv2D(4, 3, padding="same", name="c")(inp)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, layers.Dense(3, activation="softmax", name="d")(x), name=name)


@pytest.fixture(scope="module")
def model():
    return small()


def leftovers(out):
    return sorted(p.name for p in out.rglob("*")) if out.exists() else []


@pytest.mark.parametrize("kwargs,match", [
    (dict(quantize="int9"), "did you mean 'int8'"),
    (dict(formats="tfite"), "did you mean 'tflite'"),
    (dict(formats=["tflite", "onx"]), "did you mean 'onnx'"),
    (dict(formats=""), "no export format"),
    (dict(io="int4", quantize="int8"), "unknown io"),
    (dict(io="int8"), "io='int8' does not apply"),
    (dict(io="uint8", quantize="int8", formats="tflite,onnx"), "io='uint8' does not apply to onnx"),
    (dict(io="int8", quantize="int16x8"), "io='int8' does not apply"),
    (dict(calib_data="fashion-mnist", quantize="fp16"), "calib_data does not apply"),
    (dict(calib_data="fashion-mnist"), "calib_data does not apply"),
    (dict(calib_samples=100, quantize="dynamic"), "calib_samples=100 does not apply"),
    (dict(calib_samples=0, quantize="int8"), "calib_samples=0"),
    (dict(per_tensor=True, quantize="fp16"), "per_tensor does not apply"),
    (dict(quantize="int16x8", formats="onnx"), "does not support quantize='int16x8'"),
    (dict(opset=13), "opset applies to the onnx format only"),
    (dict(verify_samples=0), "verify_samples must be positive"),
    (dict(preprocess="imagenet"), "unknown preprocess"),
    (dict(alpha=0.5), "model options"),
])
def test_incompatible_or_unknown_options_are_rejected(model, tmp_path, kwargs, match):
    from edgekit.exporters import export

    out = tmp_path / "out"
    with pytest.raises(InvalidArgument, match=match) as info:
        export(model, out=out, **kwargs)
    assert info.value.exit_code == 2
    assert leftovers(out) == []


def test_unknown_precision_is_a_registry_lookup(model, tmp_path):
    from edgekit.exporters import export

    with pytest.raises(UnknownNameError) as info:
        export(model, quantize="int7", out=tmp_path)
    assert info.value.kind == "precision" and "int8" in info.value.known


@pytest.mark.parametrize("wrap,kind", [("prune", "pruning"), ("cluster", "clustering")])
def test_pruning_or_clustering_wrappers_must_be_stripped(tmp_path, wrap, kind):
    from edgekit._keras import tfmot
    from edgekit.exporters import export

    mot = tfmot()
    if wrap == "prune":
        m = mot.sparsity.keras.prune_low_magnitude(small("pruned"))
    else:
        m = mot.clustering.keras.cluster_weights(small("clustered"), number_of_clusters=2,
                                                 cluster_centroids_init=mot.clustering.keras.CentroidInitialization.LINEAR)
    with pytest.raises(InvalidArgument, match=f"{kind} wrapper.*strip it first"):
        export(m, out=tmp_path / "out")
    assert leftovers(tmp_path / "out") == []


def test_qat_model_needs_int8(tmp_path):
    from edgekit._keras import tfmot
    from edgekit.exporters import export

    qat = tfmot().quantization.keras.quantize_model(small("qat"))
    with pytest.raises(InvalidArgument, match="QAT"):
        export(qat, quantize="none", out=tmp_path / "out")
    with pytest.raises(InvalidArgument, match="cannot export a quantization-aware"):
        export(qat, quantize="int8", formats="onnx", out=tmp_path / "out")
    assert leftovers(tmp_path / "out") == []


@pytest.mark.parametrize("content", [b"", b"this is not a model", bytes(range(256)) * 8])
def test_corrupt_model_file(tmp_path, content):
    from edgekit.exporters import export

    bad = tmp_path / "broken.keras"
    bad.write_bytes(content)
    with pytest.raises(ModelLoadError):
        export(str(bad), out=tmp_path / "out")
    assert leftovers(tmp_path / "out") == []


def test_empty_calibration_dir(model, tmp_path):
    from edgekit.exporters import export

    (tmp_path / "calib" / "cls").mkdir(parents=True)
    with pytest.raises(DataError, match="no images"):
        export(model, quantize="int8", calib_data=tmp_path / "calib", out=tmp_path / "out")
    assert leftovers(tmp_path / "out") == []


@pytest.mark.slow
def test_undecodable_images(model, tmp_path):
    from PIL import Image

    from edgekit.exporters import export

    d = tmp_path / "calib"
    d.mkdir()
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(d / "ok.png")
    (d / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(DataError, match="unreadable image .*broken.jpg"):  # --strict-data: the first one fails
        export(model, quantize="int8", calib_data=d, out=tmp_path / "out", strict_data=True)
    assert leftovers(tmp_path / "out") == []
    with pytest.warns(EdgekitWarning, match="skipped 1 unreadable image of 2: broken.jpg"):  # default: skipped
        res = export(model, quantize="int8", calib_data=d, out=tmp_path / "out", verify=False)
    assert res.calibration.count == 1


@pytest.mark.parametrize("shape", [(10, 32, 32, 1), (10, 16, 16, 3), (16, 16)])
def test_calibration_arrays_of_wrong_shape(model, tmp_path, shape):
    from edgekit.exporters import export

    f = tmp_path / "calib.npy"
    np.save(f, np.zeros(shape, np.float32))
    with pytest.raises(DataError, match="shape"):
        export(model, quantize="int8", calib_data=f, out=tmp_path / "out")
    assert leftovers(tmp_path / "out") == []


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_calibration_arrays_with_nan_or_inf(model, tmp_path, bad):
    """NaN inputs used to give a float32 'int8' artifact whose NaN outputs passed verification."""
    from edgekit.exporters import export

    x = np.random.default_rng(0).random((40, 16, 16, 1), dtype=np.float32)
    x[3, 2, 2, 0] = bad
    np.save(tmp_path / "calib.npy", x)
    with pytest.raises(DataError, match="NaN or infinite"):
        export(model, quantize="int8", calib_data=tmp_path / "calib.npy", out=tmp_path / "out")
    assert leftovers(tmp_path / "out") == []
    with pytest.raises(DataError, match="NaN or infinite"):
        export(model, verify_data=x, out=tmp_path / "out")
    with pytest.raises(DataError, match="cannot use a list"):
        export(model, verify_data=[1, 2], out=tmp_path / "out")


def test_non_finite_outputs_fail_verification():
    from edgekit.verification import verify_outputs

    ref = [np.full((4, 3), 1 / 3, np.float32)]
    nan = [np.full((4, 3), np.nan, np.float32)]
    for a, b in ((ref, nan), (nan, nan)):
        v = verify_outputs(a, b, precision="int8", output_lsb=1 / 256)
        assert not v.passed and "NaN or infinite" in v.failures[0]


def test_unwritable_output_dir(model, tmp_path):
    from edgekit.exporters import export

    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InvalidArgument, match="not writable"):
        export(model, out=blocker / "sub")


@pytest.mark.slow
def test_failed_verification_raises_and_leaves_nothing(model, tmp_path, monkeypatch):
    from edgekit.exporters import TOLERANCES, Tolerance, export

    monkeypatch.setitem(TOLERANCES, "float32", Tolerance(max_abs_err=-1.0))  # nothing can pass
    out = tmp_path / "out"
    with pytest.raises(VerificationError, match="does not match the Keras model"):
        export(model, formats="tflite,onnx", out=out, verify_samples=8)
    assert leftovers(out) == []
    res = export(model, formats="tflite", out=out, verify=False, verify_samples=8)  # recorded, artifact kept
    art = res["tflite"]
    assert art.path.is_file() and not art.verification.passed
    assert any("verification FAILED" in w for w in art.warnings)
    assert '"passed": false' in art.manifest.read_text()
    assert leftovers(out) == sorted([art.path.name, art.manifest.name, art.path.name + ".verify.npz"])


@pytest.mark.slow
def test_failure_in_a_later_format_removes_earlier_artifacts(model, tmp_path, monkeypatch):
    from edgekit.exporters import EXPORTERS, export

    def boom(*a, **k):
        raise ExportError("converter exploded")

    monkeypatch.setattr(EXPORTERS.get("tflite"), "convert", boom)  # tflite runs after onnx (given order)
    out = tmp_path / "out"
    with pytest.raises(ExportError, match="exploded"):
        export(model, formats="onnx,tflite", out=out, verify_samples=4)
    assert leftovers(out) == []


@pytest.mark.slow
def test_converted_artifact_that_does_not_load_is_an_export_error(model, tmp_path, monkeypatch):
    """e.g. int16x8 of an untrained MobileNet: LiteRT refuses the converter's output. That is not the caller's
    file being corrupt (ModelLoadError, 'is it a .tflite flatbuffer?') but a failed conversion."""
    from edgekit import runtimes
    from edgekit.exporters import export

    def refuse(path, **kw):
        raise ModelLoadError(f"LiteRT cannot load {path.name}: Node number 10 (DEPTHWISE_CONV_2D) failed to prepare")

    monkeypatch.setattr(runtimes, "load", refuse)
    out = tmp_path / "out"
    with pytest.raises(ExportError, match="does not load in litert: LiteRT cannot load") as info:
        export(model, out=out, verify_samples=4)
    assert not isinstance(info.value, InvalidArgument) and "untrained" in info.value.hint
    assert leftovers(out) == []


@pytest.mark.slow
def test_failed_export_does_not_create_the_out_dir(model, tmp_path):
    """A typo must not leave an empty ./artifacts behind: the folder appears only when files are written."""
    from edgekit.exporters import export

    out = tmp_path / "new" / "out"
    with pytest.raises(UnknownNameError):
        export("mobilnet", out=out)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError):
        export(model, quantize="int8", calib_data=tmp_path / "empty", out=out)
    assert not (tmp_path / "new").exists()
    assert export(model, out=out, verify_samples=4)["tflite"].path.parent == out


def test_constant_keras_outputs_are_inconclusive():
    """Untrained zoo models (--weights none) often output the same softmax for every input: the comparison cannot
    show the artifact computes the model's function. Not 'passed' (it used to pass with a note), not 'failed'."""
    from edgekit.verification import verify_outputs

    ref = [np.full((5, 10), 0.1, np.float32)]
    v = verify_outputs(ref, [np.full((5, 10), 26 / 256, np.float32)], precision="int8", output_lsb=1 / 256)
    assert v.status == "inconclusive" and not v.passed and not v.failures
    assert "same output for every input" in v.note and "inconclusive" in v.note
    assert v.outputs[0].constant and v.outputs[0].status == "inconclusive"
    wrong = verify_outputs(ref, [np.full((5, 10), 0.5, np.float32)], precision="int8", output_lsb=1 / 256)
    assert wrong.status == "failed"  # constant, but not what Keras computes: a failure, not inconclusive
    varied = [np.random.default_rng(0).random((5, 10)).astype(np.float32)]
    v = verify_outputs(varied, varied, precision="float32")
    assert v.status == "passed" and v.passed and v.note is None


def test_folder_where_a_later_artifact_goes_is_refused_before_converting(model, tmp_path, monkeypatch):
    """--format tflite,onnx with a folder named like the .onnx: detected before any conversion (it used to write
    the .tflite, then fail on the folder: half an export)."""
    from edgekit.exporters import EXPORTERS, export

    calls = []
    for f in ("tflite", "onnx"):
        monkeypatch.setattr(EXPORTERS.get(f), "convert", lambda *a, _f=f, **k: calls.append(_f))
    out = tmp_path / "out"
    for blocker in ("errnet_float32.onnx", "errnet_float32.tflite.json"):
        (out / blocker).mkdir(parents=True)
        with pytest.raises(InvalidArgument, match=f"{blocker}' is a folder") as info:
            export(model, formats="tflite,onnx", out=out, verify_samples=4)
        assert info.value.exit_code == 2 and "another --out" in info.value.hint
        assert calls == [] and leftovers(out) == [blocker]
        (out / blocker).rmdir()


@pytest.mark.slow
def test_failed_commit_restores_what_was_there(model, tmp_path, monkeypatch):
    """The last renames of an export fail: none of its files stays and the previous artifacts come back."""
    import os

    from edgekit.exporters import _staging, export

    out = tmp_path / "out"
    first = export(model, formats="tflite,onnx", out=out, verify_samples=4)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert len(before) == 6
    (out / "errnet_float32.tflite.verify.npz").unlink()  # one destination that did not exist before
    del before["errnet_float32.tflite.verify.npz"]
    (out / "errnet_float32.tflite").write_bytes(b"old tflite")
    before["errnet_float32.tflite"] = b"old tflite"
    real = os.replace

    def replace(src, dst):
        if str(dst).endswith(".onnx.json"):
            raise OSError(28, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(_staging.os, "replace", replace)
    with pytest.raises(OSError, match="No space left"):
        export(model, formats="tflite,onnx", out=out, verify_samples=4)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # incl. no staging folder left
    assert first.artifacts


@pytest.mark.slow
def test_samples_the_machine_cannot_hold_are_refused_before_allocating(tmp_path, monkeypatch):
    """--alpha 1.5 --resolution 4096 wanted 112 GiB of synthetic calibration: estimated and refused up front."""
    from edgekit._keras import keras, layers
    from edgekit.exporters import calibration, export

    monkeypatch.setattr(calibration, "_available_memory", lambda: 4 << 30)
    inp = keras.Input((512, 512, 3))
    big = keras.Model(inp, layers.GlobalAveragePooling2D()(layers.Conv2D(4, 3, strides=4)(inp)), name="big")
    with pytest.raises(InvalidArgument, match=r"300 calibration \+ 100 verification samples of input \(512, 512, 3\) "
                                              r"need about 2.3 GiB of memory \(3.0 MiB per sample\)") as info:
        export(big, quantize="int8", out=tmp_path / "out")
    assert "at most 341 samples fit" in info.value.hint and not (tmp_path / "out").exists()
    res = export(big, quantize="int8", calib_samples=100, verify_samples=10, out=tmp_path / "out", verify=False)
    assert res.calibration.count == 100


@pytest.mark.slow
def test_zoo_model_at_a_huge_resolution_is_refused_quickly(tmp_path):
    import time

    from edgekit.exporters import export

    t = time.perf_counter()
    with pytest.raises(InvalidArgument, match="of input \\(4096, 4096, 3\\) need about .* GiB of memory"):
        export("mobilenet_v1", alpha=1.5, resolution=4096, weights="none", quantize="int8", out=tmp_path / "o")
    assert time.perf_counter() - t < 60 and not (tmp_path / "o").exists()


@pytest.mark.slow
def test_calibrating_on_smaller_grayscale_images_warns_and_is_recorded(tmp_path, fashion_mnist_available):
    """28x28x1 Fashion-MNIST into a 32x32x3 model: resized and channel-replicated silently before."""
    from edgekit._keras import keras, layers
    from edgekit.errors import EdgekitWarning
    from edgekit.exporters import export

    inp = keras.Input((32, 32, 3))
    rgb = keras.Model(inp, layers.Dense(3, activation="softmax")(layers.GlobalAveragePooling2D()(
        layers.Conv2D(4, 3)(inp))), name="rgbnet")
    with pytest.warns(EdgekitWarning, match="are 28x28x1 but input .* takes 32x32x3: resized and channels replicated"):
        res = export(rgb, quantize="int8", calib_data="fashion-mnist", calib_samples=100, verify_samples=10,
                     out=tmp_path)
    man = json.loads(res["tflite"].manifest.read_text())
    assert man["calibration"]["adapted"] == {**man["calibration"]["adapted"], "from": [28, 28, 1], "to": [32, 32, 3],
                                             "resized": True, "channels": "replicated"}
    assert any("28x28x1" in w for w in man["calibration"]["warnings"])
    assert "28x28x1 images adapted to 32x32x3" in man["verification_data"]


# ------------------------------------------------------------------------------ issue 18: a full disk
@pytest.fixture
def tiny_disk(tmp_path):
    """A 96 KiB tmpfs (as root where mounting is allowed): a real full disk. Skips elsewhere (the patched-write
    variant below runs everywhere)."""
    import os
    import subprocess

    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(mnt)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a tmpfs needs root (and a kernel that lets us)")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _big():
    """Weights of ~200 KiB: more than the tiny disk holds."""
    from edgekit._keras import keras, layers

    inp = keras.Input((16, 16, 1))
    x = layers.Flatten()(inp)
    return keras.Model(inp, layers.Dense(200, name="d")(x), name="bignet")


@pytest.mark.slow
def test_full_disk_during_export_leaves_nothing(tiny_disk):
    """Issue 18: a full disk was an `internal error:` and the empty --out folder stayed."""
    from edgekit.exporters import export

    out = tiny_disk / "new" / "out"
    with pytest.raises(OSError) as info:
        export(_big(), formats="tflite", out=out, verify_samples=4)
    assert info.value.errno == 28 and list(tiny_disk.iterdir()) == []


@pytest.mark.slow
def test_failed_write_removes_the_out_folders_it_created_and_the_cli_says_disk_full(model, tmp_path, monkeypatch):
    import errno
    from pathlib import Path

    from click.testing import CliRunner

    import edgekit.exporters as exporters
    from edgekit.cli import main
    from edgekit.exporters import export

    real = Path.write_bytes

    def full(self, data):
        if self.suffix == ".tflite":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", full)
    (tmp_path / "kept").mkdir()
    for out in (tmp_path / "a" / "b" / "out", tmp_path / "kept"):
        with pytest.raises(OSError, match="No space left"):
            export(model, formats="tflite", out=out, verify_samples=4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept"] and leftovers(tmp_path / "kept") == []

    def no_space(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x.tflite"))

    monkeypatch.setattr(exporters, "export", no_space)
    r = CliRunner().invoke(main, ["export", "mobilenet_v1", "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "error: No space left on device" in r.stderr and "hint: the disk is full" in r.stderr


@pytest.mark.parametrize("cmd", ["inspect {long}.tflite", "profile {long}.keras", "bench {long}.tflite --no-history",
                                 "train {model} --data {tmp} --out {long}.keras", "export {model} --out {long}",
                                 "bench {tmp} --json {long}.json"])
def test_a_300_byte_file_name_is_an_error_with_a_hint(model, tmp_path, cmd):
    """Issue 18: `File name too long` was an internal error (exit 1, no hint)."""
    from click.testing import CliRunner

    from edgekit.cli import main

    saved = tmp_path / "m.keras"
    model.save(saved)
    np.savez(tmp_path / "d.npz", x=np.zeros((8, 16, 16, 1), np.float32), y=np.arange(8) % 3)
    args = cmd.format(long=tmp_path / ("n" * 300), model=saved, tmp=tmp_path / "d.npz").split()
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2 and "error:" in r.stderr and "hint:" in r.stderr and "internal" not in r.stderr, r.output
    assert "255" in r.stderr or "too long" in r.stderr, r.stderr


def test_staging_folders_of_killed_exports_are_cleaned(tmp_path):
    """Issue 18: a SIGKILLed export left a hidden .edgekit-export-* folder that reruns never cleaned. Only edgekit's
    own folders whose owner process is gone are removed; a live export's, another host's and a foreign one stay."""
    import json
    import os
    import signal
    import subprocess
    import sys

    from edgekit.exporters._staging import OWNER_FILE, STAGING_PREFIX, Staging

    out = tmp_path / "out"
    out.mkdir()
    child = ("import sys, time; from pathlib import Path; from edgekit.exporters._staging import Staging\n"
             "st = Staging(Path(sys.argv[1])).__enter__(); (st.dir / 'half.tflite').write_bytes(b'x' * 1000)\n"
             "print(st.dir, flush=True); time.sleep(60)\n")
    killed = subprocess.Popen([sys.executable, "-c", child, str(out)], stdout=subprocess.PIPE, text=True)
    live = subprocess.Popen([sys.executable, "-c", child, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        dead_dir, live_dir = killed.stdout.readline().strip(), live.stdout.readline().strip()
        os.kill(killed.pid, signal.SIGKILL)
        killed.wait()
        other_host = out / (STAGING_PREFIX + "otherhost")
        other_host.mkdir()
        (other_host / OWNER_FILE).write_text(json.dumps({"pid": killed.pid, "host": "elsewhere", "started": "1"}))
        not_ours = out / (STAGING_PREFIX + "no-owner-record")
        not_ours.mkdir()
        with Staging(out) as st:
            names = sorted(p.name for p in out.iterdir())
        assert os.path.basename(dead_dir) not in names and st.dir.name in names
        assert {os.path.basename(live_dir), other_host.name, not_ours.name} <= set(names)
    finally:
        live.kill()
        live.wait()
