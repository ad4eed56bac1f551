"""Loaded by every Python subprocess of the test session (conftest puts this folder on PYTHONPATH): installs the fast
loop's no-training guard (tests/no_training.py; it acts only while EDGEKIT_TEST_NO_TRAINING is set), then runs the
sitecustomize this one shadows (Debian's, if any)."""
import importlib.machinery
import importlib.util
import os
import sys

_here = os.path.dirname(os.path.abspath(__file__))
try:
    # under its own name: the pytest process (an xdist worker) imports it from tests/ and gets this very module
    _file = os.path.join(os.path.dirname(_here), "no_training.py")
    _spec = importlib.util.spec_from_file_location("no_training", _file)
    _guard = importlib.util.module_from_spec(_spec)
    sys.modules["no_training"] = _guard
    _spec.loader.exec_module(_guard)
    _guard.install()
except OSError:   # the tests folder is not visible here (e.g. a chroot): no guard, as in any other process
    sys.modules.pop("no_training", None)

_rest = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]
_other = importlib.machinery.PathFinder.find_spec("sitecustomize", _rest)
if _other is not None and _other.origin and os.path.dirname(os.path.abspath(_other.origin)) != _here:
    _mod = importlib.util.module_from_spec(_other)
    _other.loader.exec_module(_mod)
