"""Per-layer quantization error: one :class:`LayerStat` per quantized op, mapped back to its Keras layer.

The error is the error the op ADDS: its int8 output against the same op computed in float on the same (already
quantized) input (LiteRT's NumericVerify ops; onnxruntime's values before and after the tensor's QDQ pair).

- ``sqnr_db``: ``10 log10(sum f^2 / sum (f - q)^2)`` of that output (capped at 200 = exact). Below ~20 dB an op
  loses more than a tenth of its signal.
- ``channel_sqnr_db``: the median over channels of each channel's own SQNR (feature maps only: for a (batch,
  features) tensor such as class scores there are no channels to compare). An outlier channel hides in the
  tensor's SQNR (its energy dominates) but not here: the quiet channels lose their signal, and the next layer
  scales them back up. The ranking (worst first) uses the lower of the two.
- ``rmse_scale``: RMSE of the error in quantization steps. Pure rounding gives 1/sqrt(12) = 0.29; much more means
  clipping or a coarse grid (LiteRT's debugger guide uses the same measure).
- ``range_min``/``range_max``: the int8 range calibration gave the tensor (``scale * (q - zero_point)``).
- ``bulk_use``: the share of that range the central 99.8 % of values (0.1-99.9 percentile) span. A small share
  means outliers set the range and the bulk of the values sits on a few levels.
- ``clipped``: share of values outside the range (calibration saw a smaller range than the eval data).
- ``channel_ratio``: the loudest channel's max |value| over the median channel's: an outlier channel shows as a
  ratio of 10 and more.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

import numpy as np

from .._jsonable import JsonMixin
from ..verification import SQNR_CAP_DB, sqnr
#: the percentiles that delimit "the bulk of the values"
BULK = (0.1, 99.9)


@dataclass
class LayerStat(JsonMixin):
    """The quantization error one op adds, and why (see the module docstring)."""

    layer: str
    op: str
    tensor: str
    layers: list[str] = field(default_factory=list)
    sqnr_db: float = SQNR_CAP_DB
    channel_sqnr_db: float | None = None
    rmse_scale: float = 0.0
    range_min: float = 0.0
    range_max: float = 0.0
    bulk_use: float | None = None
    clipped: float = 0.0
    channel_ratio: float | None = None
    weight_sqnr_db: float | None = None
    can_keep_float: bool = False

    #: what the ranking sorts by: the lower of the tensor's and the median channel's SQNR (set by :meth:`finish`)
    score_db: float | None = None
    #: short reasons this op is a problem, empty when it is not (set by :meth:`finish`)
    findings: list[str] = field(default_factory=list)

    def finish(self) -> "LayerStat":
        """Fill ``score_db`` and ``findings`` from the measured numbers."""
        ch = self.channel_sqnr_db
        self.score_db = min(self.sqnr_db, ch if ch is not None else SQNR_CAP_DB)
        out = []
        if self.channel_ratio is not None and self.channel_ratio >= 10 and ch is not None and ch < self.sqnr_db - 10:
            out.append(f"outlier channel: {self.channel_ratio:.0f}x the median channel's range, the median channel "
                       f"keeps {ch:.1f} dB")
        if self.sqnr_db < 20:
            out.append(f"adds noise at {self.sqnr_db:.1f} dB")
        if self.rmse_scale > 0.6:
            out.append(f"error {self.rmse_scale:.1f} steps (rounding alone: 0.29)")
        if self.bulk_use is not None and self.bulk_use < 0.1:
            out.append(f"99.8 % of values use {100 * self.bulk_use:.1f} % of the range")
        if self.clipped > 1e-3:
            out.append(f"{100 * self.clipped:.2f} % clipped")
        if self.weight_sqnr_db is not None and self.weight_sqnr_db < 25:
            out.append(f"weights at {self.weight_sqnr_db:.0f} dB")
        self.findings = out
        return self


def worst_first(stats: Iterable[LayerStat]) -> list[LayerStat]:
    """Lowest SQNR (tensor or median channel) first; ties: larger RMSE in quantization steps first."""
    return sorted((s.finish() for s in stats), key=lambda s: (s.score_db, -s.rmse_scale))


def quant_range(scale: float, zero_point: int, bits: int = 8) -> tuple[float, float]:
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return (lo - zero_point) * scale, (hi - zero_point) * scale


def _channels(values: np.ndarray) -> np.ndarray:
    v = np.asarray(values, np.float64)
    return v.reshape(-1, v.shape[-1]) if v.ndim >= 2 else v.reshape(-1, 1)


def channel_sums(f: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (last axis) signal and noise energy."""
    fc, qc = _channels(f), _channels(q)
    return np.sum(fc * fc, axis=0), np.sum((fc - qc) ** 2, axis=0)


def median_channel_sqnr(signal: np.ndarray, noise: np.ndarray) -> float:
    """Median over the channels that carry signal of each channel's SQNR; NaN for fewer than 2 such channels."""
    live = signal > 0
    if int(live.sum()) < 2:
        return float("nan")
    return float(np.median([sqnr(float(s), float(n)) for s, n in zip(signal[live], noise[live])]))


def channel_ratio(values: np.ndarray) -> float:
    """Loudest channel's max |value| over the median channel's (last axis = channels); NaN when undefined."""
    v = np.abs(np.asarray(values, np.float32))
    if v.ndim < 2 or v.shape[-1] < 4:
        return float("nan")
    per = v.reshape(-1, v.shape[-1]).max(axis=0)
    med = float(np.median(per))
    return float(per.max() / med) if med > 0 else float("nan")


class TensorAccumulator:
    """Running sums for one quantized tensor over many samples (float values ``f``, dequantized ``q``)."""

    def __init__(self, scale: float, zero_point: int):
        self.scale, self.zero_point = float(scale), int(zero_point)
        self.lo, self.hi = quant_range(self.scale, self.zero_point)
        self.n = 0
        self.sig = self.noise = 0.0
        self.clip = 0
        self.p_lo: list[float] = []
        self.p_hi: list[float] = []
        self.ratios: list[float] = []
        self.ch_sig: np.ndarray | None = None
        self.ch_noise: np.ndarray | None = None

    def add(self, f: np.ndarray, q: np.ndarray, *, channels: bool = True) -> None:
        """One sample: float values ``f`` and dequantized ``q``, channels on the last axis (``channels=False``:
        a (batch, features) tensor such as class scores, where a per-channel view means nothing)."""
        f = np.asarray(f, np.float64)
        q = np.asarray(q, np.float64)
        self.n += f.size
        self.sig += float(np.sum(f * f))
        self.noise += float(np.sum((f - q) ** 2))
        half = self.scale / 2
        self.clip += int(np.sum((f < self.lo - half) | (f > self.hi + half)))
        lo, hi = np.percentile(f, BULK)
        self.p_lo.append(float(lo))
        self.p_hi.append(float(hi))
        if not channels:
            return
        r = channel_ratio(f)
        if math.isfinite(r):
            self.ratios.append(r)
        cs, cn = channel_sums(f, q)
        self.ch_sig = cs if self.ch_sig is None else self.ch_sig + cs
        self.ch_noise = cn if self.ch_noise is None else self.ch_noise + cn

    def stat(self, layer: str, op: str, tensor: str, layers: Sequence[str]) -> LayerStat:
        width = self.hi - self.lo
        bulk = (float(np.mean(self.p_hi)) - float(np.mean(self.p_lo))) / width if width > 0 and self.p_lo else None
        ch = median_channel_sqnr(self.ch_sig, self.ch_noise) if self.ch_sig is not None else float("nan")
        return LayerStat(layer, op, tensor, list(layers), sqnr(self.sig, self.noise),
                         ch if math.isfinite(ch) else None,
                         math.sqrt(self.noise / max(self.n, 1)) / self.scale if self.scale > 0 else 0.0,
                         self.lo, self.hi, bulk, self.clip / max(self.n, 1),
                         float(np.mean(self.ratios)) if self.ratios else None)


def primary_layer(layers: Sequence[str], kmodel) -> str:
    """The layer an op is named after: the one with a kernel among the fused layers, else the first."""
    for name in layers:
        try:
            layer = kmodel.get_layer(name)
        except ValueError:
            continue
        if any("kernel" in w.name for w in layer.weights):
            return name
    return layers[0]


@dataclass
class Op:
    """One op of a converted graph: its tensors and the Keras layers it comes from."""

    name: str
    inputs: list[str]
    outputs: list[str]
    layers: list[str]


def consumers(ops: Sequence[Op], unit_of: Mapping[str, str], *, depth: int = 3) -> dict[str, list[str]]:
    """``{unit: [units that read its output]}``; ops that belong to no unit (reshapes, pads the converter kept
    apart) are looked through, ``depth`` ops deep. ``unit_of`` maps an op name to its unit (a Keras layer name)."""
    readers: dict[str, list[Op]] = {}
    for op in ops:
        for t in op.inputs:
            readers.setdefault(t, []).append(op)
    out: dict[str, list[str]] = {}
    for op in ops:
        unit = unit_of.get(op.name)
        if unit is None:
            continue
        found = out.setdefault(unit, [])
        frontier, seen = list(op.outputs), set()
        for _ in range(depth):
            nxt = []
            for t in frontier:
                for r in readers.get(t, []):
                    if r.name in seen:
                        continue
                    seen.add(r.name)
                    u = unit_of.get(r.name)
                    if u is None or u == unit:
                        nxt.extend(r.outputs)
                    elif u != unit and u not in found:
                        found.append(u)
            frontier = nxt
    return out
