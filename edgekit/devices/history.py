"""The benchmark history: one JSON document per result line (JSON Lines), appended atomically."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

from .._io import check_output_path, json_loads
from .._jsonable import to_jsonable
from ..errors import InvalidArgument
from .transports import sha256_file

#: the key set of a bench row (bench --json, --csv, this history). 2: sizes and memory in bytes (size_bytes,
#: peak_memory_bytes, memory_delta_bytes; were size_mb, peak_memory_mb, memory_delta_mb in MiB). Rows without a
#: schema are 1: :func:`read` maps their keys (:func:`upgrade`)
SCHEMA = "edgekit.bench/2"
#: schema 1 key (MiB) -> schema 2 key (bytes), in a row and in its raw runner document's "memory"
_MIB_KEYS = {"size_mb": "size_bytes", "peak_memory_mb": "peak_memory_bytes", "memory_delta_mb": "memory_delta_bytes"}
_RAW_MIB_KEYS = {"peak_rss_mb": "peak_rss_bytes", "start_rss_mb": "start_rss_bytes",
                 "init_delta_mb": "init_delta_bytes", "overall_delta_mb": "overall_delta_bytes"}


def _bytes_of(mib: Any) -> Any:
    return int(round(mib * (1 << 20))) if _number(mib) else mib


def upgrade(rec: Any) -> Any:
    """A row as :data:`SCHEMA` has it: a row recorded before the schema (edgekit.bench/1: sizes and memory in MiB,
    ``size_mb`` ...) gets the byte keys (``size_bytes`` ...) and ``upgraded_from``; other records as they are."""
    if not isinstance(rec, dict) or "schema" in rec or not any(k in rec for k in _MIB_KEYS):
        return rec
    rec = {(_MIB_KEYS.get(k, k)): (_bytes_of(v) if k in _MIB_KEYS else v) for k, v in rec.items()}
    mem = (rec.get("raw") or {}).get("memory") if isinstance(rec.get("raw"), dict) else None
    if isinstance(mem, dict):
        rec["raw"] = {**rec["raw"], "memory": {_RAW_MIB_KEYS.get(k, k): (_bytes_of(v) if k in _RAW_MIB_KEYS else v)
                                               for k, v in mem.items()}}
    rec["schema"], rec["upgraded_from"] = SCHEMA, "edgekit.bench/1"
    return rec


def default_path() -> Path:
    """``$EDGEKIT_BENCH_HISTORY``, else ``~/.cache/edgekit/bench_history.jsonl`` (``$XDG_CACHE_HOME`` honoured)."""
    env = os.environ.get("EDGEKIT_BENCH_HISTORY")
    if env:
        return Path(env).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "edgekit" / "bench_history.jsonl"


def append(path: str | os.PathLike, records: Iterable[Any]) -> Path:
    """Append records as JSON lines with ONE ``write`` on an ``O_APPEND`` fd under an exclusive lock.

    Concurrent writers never interleave inside a line, and a crash never leaves half a batch behind a newline; a
    torn last line (a full disk, a kill) is ended first, so the new records never glue onto it.
    """
    path = Path(path).expanduser()
    data = "".join(json.dumps(to_jsonable(r), sort_keys=True) + "\n" for r in records).encode()
    if not data:
        return path
    check_output_path(path, "--history")  # a link, a device, a FIFO (which would block): refused
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
                     | getattr(os, "O_NONBLOCK", 0), 0o644)
    except OSError as exc:
        raise InvalidArgument(f"cannot write the bench history {path}: {exc.strerror or exc}",
                              hint="choose another file with --history, or --no-history") from exc
    try:
        try:
            import fcntl
            fcntl.flock(fd, fcntl.LOCK_EX)
        except ImportError:  # pragma: no cover - Windows
            pass
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":  # a torn last line: end it, so this batch stays whole
            data = b"\n" + data
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        os.fsync(fd)
    finally:
        os.close(fd)
    return path


def _parse(line: bytes) -> Any:
    try:
        return json_loads(line.decode("utf-8"))
    except ValueError:  # UnicodeDecodeError is one
        return _NOT_JSON


_NOT_JSON = object()


def read(path: str | os.PathLike) -> list[dict]:
    """All records of a history file, each with :data:`SCHEMA`'s keys (rows of older versions mapped by
    :func:`upgrade`). A line that is not JSON (a torn write from a full disk or a kill, bytes that are not UTF-8) is
    skipped; a record appended onto a torn line (edgekit did not end torn lines before issue 18) is recovered from the
    end of the line."""
    out = []
    for line in Path(path).read_bytes().split(b"\n"):
        if not line.strip():
            continue
        rec = _parse(line)
        start = 0
        while rec is _NOT_JSON:  # a torn line with a whole record glued on: the record starts at some b'{"'
            start = line.find(b'{"', start + 1)
            if start < 0:
                break
            rec = _parse(line[start:])
        if rec is not _NOT_JSON:
            out.append(upgrade(rec))
    return out


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v


def _well_formed(rec: Any) -> bool:
    """A result line whose fields have the types the comparisons below use."""
    if not isinstance(rec, dict) or not isinstance(rec.get("sha256"), str):
        return False
    if not all(rec.get(k) is None or isinstance(rec[k], str) for k in ("device", "status", "artifact")):
        return False
    if rec.get("p50_ms") is not None and not _number(rec["p50_ms"]):
        return False
    ci = rec.get("p50_ci_ms")
    return ci is None or (isinstance(ci, list) and len(ci) == 2 and all(_number(v) for v in ci))


#: without intervals (benchmark_model rows), a slowdown beyond this ratio is flagged
REGRESSION_RATIO = 1.10


def _regressed(cur: dict, prev: dict) -> bool:
    p0, p1 = prev.get("p50_ms"), cur.get("p50_ms")
    if not p0 or not p1 or p1 <= p0:
        return False
    c0, c1 = prev.get("p50_ci_ms"), cur.get("p50_ci_ms")
    if c0 and c1:  # the intervals do not overlap, and the slowdown is not negligible
        return c1[0] > c0[1] and p1 / p0 >= 1.02
    return p1 / p0 >= REGRESSION_RATIO


def load(path: str | os.PathLike | None = None, *, artifact: str | os.PathLike | None = None,
         device: str | None = None) -> list[dict]:
    """The recorded results (oldest first), each with ``change`` (p50 / previous p50 of the same artifact sha256
    on the same device) and ``regression`` (slower beyond noise). ``artifact``: a path (matched by sha256 when the
    file exists, else by path) or a sha256 prefix; ``device``: a device name."""
    path = Path(path).expanduser() if path else default_path()
    if not path.is_file():
        return []
    want_sha = want_path = None
    if artifact is not None:
        a = Path(artifact)
        if a.is_file():
            want_sha = sha256_file(a)
        elif all(ch in "0123456789abcdef" for ch in str(artifact).lower()) and len(str(artifact)) >= 8:
            want_sha = str(artifact).lower()
        else:
            want_path = str(artifact)
    last: dict[tuple, dict] = {}
    out = []
    for rec in read(path):
        if not _well_formed(rec):  # a hand-edited or foreign line: skipped like a torn one
            continue
        key = (rec.get("sha256"), rec.get("device"))
        prev = last.get(key)
        rec = dict(rec)
        rec.pop("raw", None)
        rec["change"] = (rec["p50_ms"] / prev["p50_ms"]) if prev and rec.get("p50_ms") and prev.get("p50_ms") \
            else None
        rec["regression"] = bool(prev) and rec.get("status") == "ok" and _regressed(rec, prev)
        if rec.get("status") == "ok":
            last[key] = rec
        if want_sha and not str(rec.get("sha256", "")).startswith(want_sha):
            continue
        if want_path and str(rec.get("artifact")) != want_path and Path(str(rec.get("artifact"))).name != want_path:
            continue
        if device and rec.get("device") != device:
            continue
        out.append(rec)
    return out
