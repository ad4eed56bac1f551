"""The fast loop's guard: while ``EDGEKIT_TEST_NO_TRAINING`` is set (conftest sets it to the test's id for every test
not marked ``slow``), training a Keras model and converting one to TFLite or ONNX raise :class:`TrainingInFastTest`.

Patched where every path goes through, whoever calls it (edgekit, tfmot, a test's own helper): ``Model.fit`` and
``train_on_batch`` of tf-keras and Keras 3, ``TFLiteConverterBase._convert_and_export_metrics`` (every TFLite
converter's ``convert``, V1 and V2) and tf2onnx's ``from_keras/from_function/from_graph_def/from_tflite``. The
patches go in when those modules are first imported (an import hook: importing this module imports no TensorFlow),
in the pytest process (conftest) and in its subprocesses (``tests/_site/sitecustomize.py``, which conftest puts on
PYTHONPATH). Pure Python, standard library only: it also loads in the devlab's aarch64 Python.
"""
from __future__ import annotations

import functools
import importlib.abc
import importlib.util
import os
import sys

ENV = "EDGEKIT_TEST_NO_TRAINING"

#: module -> (dotted attribute paths to wrap, what the call does)
TARGETS = {
    "tf_keras.src.engine.training": (("Model.fit", "Model.train_on_batch"), "trains a Keras model"),
    "keras.src.backend.tensorflow.trainer": (("TensorFlowTrainer.fit", "TensorFlowTrainer.train_on_batch"),
                                             "trains a Keras model"),
    "tensorflow.lite.python.lite": (("TFLiteConverterBase._convert_and_export_metrics",),
                                    "converts a model to TFLite"),
    "tf2onnx.convert": (("from_keras", "from_function", "from_graph_def", "from_tflite"),
                        "converts a model to ONNX"),
}


class TrainingInFastTest(BaseException):
    """A test not marked slow trained or converted a model. A BaseException, like KeyboardInterrupt: no ``except
    Exception`` of the code under test (a sweep point, a doctor case, a converter's error mapping) handles it."""


def active() -> str | None:
    """The id of the guarded test running now (None: no guard)."""
    return os.environ.get(ENV) or None


def _guarded(fn, what: str, name: str):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        test = active()
        if test:
            raise TrainingInFastTest(
                f"{test} {what} ({name}) but is not marked slow: mark it @pytest.mark.slow, or check what it "
                f"checks without a trained or converted model (tests/tflite_files.py builds .tflite files without "
                f"TensorFlow; conftest's trained_mnv1 is one shared trained model for slow tests)")
        return fn(*args, **kwargs)

    wrapper._edgekit_guarded = True
    return wrapper


def _patch(module) -> None:
    paths, what = TARGETS[module.__name__]
    for path in paths:
        *owner_path, attr = path.split(".")
        owner = module
        for part in owner_path:
            owner = getattr(owner, part, None)
        fn = getattr(owner, attr, None) if owner is not None else None
        if fn is not None and not getattr(fn, "_edgekit_guarded", False):
            setattr(owner, attr, _guarded(fn, what, f"{module.__name__}.{path}"))


class _Loader(importlib.abc.Loader):
    def __init__(self, inner):
        self.inner = inner

    def create_module(self, spec):
        return self.inner.create_module(spec)

    def exec_module(self, module):
        self.inner.exec_module(module)
        _patch(module)

    def __getattr__(self, name):   # get_code, get_source, is_package, ... of the real loader
        return getattr(self.inner, name)


class _Finder(importlib.abc.MetaPathFinder):
    """Wraps the loader of the TARGETS modules so that they are patched right after they execute."""

    edgekit_no_training = True

    def find_spec(self, fullname, path, target=None):
        if fullname not in TARGETS:
            return None
        for finder in sys.meta_path:
            if getattr(finder, "edgekit_no_training", False) or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _Loader(spec.loader)
                return spec
        return None


def install() -> None:
    """Patch the TARGETS already imported and those imported later (idempotent)."""
    if not any(getattr(f, "edgekit_no_training", False) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
    for name in TARGETS:
        if name in sys.modules:
            _patch(sys.modules[name])
