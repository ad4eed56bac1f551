"""The benchmark history: one JSON document per result line (JSON Lines), appended atomically."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

from .._jsonable import to_jsonable
from ..errors import InvalidArgument


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
