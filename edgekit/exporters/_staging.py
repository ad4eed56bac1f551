"""All-or-nothing output of one export call: every destination checked before converting, every file staged in a
private folder inside ``--out``, renamed into place at the end; on any failure the files that were there before
are put back and none of the new ones stays. A process killed outright (SIGKILL, power loss) cannot clean up: its
staging folder records its owner (pid, host, process start time), and the next export into that folder removes the
staging folders whose owner is gone."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Sequence

from .._io import check_output_path, owner_gone, owner_record
from ..errors import InvalidArgument

STAGING_PREFIX = ".edgekit-export-"
OWNER_FILE = ".edgekit-owner.json"


def clean_stale(out_dir: Path) -> list[Path]:
    """Remove the staging folders in ``out_dir`` left by killed exports: only edgekit's (named and holding an owner
    record), only ours (same user), only when the owner process is gone. Returns what was removed."""
    removed = []
    try:
        candidates = [d for d in out_dir.iterdir() if d.name.startswith(STAGING_PREFIX)]
    except OSError:
        return removed
    for d in candidates:
        try:
            if d.is_symlink() or not d.is_dir() or d.stat().st_uid != os.getuid():
                continue
            owner = json.loads((d / OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue
        if isinstance(owner, dict) and owner_gone(owner):
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
    return removed


def check_destinations(paths: Iterable[Path]) -> None:
    """Refuse destinations that cannot take a file before any work: a folder, and anything but a regular file or a
    new name (a link, a device, a FIFO; see :func:`edgekit._io.check_output_path`)."""
    for p in paths:
        if p.is_dir():
            raise InvalidArgument(f"{str(p)!r} is a folder; the export would write a file of that name there",
                                  hint="move or rename that folder, or choose another --out")
        check_output_path(p, "the export file")


class Staging:
    """``with Staging(out_dir) as st:`` write into ``st.dir``; ``st.commit([(staged, final), ...])``."""

    def __init__(self, out_dir: Path):
        self.out_dir = out_dir
        self.dir: Path | None = None

    def __enter__(self) -> "Staging":
        clean_stale(self.out_dir)
        self.dir = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=self.out_dir))
        (self.dir / OWNER_FILE).write_text(json.dumps(owner_record()))
        return self

    def __exit__(self, *exc) -> None:
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)

    def commit(self, moves: Sequence[tuple[Path, Path]]) -> None:
        """Rename every staged file onto its destination; an existing destination is kept aside (inside the
        staging folder, same file system) until all renames succeeded, and restored if one fails."""
        assert self.dir is not None
        check_destinations(dest for _, dest in moves)  # nothing appeared since the first check
        backups = self.dir / ".replaced"
        backups.mkdir()
        done: list[tuple[Path, Path | None]] = []
        try:
            for i, (src, dest) in enumerate(moves):
                old = None
                if dest.exists() or dest.is_symlink():
                    old = backups / f"{i}-{dest.name}"
                    os.replace(dest, old)
                done.append((dest, old))
                os.replace(src, dest)
        except BaseException:
            for dest, old in reversed(done):
                if dest.is_file() or dest.is_symlink():
                    dest.unlink()
                if old is not None:
                    os.replace(old, dest)
            raise
