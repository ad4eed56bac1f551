"""A sweep's result: one :class:`SweepRow` per point x device, the fronts, picks and fits, as JSON and CSV.

A *point* is one trained model (family + zoo options) exported at one precision in one format; its id says what it
is (``mobilenet_v1_0.50_48_1ch_10cls/int8/tflite``). Rows keep their failures: ``status`` is ``ok`` or what went
wrong (``train_failed``, ``export_failed``, ``verification_failed``, or the device's ``connect_error``,
``runtime_missing``, ``timeout`` ..., and ``parity_failed`` when the device's outputs differ from Keras'), ``pending``
while the sweep still runs. Only ``ok`` rows enter the fronts, latency models and picks, and of those only the
rows whose accuracy is significantly above chance (``above_chance``, :mod:`edgekit._chance`) enter the fronts,
accuracy fits and picks: a model that learned nothing is measured, shown and flagged, never chosen.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field, fields
from typing import Any

from .._jsonable import JsonMixin
from .analysis import AccuracyFit, ChanceSummary, LatencyFit, Pick

#: results.json's key set (also sweep.json and the store's records). 2: peak_memory_bytes (was peak_memory_mb, MiB),
#: precisions named float32/float16 (were none/fp16 in ``quantize``); a folder of /1 is resumed (store.READS)
SCHEMA = "edgekit.sweep/2"

#: statuses a point can end with before any device ran it
POINT_FAILURES = ("train_failed", "export_failed", "verification_failed")


@dataclass
class SweepRow(JsonMixin):
    """One point on one device. Accuracy is top-1 of the ARTIFACT in its runtime on the labelled test data."""

    point: str
    model: str                       # zoo family, e.g. mobilenet_v1
    name: str                        # canonical model name, e.g. mobilenet_v1_0.50_48_1ch_10cls
    options: dict[str, Any]          # this point's grid values (e.g. {"alpha": 0.5, "resolution": 48})
    precision: str                   # float32, float16, dynamic, int8, int16x8
    format: str                      # tflite, onnx
    device: str
    emulated: bool = False           # latencies measured under emulation (e.g. qemu): not the real device's
    status: str = "pending"
    error: str | None = None
    hint: str | None = None
    resolution: int | None = None
    mult_adds: int | None = None
    params: int | None = None
    size_bytes: int | None = None
    accuracy: float | None = None    # the artifact, in its runtime
    keras_accuracy: float | None = None
    test_samples: int | None = None
    chance: float | None = None          # chance accuracy of the test labels scored (their largest class share)
    chance_p_value: float | None = None  # one-sided exact binomial test of accuracy against chance
    above_chance: bool | None = None     # False: not significantly above chance, kept out of fronts, fits and picks
    min_accuracy: float | None = None    # the lowest accuracy significantly above chance on these test samples
    training: str | None = None      # how the model was trained (e.g. "fine-tuned 1 epoch at 48 px from ...")
    note: str | None = None          # what else to know about the artifact (e.g. an inconclusive verification)
    p50_ms: float | None = None
    p90_ms: float | None = None
    mean_ms: float | None = None
    std_ms: float | None = None
    peak_memory_bytes: int | None = None
    runtime: str | None = None
    machine: str | None = None
    parity: str | None = None        # device parity (device_parity): passed, failed, inconclusive; None: not checked
    artifact: str | None = None      # path relative to the sweep's --out
    node: str | None = None          # the machine (local) or Ray node that trained, exported and measured the row
    reused: bool = False             # finished in an earlier run of the same sweep, not recomputed
    pareto: bool = False
    pick: bool = False
    latency_predicted_ms: float | None = None
    latency_ratio: float | None = None
    latency_outlier: bool = False


#: CSV columns after the grid keys (``options`` is flattened to one column per grid key)
CSV_FIELDS = [f.name for f in fields(SweepRow) if f.name != "options"]


def to_csv(rows: list[SweepRow]) -> str:
    """CSV text: one line per row, a column per grid key (``model`` and ``resolution`` are row fields already),
    then every SweepRow field."""
    keys: list[str] = []
    for r in rows:
        for k in r.options:
            if k not in keys and k not in CSV_FIELDS:
                keys.append(k)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["point", *keys, *[f for f in CSV_FIELDS if f != "point"]])
    for r in rows:
        d = r.to_dict()
        w.writerow([r.point, *[r.options.get(k, "") for k in keys],
                    *["" if d[f] is None else d[f] for f in CSV_FIELDS if f != "point"]])
    return buf.getvalue()


@dataclass
class SweepSummary(JsonMixin):
    """Counts and times of one run of the sweep."""

    points: int = 0                  # model x precision x format
    devices: int = 0
    rows: int = 0
    ok: int = 0
    failed: int = 0
    pending: int = 0
    rows_reused: int = 0             # finished earlier (same settings), not recomputed
    rows_computed: int = 0
    trainings: int = 0               # trained models the sweep needs
    trainings_reused: int = 0
    exports_reused: int = 0          # (model, precision) export calls reused
    exports_computed: int = 0
    seconds: float = 0.0
    train_seconds: float = 0.0
    export_seconds: float = 0.0
    bench_seconds: float = 0.0
    interrupted: bool = False
    training_sharing: str = ""       # how training was shared (precisions, resolutions)


@dataclass
class SweepResult(JsonMixin):
    """Everything a sweep measured and decided. ``rows`` has one entry per point x device."""

    out: str
    metric: str
    budget_ms: float | None
    rows: list[SweepRow]
    fronts: dict[str, list[str]] = field(default_factory=dict)       # device -> point ids, fastest first
    picks: list[Pick] = field(default_factory=list)
    accuracy_fits: list[AccuracyFit] = field(default_factory=list)
    latency_fits: list[LatencyFit] = field(default_factory=list)
    summary: SweepSummary = field(default_factory=SweepSummary)
    plots: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    spec: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    #: the test labels' chance accuracy and how many points are above it (analysis.ChanceSummary)
    chance: ChanceSummary | None = None
    schema: str = SCHEMA

    @property
    def budget_met(self) -> bool | None:
        """None without a budget; else True when every device has a point within it."""
        if self.budget_ms is None:
            return None
        return bool(self.picks) and all(p.fits for p in self.picks)

    def rows_for(self, device: str) -> list[SweepRow]:
        return [r for r in self.rows if r.device == device]
