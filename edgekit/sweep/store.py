"""The sweep's folder (``--out``): every finished step is a file written atomically, named by a hash of what
produced it, so a rerun of the same sweep finds and reuses it (and a changed setting simply misses it).

Layout::

    OUT/sweep.json                 the spec and plan of the last run
    OUT/results.json, results.csv  the table so far (rewritten as rows finish)
    OUT/plots/*.png                the three plots
    OUT/runs/NAME-KEY/             one trained model: model.keras + train.json
        PRECISION/                 one export call: the artifacts + manifests + export.json
            bench/DEVICE-FORMAT.json   one measurement
            
A record has ``status``; only ``ok`` records are reused, failures are computed again on the next run (device
errors are often transient). Paths inside records are relative to OUT so the folder can be moved.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import re
import shutil
from pathlib import Path
from typing import Any, Iterator

from .._io import atomic_path, json_loads, write_text_atomic
from ..errors import InvalidArgument
from .._jsonable import to_jsonable
from .. import _verify_data as verify_data
from .._verify_data import VERIFY_SUFFIX
from ..devices.history import upgrade as upgrade_bench_row

SCHEMA = "edgekit.sweep/2"
#: record schemas read: /1's trainings, exports and measurements are reused (a measurement's row mapped to bytes by
#: edgekit.devices.history.upgrade); float32 exports are redone (their key names float32 where /1 said none)
READS = (SCHEMA, "edgekit.sweep/1")


def key_of(inputs: Any) -> str:
    """Short stable hash of JSON-able ``inputs`` (sorted keys)."""
    text = json.dumps(to_jsonable(inputs), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("._")[:80] or "x"


def file_fingerprint(path: str) -> dict[str, Any] | str:
    """What identifies an input file or folder cheaply: resolved path, size and mtime (folders: the file count,
    total size and newest mtime). Names (datasets, zoo names) stay as they are."""
    p = Path(str(path)).expanduser()
    if not p.exists():
        return str(path)
    if p.is_file():
        st = p.stat()
        return {"path": str(p.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    files = [f for f in p.rglob("*") if f.is_file()]
    return {"path": str(p.resolve()), "files": len(files), "size": sum(f.stat().st_size for f in files),
            "mtime_ns": max((f.stat().st_mtime_ns for f in files), default=0)}


class Store:
    """Reads and writes the records of one sweep folder."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    # -- locations ---------------------------------------------------------------------------------------------------
    def unit_dir(self, name: str, key: str) -> Path:
        return self.root / "runs" / f"{slug(name)}-{key}"

    @staticmethod
    def export_dir(unit_dir: Path, precision: str) -> Path:
        return unit_dir / slug(precision)

    @staticmethod
    def bench_path(export_dir: Path, device: str, fmt: str, key: str) -> Path:
        return export_dir / "bench" / f"{slug(device)}-{fmt}-{key}.json"

    def rel(self, path: str | Path | None) -> str | None:
        if path is None:
            return None
        try:
            return str(Path(path).resolve().relative_to(self.root.resolve()))
        except ValueError:
            return str(path)

    def abs(self, rel: str | None) -> Path | None:
        return None if rel is None else (self.root / rel)

    # -- a run owns the folder ------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold ``OUT/.sweep.lock`` while a sweep runs: a second sweep into the same folder is refused (the lock dies
        with the process, so a killed sweep never blocks its resume)."""
        import fcntl

        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".sweep.lock", "w") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise InvalidArgument(f"another sweep is running in {self.root}",
                                      hint="wait for it to finish, or give this one another --out") from None
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def clean_partial(self) -> int:
        """Remove what a killed run left half-written under runs/ (hidden temp files and staging folders: every
        file edgekit writes appears by rename, so no finished file is hidden). Returns how many."""
        runs = self.root / "runs"
        found = [p for p in runs.rglob(".*")] if runs.is_dir() else []
        for p in sorted(found, key=lambda p: len(p.parts), reverse=True):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
        return len(found)

    # -- records -----------------------------------------------------------------------------------------------------
    @staticmethod
    def read(path: Path) -> dict[str, Any] | None:
        """The record at ``path``, or None when missing or unreadable (a torn write cannot happen: writes are
        atomic, but a hand-edited file may be anything)."""
        try:
            data = json_loads(Path(path).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("schema") not in READS:
            return None
        if data["schema"] != SCHEMA and isinstance(data.get("result"), dict):
            data["result"] = upgrade_bench_row(data["result"])
        return data

    def read_ok(self, path: Path, *files: Path) -> dict[str, Any] | None:
        """The record when its status is ok and every file it vouches for still exists."""
        rec = self.read(path)
        if rec is None or rec.get("status") != "ok" or not all(Path(f).exists() for f in files):
            return None
        return rec

    @staticmethod
    def write(path: Path, record: dict[str, Any]) -> Path:
        return write_text_atomic(path, json.dumps(to_jsonable({"schema": SCHEMA, **record}), indent=2) + "\n")


def parity_file(artifact: Path, samples: int) -> Path:
    """Where :func:`parity_data` puts an artifact's device-parity samples."""

    return artifact.with_name(f"{artifact.name}.parity-{samples}{VERIFY_SUFFIX}")


def test_labels(artifact: Path):
    """The labels of the test samples the artifact's accuracy was scored on (its verification data), or None."""
    import numpy as np

    source = artifact.with_name(artifact.name + VERIFY_SUFFIX)
    try:
        with np.load(source, allow_pickle=False) as z:
            return z["labels"] if "labels" in z.files else None
    except (OSError, ValueError, EOFError):
        return None


def parity_data(artifact: Path, samples: int) -> None:
    """The first ``samples`` of the artifact's verification data (held-out test inputs and the Keras reference),
    replayed on every device (device_parity): export wrote every test sample, too many to replay under emulation.
    Without verification data nothing is written (bench then says so in the row)."""

    dest, source = parity_file(artifact, samples), artifact.with_name(artifact.name + verify_data.VERIFY_SUFFIX)
    if dest.exists() or not source.exists():
        return
    vd = verify_data.read(source)
    with atomic_path(dest) as tmp:
        verify_data.write(tmp, inputs=[x[:samples] for x in vd.inputs],
                          reference=[r[:samples] for r in vd.reference],
                          host=[h[:samples] for h in vd.host] if vd.host is not None else None,
                          labels=vd.labels[:samples] if vd.labels is not None else None,
                          input_names=vd.input_names, output_names=vd.output_names, output_keys=vd.output_keys,
                          num_classes=vd.num_classes, classifier=vd.classifier)
