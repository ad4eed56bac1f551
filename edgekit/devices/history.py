"""The benchmark history: one JSON document per result line (JSON Lines), appended atomically."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

from .._jsonable import to_jsonable
from ..errors import InvalidArgument
from .transports import sha256_file


def default_path() -> Path:
    """``$EDGEKIT_BENCH_HISTORY``, else ``~/.cache/edgekit/bench_history.jsonl`` (``$XDG_CACHE_HOME`` honoured)."""
    env = os.environ.get("EDGEKIT_BENCH_HISTORY")
    if env:
        return Path(env).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "edgekit" / "bench_history.jsonl"


def append(path: str | os.PathLike, records: Iterable[Any]) -> Path:
    """Append records as JSON lines with ONE ``write`` on an ``O_APPEND`` fd under an exclusive lock.

    Concurrent writers never interleave inside a line, and a crash never leaves half a batch behind a newline.
    """
    path = Path(path).expanduser()
    data = "".join(json.dumps(to_jsonable(r), sort_keys=True) + "\n" for r in records).encode()
    if not data:
        return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as exc:
        raise InvalidArgument(f"cannot write the bench history {path}: {exc.strerror or exc}",
                              hint="choose another file with --history, or --no-history") from exc
    try:
        try:
            import fcntl
            fcntl.flock(fd, fcntl.LOCK_EX)
        except ImportError:  # pragma: no cover - Windows
            pass
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        os.fsync(fd)
    finally:
        os.close(fd)
    return path


def read(path: str | os.PathLike) -> list[dict]:
    """All records of a history file (a torn last line, e.g. from a full disk, is skipped)."""
    out = []
    for line in Path(path).read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


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
        if not isinstance(rec, dict) or "sha256" not in rec:
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
