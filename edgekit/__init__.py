"""edgekit: from a Keras CNN definition to a measured .tflite/.onnx running on a phone or an ARM board.

The public surface is small and lazy: ``import edgekit`` does not import TensorFlow; the names below load their
module on first use. One calling style: every operation takes its spec (``spec=``, see :mod:`edgekit.specs`) or the
same keyword arguments (= the CLI's options = a recipe's keys) and returns a result object that serialises to JSON
(``to_dict``/``to_json``). ``edgekit.doctor`` and ``edgekit.sweep`` are packages; their operation is ``run``:
``edgekit.doctor.run(model, ...)``, ``edgekit.sweep.run(model, ...)``.
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
    # compression: Pipeline(stages).run(model, data, config) -> PipelineResult
    "Pipeline": ("edgekit.compression", "Pipeline"),
    "PipelineResult": ("edgekit.compression", "PipelineResult"),
    "compress": ("edgekit.compression", "compress"),
    "CompressResult": ("edgekit.compression", "CompressResult"),
    "train": ("edgekit.compression", "train"),
    "TrainResult": ("edgekit.compression", "TrainResult"),
    "run_recipe": ("edgekit.recipes", "run_recipe"),
    # on-device latency
    "bench": ("edgekit.devices", "bench"),
    "BenchResult": ("edgekit.devices", "BenchResult"),
    "compare": ("edgekit.devices", "compare"),
    "Comparison": ("edgekit.devices", "Comparison"),
    # decisions: packages; edgekit.sweep.run(model, grid=..., ...) runs a sweep
    "sweep": ("edgekit.sweep", None),
    "SweepResult": ("edgekit.sweep", "SweepResult"),
    # edgekit.doctor.run(model, calib_data=..., eval_data=..., max_drop=1) runs the int8 doctor
    "doctor": ("edgekit.doctor", None),
    "DoctorResult": ("edgekit.doctor", "DoctorResult"),
    # shipping: update packages and deltas
    "package": ("edgekit.packaging", "package"),
    "unpack": ("edgekit.packaging", "unpack"),
    "PackageResult": ("edgekit.packaging", "PackageResult"),
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
