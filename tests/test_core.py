"""Registry, errors and atomic output: the machinery every stage stands on."""
import subprocess
import sys

import pytest

from edgekit._io import atomic_path
from edgekit.errors import InvalidArgument, UnknownNameError, map_errors, ConnectError
from edgekit.registry import Registry


def test_registry_resolves_aliases_and_suggests_close_names():
    reg = Registry("widget")
    reg.add("mobilenet_v1_100", 1, aliases=("mobilenet",))
    reg.add("resnet50", 2)
    assert reg.get("MobileNet") == 1
    assert reg.list("res*") == ["resnet50"]
    with pytest.raises(UnknownNameError) as info:
        reg.get("resnet5")
    assert "resnet50" in str(info.value) and info.value.exit_code == 2


def test_map_errors_translates_and_chains():
    with pytest.raises(ConnectError) as info:
        with map_errors({OSError: ConnectError}, "cannot reach pi", hint="check the address"):
            raise TimeoutError("timed out")
    assert "cannot reach pi: timed out" in str(info.value) and isinstance(info.value.__cause__, TimeoutError)


def test_atomic_path_leaves_nothing_on_error(tmp_path):
    dest = tmp_path / "model.tflite"
    with pytest.raises(RuntimeError):
        with atomic_path(dest) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("converter died")
    assert list(tmp_path.iterdir()) == []
    with atomic_path(dest) as tmp:
        tmp.write_bytes(b"whole")
    assert dest.read_bytes() == b"whole" and len(list(tmp_path.iterdir())) == 1


def test_import_edgekit_does_not_import_tensorflow():
    code = "import sys, edgekit, edgekit.cli; assert 'tensorflow' not in sys.modules, 'tf imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
