"""The typed specs of edgekit's operations: each is the Python API's keyword arguments, the CLI's options and a
recipe's keys at once (see :mod:`edgekit._spec`). Importing this package imports no TensorFlow and no registry:
choices are looked up when a spec is built.
"""
from __future__ import annotations

from .bench import BenchSpec, CheckSpec, CompareSpec, ConnectSpec
from .compress import CompressSpec
from .doctor import DoctorSpec, LadderOptions
from .export import ExportOptions, ExportSpec
from .model import ModelSpec
from .package import PackageSpec, UnpackSpec
from .stages import (ClusterSpec, DistillSpec, ExportStageSpec, PruneSpec, QATSpec, StageSpec, TrainStageSpec)
from .train import FitSpec, TrainSpec

#: the public names: the specs of the operations that edgekit/__init__.py and the CLI expose, and FitSpec (the
#: ``config`` of ``Pipeline.run``)
__all__ = ["ModelSpec", "ExportSpec", "FitSpec", "TrainSpec", "CompressSpec", "BenchSpec", "CheckSpec", "CompareSpec",
           "DoctorSpec", "PackageSpec", "UnpackSpec"]
