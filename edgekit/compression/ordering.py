"""The rules a chain of stages must follow, checked before anything trains: stage order, export last, nothing
wrapped left behind by a stage that should have stripped its wrappers."""
from __future__ import annotations

from typing import Sequence

from .._layers import wrappers
from ..errors import CompressionError
from ..specs.stages import ORDER_RULES, check_order  # noqa: F401 - the rules live with the stage specs

def validate_chain(stages: Sequence) -> None:
    """Static order rules (no model needed). Raise PipelineError naming the problem."""
    check_order([s.name for s in stages])
    if stages and stages[-1].name == "export":
        stages[-1].check(None, stages[:-1])


def wrapper_layers(model) -> list[str]:
    """Names of tfmot wrapper layers (prune, cluster, quantize) still in ``model``."""
    return [name for names in wrappers(model).values() for name in names]


def assert_plain(model, stage: str) -> None:
    """A stage's finalize must strip its wrappers: a wrapped model must never reach an exporter."""
    left = wrapper_layers(model)
    if left:
        raise CompressionError(f"{stage}: finalize left tfmot wrappers in the model: {', '.join(left[:5])}")
