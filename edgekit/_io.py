"""Atomic file output: write to a temporary path beside the destination, rename on success, delete on error."""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import socket
import stat
import tempfile
from pathlib import Path
from typing import Any, Iterator

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


#: the longest file name (one path component, in bytes) of Linux's, macOS's and Windows' file systems
NAME_MAX = 255


def _started(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid from the owner."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return None


def owner_record() -> dict:
    """Who is writing: pid, host and the process's start time (see :func:`owner_gone`)."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "started": _started(os.getpid())}


def owner_gone(owner: dict) -> bool:
    """True only when the owner is surely gone: same host, and no process with its pid (or a newer one)."""
    if owner.get("host") != socket.gethostname() or not isinstance(owner.get("pid"), int) or owner["pid"] <= 0:
        return False  # another machine (a shared folder) or a record we cannot read: not ours to judge
    try:
        os.kill(owner["pid"], 0)
    except ProcessLookupError:
        return True
    except OSError:  # alive, another user's
        return False
    now = _started(owner["pid"])
    return bool(now and owner.get("started") and now != owner["started"])  # the pid was reused


def check_name_length(path: str | os.PathLike, option: str = "the path") -> None:
    """Refuse (InvalidArgument) a path with a component longer than the file system takes (ENAMETOOLONG would
    surface deep inside a writer or a reader as an internal error)."""
    for part in Path(path).parts:
        n = len(os.fsencode(part))
        if n > NAME_MAX:
            shown = part[:40] + "..." + part[-20:]
            raise InvalidArgument(f"{option}: the file name {shown!r} is {n} bytes long; file systems take at most "
                                  f"{NAME_MAX} bytes per name", hint=f"choose a shorter name for {option}")


_KINDS = ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"),
          (stat.S_ISSOCK, "a socket"))


def check_output_path(dest: str | os.PathLike, option: str = "the output path") -> None:
    """Refuse (InvalidArgument) an output path that is not a new name or a regular file.

    Outputs are replaced atomically (a temporary file renamed over the name), which would turn a device, a FIFO or
    a socket into a regular file (as root, ``--csv /dev/null`` would replace the system's /dev/null) and replace a
    symbolic link instead of its target. Writing *through* them instead was rejected: a link can point anywhere
    (someone else's link in a shared folder, at a file of ours), and a device or a FIFO cannot take a whole file
    or nothing. So they are refused, and an existing folder (or a link to one) is never replaced either."""
    dest = Path(dest).expanduser()
    check_name_length(dest, option)
    try:
        st = os.lstat(dest)
    except OSError:  # missing (a new name), or a parent that is not a folder: the writer reports that
        return
    if stat.S_ISREG(st.st_mode):
        return
    if stat.S_ISDIR(st.st_mode) or (stat.S_ISLNK(st.st_mode) and dest.is_dir()):
        raise InvalidArgument(f"{option} {str(dest)!r} is an existing folder; edgekit does not replace folders",
                              hint=f"move the folder away or choose another {option}")
    if stat.S_ISLNK(st.st_mode):
        raise InvalidArgument(f"{option} {str(dest)!r} is a symbolic link; edgekit writes outputs only onto regular "
                              "files or new names (it would replace the link, and does not write where a link "
                              "points)", hint=f"give the link's target ({os.path.realpath(dest)}) as {option}, or "
                                              "remove the link")
    kind = next((name for test, name in _KINDS if test(st.st_mode)), "not a regular file")
    raise InvalidArgument(f"{option} {str(dest)!r} is {kind}; edgekit writes outputs only onto regular files or new "
                          "names (the file is written whole, then renamed over the name, which would replace it)",
                          hint=f"choose a regular file as {option}" + (" (or - for standard output)"
                                                                       if option in STDOUT_OPTIONS else ""))


#: output options that take ``-`` for standard output (named in the hint of a refused device)
STDOUT_OPTIONS = frozenset({"--json"})


@contextlib.contextmanager
def created_dir(path: str | os.PathLike, option: str = "--out") -> Iterator[Path]:
    """``with created_dir(out) as out:`` creates ``out`` (and its missing parents) like :func:`ensure_writable_dir`;
    when the block fails (a full disk, an error, Ctrl-C) the folders this call created are removed again if they
    are empty, so a failed run leaves no empty ``--out`` folder behind. Existing folders are never removed."""
    out = Path(path)
    made: list[Path] = []
    p = out.absolute()
    try:
        while not p.exists() and p != p.parent:
            made.append(p)
            p = p.parent
    except OSError:  # e.g. a name too long: ensure_writable_dir says so
        made = []
    out = ensure_writable_dir(out, option=option)
    try:
        yield out
    except BaseException:
        for d in made:  # deepest first
            try:
                d.rmdir()
            except OSError:
                break
        raise


def refuse_folder(dest: str | os.PathLike, option: str = "the output path") -> None:
    """Raise InvalidArgument when ``dest`` is an existing folder (or a link to one) or anything else that is not a
    regular file or a new name (see :func:`check_output_path`): nothing in a user's folder is deleted."""
    check_output_path(dest, option)


_TEMP_TAG = "ek"


def _host_tag() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def _clean_stale_temps(folder: Path, prefix: str) -> None:
    """Remove temporaries ``PREFIXek<pid>@<host>.*`` of writes whose process was killed outright (SIGKILL, power
    loss: no cleanup ran): only this host's, only the user's, only when no process has that pid any more."""
    host, tag = socket.gethostname(), _host_tag()
    try:
        names = [n for n in os.listdir(folder) if n.startswith(prefix + _TEMP_TAG)]
    except OSError:
        return
    for name in names:
        pid, _, rest = name[len(prefix) + len(_TEMP_TAG):].partition("@")
        if not pid.isdigit() or not rest.startswith(tag + "."):
            continue
        path = folder / name
        try:
            if path.lstat().st_uid != os.getuid() or not owner_gone({"pid": int(pid), "host": host}):
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink()
        except OSError:
            continue


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike, suffix: str = ".part", option: str = "the output path") -> Iterator[Path]:
    """Yield a temporary path next to ``dest``; on success move it onto ``dest``, on error remove it.

    Works for files and directories (e.g. SavedModel folders) written at the yielded path. The path does not exist
    yet, so what is written there gets the usual permissions (the umask's), not mkstemp's 0600. ``suffix``: the
    temporary name's ending (writers that pick a format by suffix need theirs, e.g. ``.part.keras``). Anything at
    ``dest`` but a regular file (a folder, a link, a device, a FIFO) is refused (InvalidArgument, ``option`` names
    it) before anything is written, and again just before the rename; it is never replaced.
    """
    dest = Path(dest)
    check_output_path(dest, option)
    dest.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{dest.name}." if len(os.fsencode(dest.name)) <= NAME_MAX - 48 else ".edgekit-output."
    _clean_stale_temps(dest.parent, prefix)
    fd, tmp = tempfile.mkstemp(prefix=f"{prefix}{_TEMP_TAG}{os.getpid()}@{_host_tag()}.", suffix=suffix,
                               dir=dest.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    tmp_path.unlink()
    try:
        yield tmp_path
        check_output_path(dest, option)  # what appeared meanwhile is not ours to replace
        os.replace(tmp_path, dest)
    except BaseException:
        if tmp_path.is_dir():
            shutil.rmtree(tmp_path, ignore_errors=True)
        else:
            tmp_path.unlink(missing_ok=True)
        raise


def write_text_atomic(dest: str | os.PathLike, text: str, option: str = "the output path") -> Path:
    with atomic_path(dest, option=option) as tmp:
        tmp.write_text(text)
    return Path(dest)


#: the deepest nesting edgekit accepts in JSON it reads (its own documents nest < 10 levels); deeper ones would
#: overflow the recursive walks that follow (to_jsonable, json.dumps) even when json.loads managed
MAX_JSON_DEPTH = 100


def json_loads(text: str | bytes) -> Any:
    """``json.loads`` for documents read from files, devices and the environment: one nested deeper than
    :data:`MAX_JSON_DEPTH` (``[[[[...`` x 100,000) raises ValueError like any other bad JSON, not RecursionError
    (which the callers' ``except ValueError`` did not catch: an internal error)."""
    try:
        doc = json.loads(text)
    except RecursionError:
        raise ValueError("the JSON document is nested too deeply") from None
    stack = [(doc, 1)]
    while stack:  # iterative: the check itself must not recurse
        node, depth = stack.pop()
        if isinstance(node, (dict, list)):
            if depth > MAX_JSON_DEPTH:
                raise ValueError(f"the JSON document nests deeper than {MAX_JSON_DEPTH} levels")
            stack.extend((v, depth + 1) for v in (node.values() if isinstance(node, dict) else node))
    return doc


def sha256_file(path: str | os.PathLike) -> str:
    """The sha256 hex digest of a file, read in 1 MiB chunks (the one helper; the device runner keeps its own copy
    because it must run without edgekit)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
