"""Atomic file output: write to a temporary path beside the destination, rename on success, delete on error."""
from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import InvalidArgument


def ensure_writable_dir(path: str | os.PathLike, create: bool = True, option: str = "--out") -> Path:
    """Create ``path`` if needed and check that we can write into it (``option`` names it in the hint).

    ``create=False`` only checks that it could be created and written (its nearest existing ancestor is a
    writable directory): an early check that leaves nothing behind when the operation fails later.
    """
    out = Path(path)
    try:
        if create:
            out.mkdir(parents=True, exist_ok=True)
        probe_dir = out
        while not create and not probe_dir.exists() and probe_dir != probe_dir.parent:
            probe_dir = probe_dir.parent
        if out.exists() and not out.is_dir():
            raise FileExistsError(errno.EEXIST, "a file is in the way", str(out))
        if not probe_dir.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, f"{probe_dir} is not a directory", str(probe_dir))
        probe = tempfile.NamedTemporaryFile(dir=probe_dir, prefix=".edgekit-probe-", delete=True)
        probe.close()
    except OSError as exc:
        raise InvalidArgument(f"output directory {str(out)!r} is not writable: {exc.strerror or exc}",
                              hint=f"choose another directory with {option}") from exc
    return out


def refuse_folder(dest: str | os.PathLike, option: str = "the output path") -> None:
    """Raise InvalidArgument when ``dest`` is an existing folder (or a link to one): a file is never written over
    a user's folder, and nothing in it is deleted."""
    if Path(dest).expanduser().is_dir():
        raise InvalidArgument(f"{option} {str(dest)!r} is an existing folder; edgekit does not replace folders",
                              hint=f"move the folder away or choose another {option}")


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike, suffix: str = ".part") -> Iterator[Path]:
    """Yield a temporary path next to ``dest``; on success move it onto ``dest``, on error remove it.

    Works for files and directories (e.g. SavedModel folders) written at the yielded path. The path does not exist
    yet, so what is written there gets the usual permissions (the umask's), not mkstemp's 0600. ``suffix``: the
    temporary name's ending (writers that pick a format by suffix need theirs, e.g. ``.part.keras``). An existing
    folder at ``dest`` is refused (InvalidArgument) before anything is written, never deleted.
    """
    dest = Path(dest)
    refuse_folder(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=suffix, dir=dest.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    tmp_path.unlink()
    try:
        yield tmp_path
        refuse_folder(dest)  # a folder that appeared meanwhile is not ours to replace
        os.replace(tmp_path, dest)
    except BaseException:
        if tmp_path.is_dir():
            shutil.rmtree(tmp_path, ignore_errors=True)
        else:
            tmp_path.unlink(missing_ok=True)
        raise


def write_text_atomic(dest: str | os.PathLike, text: str) -> Path:
    with atomic_path(dest) as tmp:
        tmp.write_text(text)
    return Path(dest)


def sha256_file(path: str | os.PathLike) -> str:
    """The sha256 hex digest of a file, read in 1 MiB chunks (the one helper; the device runner keeps its own copy
    because it must run without edgekit)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
