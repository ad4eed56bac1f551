"""On-device parity (issue 13 part 1): the export writes verification data; bench --verify replays it on a device."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from edgekit.devices import verify_data


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny zoo model exported float32 + int8 (.tflite) and int8 (.onnx) on real Fashion-MNIST samples."""
    import edgekit

    out = tmp_path_factory.mktemp("parity")
    kw = dict(alpha=0.25, resolution=32, input_channels=1, classes=10, weights="none", verify_samples=12, out=out)
    arts = {}
    for q, fmts in (("none", ("tflite",)), ("int8", ("tflite", "onnx"))):
        data = {"calib_data": "digits", "calib_samples": 40} if q == "int8" else {"verify_data": "digits"}
        r = edgekit.export("mobilenet_v1", quantize=q, formats=fmts, **data, **kw)
        for a in r.artifacts:
            arts[f"{a.format}-{a.precision}"] = a.path
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
        assert vd.inputs[0].shape == (12, 32, 32, 1) and vd.inputs[0].dtype == np.float32
        assert vd.reference[0].shape == (12, 10) and vd.host[0].shape == (12, 10) and vd.labels.shape == (12,)
        assert entry["precision"] == man["precision"]
    assert not list(Path(exported["tflite-int8"]).parent.glob(".edgekit-export-*"))


def test_damaged_verification_data_is_a_clear_error(tmp_path):
    from edgekit.errors import InvalidArgument

    bad = tmp_path / "m.tflite.verify.npz"
    bad.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(InvalidArgument, match="re-export"):
        verify_data.read(bad)
