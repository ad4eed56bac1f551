"""TFLite's ``benchmark_model`` tool (Android has no Python): its command line and a parser for its text output.

The output lines we read (``INFO:``/logcat prefixes are ignored; times in microseconds, memory "MB" = MiB)::

    count=50 first=249042 curr=250889 min=247067 max=254474 avg=249684 std=1442 [p5=.. median=.. p95=..]
    Inference timings in us: Init: 16242, First inference: 360262, Warmup (avg): 304586, Inference (avg): 249684
    Memory footprint delta from the start of the tool (MB): init=4.2 overall=46.1   (older: "Peak memory ...")
    Overall peak memory footprint (MB) via periodic monitoring: 52.3        (--report_peak_memory_footprint)

The first ``count=`` line is the warmup phase, the last one the measured runs. Percentiles that the tool does
not print stay ``None``: they are never invented.
"""
from __future__ import annotations

import re
from typing import Any

from ..errors import RemoteCommandError

_NUM = r"([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"
_STATS = re.compile(r"count=(\d+)(?P<rest>(?:\s+\w+=" + _NUM[1:-1] + r")*)")
_KV = re.compile(r"(\w+)=" + _NUM)
_TIMINGS = re.compile(r"Inference timings in us:\s*Init:\s*" + _NUM + r",\s*First inference:\s*" + _NUM
                      + r",\s*Warmup \(avg\):\s*" + _NUM + r",\s*Inference \(avg\):\s*" + _NUM)
_MEM_DELTA = re.compile(r"(?:Memory footprint delta from the start of the tool|Peak memory footprint) \(MB\):\s*"
                        r"init=" + _NUM + r"\s+overall=" + _NUM)
_MEM_PEAK = re.compile(r"Overall peak memory footprint \(MB\) via periodic monitoring:\s*" + _NUM)
_VERSION = re.compile(r"(?:TensorFlow Lite|LiteRT|TFLite)[^\n]*?version[:\s]+([0-9][\w.\-]*)", re.I)
_FAILURE = re.compile(r"(?im)^(?:ERROR|E tflite)\W.*$|^.*(?:Failed to|Benchmarking failed|Could not|Invalid)\b.*$")


def command(binary: str, model: str, *, threads: int | None, runs: int, warmup: int, max_seconds: float,
            delegate: str | None = None, op_profiling: bool = False) -> list[str]:
    """The benchmark_model argv that measures like the runner: exactly ``warmup`` + ``runs`` invocations."""
    argv = [binary, f"--graph={model}", f"--num_runs={runs}", f"--warmup_runs={warmup}", "--min_secs=0",
            "--warmup_min_secs=0", f"--max_secs={max_seconds:g}", "--report_peak_memory_footprint=true"]
    if threads:
        argv.append(f"--num_threads={threads}")
    if delegate in (None, "auto", "xnnpack"):
        argv.append("--use_xnnpack=true")
    elif delegate == "none":
        argv.append("--use_xnnpack=false")
    else:
        argv += ["--use_xnnpack=false", f"--external_delegate_path={delegate}"]
    if op_profiling:
        argv.append("--enable_op_profiling=true")
    return argv


_OP_SECTION = re.compile(r"Operator-wise Profiling Info for Regular Benchmark Runs:\s*\n=+ Run Order =+\s*\n(.*?)"
                         r"(?:=+ Top by|\Z)", re.S)
# one "Run Order" row; older tools print a [start] column too; node types may contain spaces (XNNPACK's own
# per-op rows such as "Convolution (NHWC, QC8) IGEMM"); names are "[layer/op]:N" or "Delegate/...:N"
_OP_ROW = re.compile(r"^\s*(?:INFO:\s*)?(?P<type>\S.*?)\s+(?:" + _NUM + r"\s+)?(?P<first>" + _NUM[1:-1] + r")\s+"
                     r"(?P<avg>" + _NUM[1:-1] + r")\s+(?P<pct>" + _NUM[1:-1] + r")%\s+" + _NUM + r"%\s+" + _NUM
                     + r"\s+(?P<times>\d+)\s+(?P<name>\S.*?)\s*$")


def parse_op_profile(text: str) -> dict[str, Any] | None:
    """``--enable_op_profiling`` output (the "Run Order" table of the regular runs) -> per-op times, or None."""
    m = _OP_SECTION.search(text)
    if not m:
        return None
    ops = []
    for line in m.group(1).splitlines():
        r = _OP_ROW.match(line)
        if r and "[node type]" not in line:
            name = re.sub(r":\d+$", "", r.group("name")).strip("[]")
            ops.append({"name": name, "op": r.group("type"), "provider": None, "calls": int(r.group("times")),
                        "avg_ms": float(r.group("avg"))})
    if not ops:
        return None
    ops.sort(key=lambda o: -o["avg_ms"])
    return {"available": True, "runtime": "benchmark_model", "source": "benchmark_model --enable_op_profiling",
            "ops": ops}


def _mib_to_bytes(text: str) -> int:
    """The tool's memory "(MB)" are KiB / 1024 (MiB); edgekit records bytes."""
    return int(round(float(text) * (1 << 20)))


def _stats_lines(text: str) -> list[dict[str, float]]:
    found = []
    for line in text.splitlines():
        m = _STATS.search(line)
        if m:
            d = {"count": float(m.group(1))}
            d.update({k: float(v) for k, v in _KV.findall(m.group("rest"))})
            found.append(d)
    return found


def parse(text: str) -> dict[str, Any]:
    """benchmark_model output -> the runner's JSON schema (``tool: benchmark_model``); raises on failed runs."""
    timings = _TIMINGS.search(text)
    stats = _stats_lines(text)
    if not timings or not stats:
        fail = [re.sub(r"^(ERROR|E tflite)\W+", "", f.strip()) for f in _FAILURE.findall(text)]
        detail = fail[0] if fail else (text.strip().splitlines() or ["no output"])[-1]
        raise RemoteCommandError(f"benchmark_model did not report timings: {detail}",
                                 hint="run it by hand on the device with the same --graph to see the full log")
    init_us, first_us, warm_us, avg_us = (float(g) for g in timings.groups())
    runs = stats[-1]
    warm = stats[0] if len(stats) > 1 else None
    us = 1e-3

    def ms(d: dict[str, float], key: str) -> float | None:
        return d[key] * us if key in d else None

    latency = {"count": int(runs["count"]), "mean": ms(runs, "avg") or avg_us * us, "std": ms(runs, "std"),
               "min": ms(runs, "min"), "max": ms(runs, "max"), "p5": ms(runs, "p5"), "p50": ms(runs, "median"),
               "p90": None, "p95": ms(runs, "p95"), "p99": None}
    mem: dict[str, int | None] = {"peak_rss_bytes": None, "init_delta_bytes": None, "overall_delta_bytes": None}
    if m := _MEM_DELTA.search(text):
        mem["init_delta_bytes"], mem["overall_delta_bytes"] = _mib_to_bytes(m.group(1)), _mib_to_bytes(m.group(2))
    if m := _MEM_PEAK.search(text):
        mem["peak_rss_bytes"] = _mib_to_bytes(m.group(1))
    version = _VERSION.search(text)
    doc = {"schema": 2, "tool": "benchmark_model",
           "runtime": {"name": "benchmark_model", "version": version.group(1) if version else None},
           "init_ms": init_us * us, "first_inference_ms": first_us * us,
           "warmup": {"count": int(warm["count"]) if warm else None, "mean_ms": warm_us * us},
           "latency_ms": latency, "memory": mem}
    ops = parse_op_profile(text)
    if ops is not None:
        doc["op_profile"] = ops
    return doc
