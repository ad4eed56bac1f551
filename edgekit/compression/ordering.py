"""The rules a chain of stages must follow, checked before anything trains: stage order, export last, nothing
wrapped left behind by a stage that should have stripped its wrappers."""
from __future__ import annotations

from typing import Sequence

from .._layers import wrappers
from ..errors import CompressionError, PipelineError

#: (earlier, later): why that order is invalid
ORDER_RULES = {
    ("cluster", "prune"): "prune after cluster breaks the weight sharing (and re-clustering would undo the zeros); "
                          "prune first, then cluster (sparsity-preserving)",
    ("qat", "prune"): "prune after qat would re-wrap a quantization-aware model; prune before qat",
    ("qat", "cluster"): "cluster after qat would re-wrap a quantization-aware model; cluster before qat",
    ("qat", "distill"): "distill after qat re-trains a quantization-aware model; distill first",
    ("qat", "qat"): "qat twice; use one qat stage with more epochs",
    ("qat", "train"): "train after qat: give the qat stage more epochs instead",
}


def validate_chain(stages: Sequence) -> None:
    """Static order rules (no model needed). Raise PipelineError naming the problem."""
    names = [s.name for s in stages]
    for i, later in enumerate(names):
        for earlier in names[:i]:
            why = ORDER_RULES.get((earlier, later))
            if why:
                raise PipelineError(f"invalid pipeline {' -> '.join(names)}: {why}")
    for i, name in enumerate(names):
        if name == "export" and i != len(stages) - 1:
            raise PipelineError(f"invalid pipeline {' -> '.join(names)}: export must be the last stage")
    if names and names[-1] == "export":
        stages[-1].check(None, stages[:-1])


def wrapper_layers(model) -> list[str]:
    """Names of tfmot wrapper layers (prune, cluster, quantize) still in ``model``."""
    return [name for names in wrappers(model).values() for name in names]


def assert_plain(model, stage: str) -> None:
    """A stage's finalize must strip its wrappers: a wrapped model must never reach an exporter."""
    left = wrapper_layers(model)
    if left:
        raise CompressionError(f"{stage}: finalize left tfmot wrappers in the model: {', '.join(left[:5])}")
