"""All-or-nothing output of one export call: every destination checked before converting, every file staged in a
private folder inside ``--out``, renamed into place at the end; on any failure the files that were there before
are put back and none of the new ones stays."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Sequence

from .._io import check_output_path
from ..errors import InvalidArgument

STAGING_PREFIX = ".edgekit-export-"


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
        self.dir = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=self.out_dir))
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
