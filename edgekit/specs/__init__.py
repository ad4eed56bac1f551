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

__all__ = ["ModelSpec", "ExportOptions", "ExportSpec", "FitSpec", "TrainSpec", "StageSpec", "TrainStageSpec",
           "PruneSpec", "ClusterSpec", "QATSpec", "DistillSpec", "ExportStageSpec", "CompressSpec", "BenchSpec",
           "ConnectSpec", "CheckSpec", "CompareSpec", "DoctorSpec", "LadderOptions", "PackageSpec", "UnpackSpec"]
