"""edgekit: from a Keras CNN definition to a measured .tflite/.onnx running on a phone or an ARM board.

The public surface is small and lazy: ``import edgekit`` does not import TensorFlow; the names below load their
module on first use.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    # model zoo and profiling
    "create_model": ("edgekit.models", "create"),
    "list_models": ("edgekit.models", "list"),
    "profile": ("edgekit.profiling", "profile"),
    # data
    "load_data": ("edgekit.data", "load"),
    # export
    "export": ("edgekit.doctor", "export"),  # exporters.export, or with max_drop the int8 doctor's ladder
    "ExportResult": ("edgekit.exporters", "ExportResult"),
    "inspect": ("edgekit.exporters", "inspect"),
    # compression
    "Pipeline": ("edgekit.compression", "Pipeline"),
    "compress": ("edgekit.compression", "compress"),
    "train": ("edgekit.compression", "train"),
    "run_recipe": ("edgekit.recipes", "run_recipe"),
    # on-device latency
    "bench": ("edgekit.devices", "bench"),
    "BenchResult": ("edgekit.devices", "BenchResult"),
    # decisions: the package is callable, edgekit.sweep(model, grid=..., ...) runs a sweep
    "sweep": ("edgekit.sweep", None),
    "SweepResult": ("edgekit.sweep", "SweepResult"),
    # the package is callable: edgekit.doctor(model, calib_data=..., eval_data=..., max_drop=1) runs the int8 doctor
    "doctor": ("edgekit.doctor", None),
    "DoctorResult": ("edgekit.doctor", "DoctorResult"),
    # errors
    "EdgekitError": ("edgekit.errors", "EdgekitError"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'edgekit' has no attribute {name!r}") from None
    value = importlib.import_module(module)
    value = value if attr is None else getattr(value, attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
