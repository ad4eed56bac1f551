"""``compare``: is the difference between two builds (or two devices) real? Ratio of p50 times with a bootstrap
95% interval and a verdict in words.

Two artifacts on one device run interleaved in ONE runner process (A B, B A, A B, ... blocks of runs), so that
drift, heat and background load hit both alike. One artifact on two devices runs on each device in turn.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from .._jsonable import JsonMixin
from .._progress import Progress, no_progress
from ..errors import EdgekitError, InvalidArgument
from . import stats
from .bench import BenchResult, _prepare, bench, result
from .protocol import RUNNER, runner_doc
from .transports import create


@dataclass
class Comparison(JsonMixin):
    """A vs B: ``ratio`` = p50 time of A / p50 time of B (> 1: B is faster), its 95% interval and the verdict."""

    a: str
    b: str
    device: str
    kind: str  # "artifacts" (A and B on one device, interleaved) or "devices" (one artifact on A and B)
    a_p50_ms: float | None = None
    b_p50_ms: float | None = None
    ratio: float | None = None
    ci: list[float] | None = None
    verdict: str = ""
    runs: int | None = None
    rounds: int | None = None
    warnings: list[str] = field(default_factory=list)
    rows: list[BenchResult] = field(default_factory=list)


def _label(path: str) -> str:
    return Path(path).name


def _finish(c: Comparison, sa: list[float], sb: list[float]) -> Comparison:
    r = stats.ratio_ci(sa, sb)
    if r is None:
        raise InvalidArgument("too few runs to compare (need at least 3 per side)", hint="raise --runs")
    c.ratio, lo, hi = r
    c.ci = [lo, hi]
    c.verdict = stats.verdict(c.ratio, lo, hi, c.a, c.b)
    return c


def compare(a: str | Path, b: str | Path | None = None, *, device: str = "local", devices: list[str] | None = None,
            runs: int = 50, warmup: int = 5, rounds: int = 10, threads: int | None = None,
            max_seconds: float = 150.0, delegate: str | None = None, seed: int = 0, timeout: float | None = None,
            python: str | None = None, runtime: str | None = None, key_file: str | None = None,
            known_hosts: str | None = None, accept_new_host_key: bool = False,
            connect_timeout: float | None = None, progress: Progress = no_progress) -> Comparison:
    """Compare artifacts ``a`` and ``b`` on ``device`` (interleaved), or ``a`` on two ``devices``."""
    common = dict(threads=threads, runs=runs, warmup=warmup, max_seconds=max_seconds, delegate=delegate,
                  seed=seed, timeout=timeout, python=python, key_file=key_file, known_hosts=known_hosts,
                  accept_new_host_key=accept_new_host_key, connect_timeout=connect_timeout)
    if devices:
        if b is not None or len(devices) != 2:
            raise InvalidArgument("compare takes two artifacts on one --device, or one artifact on two --device",
                                  hint="e.g. edgekit compare a.tflite b.tflite -d rpi4, or compare a.tflite -d rpi4 "
                                       "-d rpi5")
        rows = []
        for d in devices:  # one device at a time: two 'devices' on one host must not share its CPUs
            (row,) = bench([a], [d], runtime=runtime, progress=progress, **common)
            rows.append(row)
        c = Comparison(devices[0], devices[1], " vs ".join(devices), "devices", rows=rows, runs=runs)
        for row in rows:
            if not row.ok:
                raise _row_error(row)
        c.a_p50_ms, c.b_p50_ms = rows[0].p50_ms, rows[1].p50_ms
        c.warnings = [f"{r.device}: {w}" for r in rows for w in r.warnings]
        return _finish(c, rows[0].samples_ms, rows[1].samples_ms)
    if b is None:
        raise InvalidArgument("compare needs a second artifact (or two --device for one artifact)",
                              hint="e.g. edgekit compare model_float32.tflite model_int8.tflite -d local")
    if rounds < 1:
        raise InvalidArgument(f"--rounds must be >= 1, got {rounds}", hint="e.g. --rounds 10")
    infos, specs, settings, options = _prepare([a, b], [device], input=None, benchmark_binary=None,
                                               runtime=runtime, verify=False, verify_data=None, profile_ops=False,
                                               **common)
    spec = specs[0]
    if not (spec.uses_runner or python):
        raise InvalidArgument(f"{spec.name} runs benchmark_model (no Python): interleaved runs need the runner",
                              hint="set python: in the profile for a board with Python")
    c = Comparison(_label(infos[0].path), _label(infos[1].path), spec.name, "artifacts", runs=runs)
    progress(spec.name, 0, 1)
    t = create(spec, options)
    try:
        t.connect()
        paths = [t.put(i.path, i.sha256) for i in infos]
        py = t.expand(python or spec.python or ("python3" if t.kind != "local" else sys.executable))
        argv = [py, t.put(RUNNER), paths[0], "--compare", paths[1], "--runs", str(runs), "--warmup", str(warmup),
                "--rounds", str(rounds), "--max-seconds", f"{max_seconds:g}", "--seed", str(seed)]
        for flag, value in (("--threads", threads or spec.threads), ("--delegate", delegate),
                            ("--runtime", runtime or spec.runtime)):
            if value:
                argv += [flag, str(value)]
        doc = runner_doc(t.run(argv, timeout=settings.timeout), spec.name)
    except BaseException:
        t.abort()
        raise
    finally:
        t.close()
    progress(spec.name, 1, 1)
    c.rounds = doc.get("rounds")
    for info, m in zip(infos, doc["models"]):
        sub = {**doc, "latency_ms": m["latency_ms"], "samples_ms": m["samples_ms"], "init_ms": m["init_ms"]}
        sub.pop("models", None)
        c.rows.append(result(info, spec, sub))
    c.a_p50_ms, c.b_p50_ms = c.rows[0].p50_ms, c.rows[1].p50_ms
    c.warnings = list(c.rows[0].warnings)
    return _finish(c, doc["models"][0]["samples_ms"], doc["models"][1]["samples_ms"])


def _row_error(row: BenchResult) -> EdgekitError:
    from ..errors import DeviceError

    return DeviceError(f"{row.device}: {row.status}: {row.error}", hint=row.hint)

