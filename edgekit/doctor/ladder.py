"""The ladder: cheaper fixes first, each rung measured on the eval data, stop at the first within the budget.

1. plain int8 (per-channel weights, MinMax calibration on ``calib_samples``);
2. more calibration samples (4x);
3. onnx only: onnxruntime's Entropy, then Percentile calibration;
4. layers kept in float: the diagnosis' worst op first, each added together with the ops that read its output
   (an op kept float still hands int8 to its readers, which quantize its output with the same bad range), one
   at a time until within the budget; then each one is dropped again if the budget still holds (a minimal set);
5. int16x8: 16-bit activations, 8-bit weights (tflite);
6. quantization-aware fine-tuning on ``train_data`` (tflite), when given;
then "budget not met" with the best found.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .._jsonable import JsonMixin
from .evaluate import EvalSet
from .stats import LayerStat, consumers, worst_first
from ..exporters.verify import artifact_top1
from ..devices.bench import local_latency

#: the "more calibration samples" rung uses this many times the first rung's samples
MORE_CALIBRATION = 4


@dataclass(frozen=True)
class Config:
    """One candidate: what ``edgekit export`` is given to build it."""

    quantize: str = "int8"
    calib_samples: int = 300
    calibration_method: str = "minmax"
    float_layers: tuple[str, ...] = ()
    qat_epochs: int = 0

    @property
    def key(self) -> str:
        parts = [self.quantize, f"n{self.calib_samples}", self.calibration_method, f"f{len(self.float_layers)}"]
        if self.qat_epochs:
            parts.append(f"qat{self.qat_epochs}")
        return "_".join(parts) + f"_{abs(hash(self.float_layers)) % 10 ** 8}"


@dataclass
class Rung(JsonMixin):
    """One rung of the ladder as tried: its options, what it measured (accuracy and drop as fractions 0..1, like every
    edgekit result), and whether it is within the budget."""

    name: str
    status: str  # within | over | skipped | failed | measured (no budget given)
    precision: str = "int8"
    calib_samples: int | None = None
    calibration_method: str | None = None
    float_layers: list[str] = field(default_factory=list)
    qat_epochs: int | None = None
    accuracy: float | None = None
    drop: float | None = None
    size_bytes: int | None = None
    p50_ms: float | None = None
    latency_note: str | None = None
    note: str | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)

    @property
    def measured(self) -> bool:
        return self.accuracy is not None


@dataclass
class Measured:
    config: Config
    path: Path
    accuracy: float
    drop: float
    size_bytes: int
    model: Any = None  # the QAT-trained model the candidate was exported from


class Search:
    """Builds candidates with a backend, measures them on the eval set, caches by configuration."""

    def __init__(self, backend, ev: EvalSet, calib: Callable[[int], np.ndarray], *, threads: int | None,
                 latency_runs: int, workdir: Path, progress):
        self.backend, self.ev, self.calib = backend, ev, calib
        self.threads, self.latency_runs, self.dir, self.progress = threads, latency_runs, workdir, progress
        self._done: dict[Config, Measured] = {}

    def measure(self, cfg: Config, *, model=None) -> Measured:
        if cfg in self._done:
            return self._done[cfg]
        dest = self.dir / f"{cfg.key}{self.backend.suffix}"
        calib_x = None if model is not None else self.calib(cfg.calib_samples)
        self.backend.build(cfg, calib_x, dest, model=model)
        acc = self.accuracy(dest)
        m = Measured(cfg, dest, acc, self.ev.float_accuracy - acc, dest.stat().st_size)
        self._done[cfg] = m
        return m

    def accuracy(self, path: Path) -> float:
        """The eval metric (a fraction) of the artifact at ``path`` in its runtime."""
        from ..runtimes import load

        return self.ev.score(artifact_top1(load(path, threads=self.threads), self.ev.x, self.progress, path.name))

    def latency(self, path: Path) -> tuple[float | None, str | None]:
        """p50 (ms) measured locally with the on-device harness (``edgekit bench --device local``)."""
        return local_latency(path, runs=self.latency_runs, threads=self.threads)


def rung_from(name: str, m: Measured, max_drop: float | None, **extra: Any) -> Rung:
    c = m.config
    status = "measured" if max_drop is None else ("within" if m.drop <= max_drop else "over")
    return Rung(name, status, c.quantize, c.calib_samples if not c.qat_epochs else None,
                c.calibration_method if not c.qat_epochs else None, list(c.float_layers), c.qat_epochs or None,
                round(m.accuracy, 6), round(m.drop, 6), m.size_bytes, **extra)


def float_layer_search(search: Search, base: Config, stats: list[LayerStat], graph, max_drop: float,
                       progress) -> tuple[Measured | None, list[dict[str, Any]], str | None]:
    """Greedy float-layer search from ``base``; returns (the minimal set within the budget, or the most accurate
    set tried; the steps; a note when the budget was not reached)."""
    ops, unit_of, names = graph
    readers = consumers(ops, unit_of)
    ranking = list(dict.fromkeys(s.layer for s in worst_first(stats) if s.can_keep_float and s.layer in names))
    if not ranking:
        return None, [], "no quantized op maps to a Keras layer that can be kept in float"
    order = {u: i for i, u in enumerate(dict.fromkeys(unit_of.values()))}  # model order

    def layers_of(units: list[str]) -> tuple[str, ...]:
        return tuple(name for u in sorted(units, key=lambda u: order.get(u, 0)) for name in names[u])

    steps: list[dict[str, Any]] = []
    kept: list[str] = []
    best: Measured | None = None
    hit: Measured | None = None
    for i, unit in enumerate(ranking):
        if unit in kept:
            continue
        added = [unit] + [r for r in readers.get(unit, []) if r not in kept and r in names]
        kept.extend(added)
        progress("doctor: layers kept in float", i + 1, len(ranking))
        m = search.measure(replace(base, float_layers=layers_of(kept)))
        steps.append({"action": "add", "units": added, "float_layers": list(m.config.float_layers),
                      "accuracy": round(m.accuracy, 6), "drop": round(m.drop, 6)})
        if best is None or m.accuracy > best.accuracy:
            best = m
        if m.drop <= max_drop:
            hit = m
            break
    if hit is None:
        return best, steps, f"kept {len(kept)} units in float without reaching the budget"
    # prune back: drop every unit the budget does not need (least bad first)
    for unit in sorted(kept, key=lambda u: -ranking.index(u) if u in ranking else 0):
        if len(kept) == 1:
            break
        trial = [u for u in kept if u != unit]
        m = search.measure(replace(base, float_layers=layers_of(trial)))
        ok = m.drop <= max_drop
        steps.append({"action": "drop" if ok else "keep", "units": [unit], "float_layers": list(m.config.float_layers),
                      "accuracy": round(m.accuracy, 6), "drop": round(m.drop, 6)})
        if ok:
            kept, hit = trial, m
    return hit, steps, None
