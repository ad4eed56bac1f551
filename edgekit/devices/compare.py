"""``compare``: is the difference between two builds (or two devices) real? A time ratio with a 95% interval and a
verdict in words.

Two artifacts on one device run interleaved in ONE runner process (A B, B A, A B, ... blocks of runs), so that
drift, heat and background load hit both alike; the ratio and its interval come from the paired rounds (per-round
ratios of block medians, :func:`stats.paired_ratio_ci`), so load shared by a round cancels and load that hits one
block widens the interval rather than faking a difference. One artifact on two devices runs on each device in turn
(independent series: :func:`stats.ratio_ci`).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from .._jsonable import JsonMixin
from .._progress import Progress, no_progress
from .._spec import takes_spec
from ..errors import DeviceError, EdgekitError, InvalidArgument, ModelLoadError
from ..specs.bench import BenchSpec, CompareSpec
from . import stats
from .bench import BenchResult, _prepare, bench, check_threads, result
from .protocol import RUNNER, name_every_custom_op, runner_doc
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
    #: the key set; 2: its rows are edgekit.bench/2 rows (sizes and memory in bytes); no schema key: 1
    schema: str = "edgekit.compare/2"


def _label(path: str) -> str:
    return Path(path).name


def _finish(c: Comparison, sa: list[float], sb: list[float], blocks: tuple[list, list] | None = None) -> Comparison:
    if blocks is not None:
        r = stats.paired_ratio_ci(*blocks)
        if r is None:
            raise InvalidArgument("too few rounds to compare (the interval needs at least 3 paired rounds with runs)",
                                  hint="raise --rounds (and --runs, at least one run per round)")
    else:
        r = stats.ratio_ci(sa, sb)
    if r is None:
        raise InvalidArgument("too few runs to compare (need at least 3 per side)", hint="raise --runs")
    c.ratio, lo, hi = r
    c.ci = [lo, hi]
    c.verdict = stats.verdict(c.ratio, lo, hi, c.a, c.b)
    return c


#: the CompareSpec fields that are BenchSpec fields: how each side is measured
_BENCH_KEYS = [k for k in CompareSpec.keys() if k in BenchSpec.keys() and k not in ("artifacts", "devices")]


@takes_spec(CompareSpec, positional=("artifacts", "devices"))
def compare(spec: CompareSpec, *, progress: Progress = no_progress) -> Comparison:
    """Two ``artifacts`` on one of ``devices`` (run interleaved in one process), or one artifact on two ``devices``
    (one after the other). Arguments: :class:`~edgekit.specs.CompareSpec` (= ``edgekit compare`` options), or a
    ready ``spec=``. ``benchmark_binary`` is refused: interleaved runs need the Python runner."""
    arts, devs = list(spec.artifacts), list(spec.devices)
    runs, warmup, rounds, threads, max_seconds = spec.runs, spec.warmup, spec.rounds, spec.threads, spec.max_seconds
    delegate, runtime, seed, python = spec.delegate, spec.runtime, spec.seed, spec.python
    if spec.benchmark_binary:
        raise InvalidArgument("compare runs the Python runner; benchmark_binary does not apply",
                              hint="drop --benchmark-binary (use a device with Python)")
    if not ((len(arts) == 2 and len(devs) == 1) or (len(arts) == 1 and len(devs) == 2)):
        raise InvalidArgument(f"compare takes two artifacts and one device, or one artifact and two devices (got "
                              f"{len(arts)} and {len(devs)})",
                              hint="e.g. edgekit compare a.tflite b.tflite -d local, or compare a.tflite -d rpi4 -d rpi5")
    check_threads(threads)
    common = {k: getattr(spec, k) for k in _BENCH_KEYS}
    if len(devs) == 2:
        a = arts[0]
        rows = []
        for d in devs:  # one device at a time: two 'devices' on one host must not share its CPUs
            (row,) = bench([a], [d], progress=progress, **common)
            rows.append(row)
        c = Comparison(str(devs[0]), str(devs[1]), " vs ".join(map(str, devs)), "devices", rows=rows, runs=runs)
        for row in rows:
            if not row.ok:
                raise _row_error(row)
        c.a_p50_ms, c.b_p50_ms = rows[0].p50_ms, rows[1].p50_ms
        c.warnings = [f"{r.device}: {w}" for r in rows for w in r.warnings]
        return _finish(c, rows[0].samples_ms, rows[1].samples_ms)
    (a, b), device = arts, devs[0]
    if rounds < 3:
        raise InvalidArgument(f"--rounds must be >= 3, got {rounds} (the interval comes from the paired rounds)",
                              hint="e.g. --rounds 10")
    infos, specs, settings, options = _prepare(BenchSpec(artifacts=(a, b), devices=(device,), **common))
    if any(i.package for i in infos):
        raise InvalidArgument("compare times two artifacts interleaved; update packages are restored by bench",
                              hint="edgekit unpack PACKAGE --out FILE, then compare the restored file")
    dev = specs[0]
    if not (dev.uses_runner or python):
        raise InvalidArgument(f"{dev.name} runs benchmark_model (no Python): interleaved runs need the runner",
                              hint="set python: in the profile for a board with Python")
    c = Comparison(_label(infos[0].path), _label(infos[1].path), dev.name, "artifacts", runs=runs)
    progress(dev.name, 0, 1)
    t = create(dev, options)
    try:
        t.connect()
        paths = [t.put(i.path, i.sha256) for i in infos]
        py = t.expand(python or dev.python or ("python3" if t.kind != "local" else sys.executable))
        argv = [py, t.put(RUNNER), paths[0], "--compare", paths[1], "--runs", str(runs), "--warmup", str(warmup),
                "--rounds", str(rounds), "--max-seconds", f"{max_seconds:g}", "--seed", str(seed)]
        for flag, value in (("--threads", threads or dev.threads), ("--delegate", delegate),
                            ("--runtime", runtime or dev.runtime)):
            if value:
                argv += [flag, str(value)]
        try:
            doc = runner_doc(t.run(argv, timeout=settings.timeout), dev.name)
        except ModelLoadError as exc:  # name every custom op the file has, not only the first the runtime met
            info = next((i for i in infos if f" {Path(i.path).name}:" in exc.message), None)
            raise (name_every_custom_op(exc, info) if info else exc) from None
    except BaseException:
        t.abort()
        raise
    finally:
        t.close()
    progress(dev.name, 1, 1)
    c.rounds = doc.get("rounds")
    for info, m in zip(infos, doc["models"]):
        sub = {**doc, "latency_ms": m["latency_ms"], "samples_ms": m["samples_ms"], "init_ms": m["init_ms"],
               "block_runs": m.get("block_runs"),
               "runtime": m["runtime"], "config": {**doc["config"], "delegate": m["delegate"]}}
        sub.pop("models", None)
        c.rows.append(result(info, dev, sub))
    c.a_p50_ms, c.b_p50_ms = c.rows[0].p50_ms, c.rows[1].p50_ms
    c.warnings = list(c.rows[0].warnings)
    ma, mb = doc["models"]
    blocks = (ma["block_p50_ms"], mb["block_p50_ms"]) if "block_p50_ms" in ma and "block_p50_ms" in mb else None
    return _finish(c, ma["samples_ms"], mb["samples_ms"], blocks)


def _row_error(row: BenchResult) -> EdgekitError:
    return DeviceError(f"{row.device}: {row.status}: {row.error}", hint=row.hint)

