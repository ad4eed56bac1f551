"""``edgekit sweep``: the most accurate model within a latency budget, measured on your own device.

The MobileNet paper's two knobs (width alpha, resolution rho), the precision and the model family are swept
over a grid; every point is trained (training shared, see :data:`~edgekit.sweep.plan.SHARING_DOC`), exported
with verification, scored on held-out labelled test data in the artifact's runtime, and measured on every
device. The result is a table with the Pareto front per device, the pick within a budget, the log-linear
accuracy fit and the latency model, written under ``out`` as points finish (a rerun resumes).

``edgekit.sweep.run(model, ...)`` runs one (:func:`run`). Importing the package does not import TensorFlow.
"""
from __future__ import annotations

from typing import Callable

from .._progress import Progress, no_progress
from .._spec import takes_spec
from .analysis import AccuracyFit, LatencyFit, Pick
from .api import BudgetNotMet, SweepProgress, run_sweep
from .results import SweepResult, SweepRow, SweepSummary
from .spec import SweepSpec, from_config, load_config

#: the public names: what edgekit/__init__.py and the CLI use (the others are importable, not public API)
__all__ = ["run", "SweepSpec", "SweepResult", "BudgetNotMet"]


@takes_spec(SweepSpec, positional=("model",))
def run(spec: SweepSpec, *, progress: Progress = no_progress,
          on_event: Callable[[SweepProgress], None] | None = None) -> SweepResult:
    """Sweep ``model`` (a zoo name; None when ``grid`` has ``model``) over ``grid`` x ``quantize`` x ``formats``.
    Arguments: :class:`SweepSpec` (= ``edgekit sweep`` options = sweep-config keys; also a ready ``spec=``), e.g.
    ``grid={"alpha": [0.25, 0.5], "resolution": [32, 64]}, quantize=("float32", "int8"), data="fashion-mnist",
    input_channels=1, weights="none", epochs=3, devices=("local",), budget_ms=1.0, out="runs/sweep"``.

    Every input is checked before any training (InvalidArgument). Points that fail are rows with their status;
    the result is also written to ``out`` (results.json, results.csv, plots/*.png) as rows finish, and calling
    again with the same arguments reuses what finished. ``require_budget=True`` raises :class:`BudgetNotMet`
    (carrying the result) when a device has no point within ``budget_ms``, or none significantly above chance
    (rows at chance are flagged ``above_chance=False`` and kept out of fronts, fits and picks). ``on_event`` gets a
    :class:`SweepProgress` (points done / total, estimated time left) whenever something changes.
    """
    return run_sweep(spec, progress=progress, on_event=on_event)

