"""Atomic file output (write to a temporary path beside the destination, rename on success, delete on error), and
safe input: paths edgekit reads must be regular files or folders, read with a size limit."""
from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterator

from .errors import EdgekitError, InvalidArgument


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


# -- reading input paths -------------------------------------------------------------------------------------------
#: what a path is when it is neither a regular file nor a folder (by its st_mode)
_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder"))


def path_kind(mode: int) -> str:
    """``"a FIFO (named pipe)"``, ``"a character device"``, ... for a ``st_mode`` that is not a file or folder."""
    return next((text for test, text in _KINDS if test(mode)), "not a regular file")


def _not_regular(path: Path, what: str, mode: int, error: type[EdgekitError], dirs: bool) -> EdgekitError:
    link = f" (a link to {os.path.realpath(path)!r})" if path.is_symlink() else ""
    ok = "a regular file or a folder" if dirs else "a regular file"
    return error(f"{what} {str(path)!r}{link} is {path_kind(mode)}, not {ok}; edgekit reads only regular files",
                 hint=f"pass {ok} (copy the data to a file first)")


def check_input_path(path: str | os.PathLike, what: str, *, dirs: bool = True,
                     error: type[EdgekitError] = InvalidArgument) -> Path:
    """``path`` as a Path after checking that it is a regular file (or, with ``dirs``, a folder), links followed.

    A FIFO, a device (``/dev/zero`` or a link to it), a socket: ``error`` (an InvalidArgument subclass) saying what it
    is, before anything reads it (a FIFO would block forever, ``/dev/zero`` never ends). A path that does not exist
    is returned as is: the caller says what was expected there.
    """
    p = Path(path).expanduser()
    try:
        mode = os.stat(p).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return p
    except OSError as exc:
        raise error(f"cannot read {what} {str(p)!r}: {exc.strerror or exc}", hint="check the path and its permissions")
    if stat.S_ISREG(mode) or (dirs and stat.S_ISDIR(mode)):
        return p
    raise _not_regular(p, what, mode, error, dirs)


@contextlib.contextmanager
def open_input(path: str | os.PathLike, what: str, *, limit: int | None = None,
               error: type[EdgekitError] = InvalidArgument) -> Iterator[BinaryIO]:
    """Open ``path`` for reading if it is a regular file of at most ``limit`` bytes (``error`` otherwise).

    Opened without blocking and checked on the open descriptor, so a FIFO swapped in after a check cannot hang the
    read. ``limit`` bounds the size up front (an input larger than anything edgekit expects there is refused before
    a byte is read).
    """
    p = Path(path).expanduser()
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        check_input_path(p, what, dirs=False, error=error)   # a socket (ENXIO) or a folder (EISDIR): say what it is
        raise error(f"cannot read {what} {str(p)!r}: {exc.strerror or exc}",
                    hint="check the path and its permissions") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _not_regular(p, what, st.st_mode, error, dirs=False)
        if limit is not None and st.st_size > limit:
            raise error(f"{what} {str(p)!r} is {st.st_size} bytes, more than the {limit} bytes edgekit reads there",
                        hint=f"is it the right file? {what} is expected to be at most {_size(limit)}")
        os.set_blocking(fd, True)
        fh = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with fh:
        yield fh


def read_input_bytes(path: str | os.PathLike, what: str, *, limit: int,
                     error: type[EdgekitError] = InvalidArgument) -> bytes:
    """The bytes of regular file ``path`` (at most ``limit``; see :func:`open_input`)."""
    with open_input(path, what, limit=limit, error=error) as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:   # grew while we read
        raise error(f"{what} {str(path)!r} is more than the {limit} bytes edgekit reads there",
                    hint=f"is it the right file? {what} is expected to be at most {_size(limit)}")
    return data


def read_input_text(path: str | os.PathLike, what: str, *, limit: int,
                    error: type[EdgekitError] = InvalidArgument) -> str:
    """The UTF-8 text of regular file ``path`` (at most ``limit`` bytes); text that is not UTF-8 is ``error``."""
    data = read_input_bytes(path, what, limit=limit, error=error)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{what} {str(path)!r} is not UTF-8 text (byte {exc.start}: {data[exc.start:exc.start + 1]!r})",
                    hint=f"save {what} as UTF-8 text") from None


def check_input_tree(root: str | os.PathLike, what: str, *, max_entries: int = 100_000,
                     error: type[EdgekitError] = InvalidArgument) -> None:
    """Every entry under folder ``root`` (links followed) is a regular file or a folder, and there are at most
    ``max_entries`` of them; ``error`` naming the first that is not (a FIFO inside a SavedModel would hang its
    loader)."""
    count = 0
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            count += 1
            if count > max_entries:
                raise error(f"{what} {str(root)!r} holds more than {max_entries} files and folders",
                            hint="is it the right folder?")
            p = Path(dirpath) / name
            try:
                mode = os.stat(p).st_mode
            except OSError:
                continue   # a dangling link: the loader reports the missing file
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                raise _not_regular(p, f"{what} entry", mode, error, dirs=True)


def _size(n: int) -> str:
    return f"{n / (1 << 30):g} GiB" if n >= 1 << 30 else f"{n / (1 << 20):g} MiB" if n >= 1 << 20 else f"{n} bytes"


#: bounds on the YAML files edgekit reads (recipes, sweep configs, device profiles)
YAML_MAX_BYTES = 1 << 20
YAML_MAX_NODES = 100_000      # after expanding aliases: a 444-byte file of nested aliases expands to billions
YAML_MAX_DEPTH = 64


def load_yaml_file(path: str | os.PathLike, what: str, *, error: type[EdgekitError] = InvalidArgument,
                   limit: int = YAML_MAX_BYTES) -> object:
    """The data of YAML file ``path`` (safe loader), read with :func:`read_input_text` (regular UTF-8 file of at most
    ``limit`` bytes) and refused (``error``) when, with its aliases expanded, it would hold more than YAML_MAX_NODES
    values or nest deeper than YAML_MAX_DEPTH, before anything is built from it. Syntax errors propagate as
    ``yaml.YAMLError`` for the caller to place."""
    return load_yaml_text(read_input_text(path, what, limit=limit, error=error), f"{what} {str(path)!r}", error=error)


def load_yaml_text(text: str, what: str, *, error: type[EdgekitError] = InvalidArgument) -> object:
    import yaml

    loader = yaml.SafeLoader(text)
    try:
        try:
            node = loader.get_single_node()
        except RecursionError:
            raise error(f"{what} nests deeper than {YAML_MAX_DEPTH} levels", hint="flatten the YAML") from None
        if node is None:
            return None
        _yaml_extent(node, what, error)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _yaml_extent(root, what: str, error: type[EdgekitError]) -> None:
    """Count the values under ``root`` with aliases expanded (memoised per node, so the count itself is cheap)."""
    import yaml

    memo: dict[int, int] = {}
    active: set[int] = set()

    def count(node, depth: int) -> int:
        key = id(node)
        if key in memo:
            return memo[key]
        if depth > YAML_MAX_DEPTH:
            raise error(f"{what} nests deeper than {YAML_MAX_DEPTH} levels", hint="flatten the YAML")
        if key in active:
            raise error(f"{what} holds an alias that refers to itself", hint="remove the recursive alias (*name)")
        active.add(key)
        n = 1
        if isinstance(node, yaml.SequenceNode):
            n += sum(count(child, depth + 1) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            n += sum(count(k, depth + 1) + count(v, depth + 1) for k, v in node.value)
        active.discard(key)
        memo[key] = n
        if n > YAML_MAX_NODES:
            raise error(f"{what} expands to more than {YAML_MAX_NODES} values (its aliases repeat nested blocks)",
                        hint="write the values out instead of nesting aliases (*name) of aliases")
        return n

    count(root, 0)


#: a zip archive (.keras, .npz) that unpacks to more than ZIP_MAX_RATIO times its size, above ZIP_RATIO_FROM bytes,
#: is a zip bomb (weights and data compress 1-10x; a 300 MiB zero entry packs 1000x)
ZIP_MAX_RATIO = 200
ZIP_RATIO_FROM = 64 << 20


def check_zip_members(z, path: str | os.PathLike, what: str, *, max_bytes: int, max_entries: int = 10_000,
                      error: type[EdgekitError] = InvalidArgument) -> None:
    """Refuse (``error``) an open ``zipfile.ZipFile`` before anything is extracted or read from it: entry names that
    would land outside the folder they are unpacked into (absolute, ``..``, drive letters, NUL), more than
    ``max_entries`` entries, more than ``max_bytes`` uncompressed, or a zip bomb's ratio (see ZIP_MAX_RATIO)."""
    import re

    infos = z.infolist()
    where = repr(str(path))
    if len(infos) > max_entries:
        raise error(f"{what} {where} holds {len(infos)} archive entries (at most {max_entries})",
                    hint="the file is corrupt or not what edgekit expects there")
    for info in infos:
        name = info.filename
        parts = name.replace("\\", "/").split("/")
        if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or ".." in parts or "\0" in name:
            raise error(f"{what} {where} holds an archive entry named {name[:200]!r}, which would be unpacked "
                        "outside its folder", hint="the file is corrupt or tampered with")
    total = sum(max(i.file_size, 0) for i in infos)
    packed = os.stat(path).st_size
    if total > max_bytes or (total > ZIP_RATIO_FROM and total > ZIP_MAX_RATIO * max(packed, 1)):
        raise error(f"{what} {where} unpacks to {total} bytes from {packed} (at most {_size(max_bytes)}, and at most "
                    f"{ZIP_MAX_RATIO} times its size above {_size(ZIP_RATIO_FROM)}): a zip bomb or a corrupt archive",
                    hint="the file is corrupt or tampered with")
