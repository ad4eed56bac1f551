"""On-device parity: the device's outputs on the verification inputs vs the host reference (Keras) and the host
runtime, output by output (matched by tensor name), judged by the export's thresholds for the precision."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .._jsonable import JsonMixin
from .._verify_data import VerifyData
from ..exporters.verify import compare, sqnr_db


@dataclass
class OutputParity(JsonMixin):
    """One output: device vs Keras reference (and vs the host runtime's output, when recorded)."""

    name: str  # the signature key (the Keras output name) where the artifact has one, else the tensor name
    max_abs_err: float
    mean_abs_err: float
    sqnr_db: float
    top1_agreement: float | None = None
    host_max_abs_err: float | None = None
    host_sqnr_db: float | None = None
    host_top1_agreement: float | None = None


@dataclass
class Parity(JsonMixin):
    """The device computes the same thing as Keras, within the export's thresholds for ``precision``?"""

    status: str  # "passed" | "failed" | "inconclusive" (constant reference outputs) | "not_checked"
    samples: int = 0
    precision: str | None = None
    thresholds: dict[str, float] = field(default_factory=dict)
    outputs: list[OutputParity] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    reason: str | None = None
    source: str | None = None

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def not_checked(reason: str) -> Parity:
    return Parity("not_checked", reason=reason)


def _top1(ref: np.ndarray, out: np.ndarray) -> float | None:
    if ref.ndim == 2 and ref.shape[1] > 1:
        return float(np.mean(ref.argmax(1) == out.argmax(1)))
    return None


def evaluate(vd: VerifyData, names: list[str], outputs: list[np.ndarray], *, precision: str,
             output_lsb: float | None = None) -> Parity:
    """Compare ``outputs`` (device, named ``names``) with ``vd``'s reference, per output and overall."""

    by_name = dict(zip(names, outputs))
    missing = [n for n in vd.output_names if n not in by_name]
    if missing:
        if len(names) != len(vd.output_names):
            return Parity("failed", vd.samples, precision, failures=[
                f"the device model has outputs {names}, the verification data {vd.output_names}"])
        by_name = dict(zip(vd.output_names, outputs))  # renamed by the device runtime: same order, same file
    outs = [np.asarray(by_name[n], np.float32) for n in vd.output_names]
    bad = [n for n, o, r in zip(vd.output_names, outs, vd.reference) if o.shape != r.shape]
    if bad:
        return Parity("failed", vd.samples, precision, failures=[f"output {n!r}: device shape differs from the "
                                                                 "reference" for n in bad])
    per, labels = [], vd.output_labels
    for k, (n, o, r) in enumerate(zip(labels, outs, vd.reference)):
        err = np.abs(o.astype(np.float64) - r.astype(np.float64))
        p = OutputParity(n, float(err.max()) if err.size else 0.0, float(err.mean()) if err.size else 0.0,
                         sqnr_db(r, o), _top1(r, o))
        if vd.host is not None:
            h = vd.host[k]
            herr = np.abs(o.astype(np.float64) - h.astype(np.float64))
            p.host_max_abs_err, p.host_sqnr_db, p.host_top1_agreement = float(herr.max()), sqnr_db(h, o), _top1(h, o)
        if not (math.isfinite(p.max_abs_err) and np.isfinite(o).all()):
            p.max_abs_err = math.inf
        per.append(p)
    v = compare(list(vd.reference), outs, precision=precision, output_lsb=output_lsb, runtime="device",
                source=str(vd.path), ref_names=labels, art_keys=labels)
    # verification's three outcomes: a constant reference (untrained model) is inconclusive, not a parity failure
    return Parity(v.status, vd.samples, precision, dict(v.thresholds), per,
                  list(v.failures), reason=v.note, source=str(vd.path))

