"""Compression: training-time stages (prune, cluster, QAT, distill) that wrap, fine-tune and strip, chained by a
validated :class:`Pipeline`, followed by post-training quantization in the exporter, with a Deep Compression
report (accuracy, sparsity in the artifact, gzip and Huffman sizes per stage).

Importing this package does not import TensorFlow; the stages import it when they run.
"""
from __future__ import annotations

from .api import CompressResult, build_stages, compress
from .cluster import Cluster
from .distill import Distill, Distiller
from .export_stage import Export
from .ordering import validate_chain
from .pipeline import Pipeline, PipelineReport, PipelineResult
from .prune import Prune
from .qat import QAT
from .stages import STAGES, Context, Stage, StageReport, Train, make_stage
from .train import OPTIMIZERS, TrainReport, TrainResult, evaluate, train

#: the public names: what edgekit/__init__.py and the CLI use (the others are importable, not public API)
__all__ = ["Pipeline", "PipelineResult", "compress", "CompressResult", "train", "TrainResult"]
