"""On-device parity: the device's outputs on the verification inputs vs the host reference (Keras), output by output
(matched by tensor name), judged by the same rule and with the same result type as export's verification
(:func:`edgekit.verification.verify_outputs`: per-precision tolerances, top-1 over confident samples, the paired
accuracy interval when the verification data has labels), plus the device-vs-host-runtime numbers per output."""
from __future__ import annotations

import numpy as np

from .._verify_data import VerifyData
from ..verification import FAILED, Verification, not_checked, verify_outputs

#: parity's result is the verification result (status passed | failed | inconclusive | not_checked)
Parity = Verification
__all__ = ["Parity", "evaluate", "not_checked"]


def evaluate(vd: VerifyData, names: list[str], outputs: list[np.ndarray], *, precision: str,
             output_lsb: float | list | None = None) -> Verification:
    """Compare ``outputs`` (device, named ``names``) with ``vd``'s reference, per output and overall."""
    by_name = dict(zip(names, outputs))
    missing = [n for n in vd.output_names if n not in by_name]
    if missing:
        if len(names) != len(vd.output_names):
            return Verification("device", vd.samples, str(vd.path), precision=precision, passed=False,
                                status=FAILED, failures=[f"the device model has outputs {names}, the verification "
                                                         f"data {vd.output_names}"])
        by_name = dict(zip(vd.output_names, outputs))  # renamed by the device runtime: same order, same file
    outs = [np.asarray(by_name[n], np.float32) for n in vd.output_names]
    bad = [n for n, o, r in zip(vd.output_names, outs, vd.reference) if o.shape != r.shape]
    if bad:
        return Verification("device", vd.samples, str(vd.path), precision=precision, passed=False, status=FAILED,
                            failures=[f"output {n!r}: device shape differs from the reference" for n in bad])
    labels = vd.output_labels
    return verify_outputs(list(vd.reference), outs, precision=precision, output_lsb=output_lsb, runtime="device",
                   source=str(vd.path), ref_names=labels, art_keys=labels, labels=vd.labels,
                   num_classes=vd.num_classes, classifier=vd.classifier, host=vd.host)
