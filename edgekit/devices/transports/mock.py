"""``MockTransport`` (httpx's pattern): a device in memory, answered by a handler, for unit tests of transport logic.

The base class's own shell steps (home, work dir, sha256 check, mkdir, rm, kill) are emulated on an in-memory file
system (``files``: device path -> bytes); every ``run(argv)`` is handed to ``handler(request)``, which returns a
:class:`Completed` (or ``None`` for "exit 0, no output"). Exceptions the handler raises are mapped like a real
transport's (TimeoutError -> DeviceTimeout, OSError -> ConnectError)::

    def handler(req):
        if req.argv[1].endswith("runner.py"):
            return Completed(0, json.dumps(doc), "")

    t = MockTransport(handler)
"""
from __future__ import annotations

import hashlib
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ...errors import ConnectError, DeviceTimeout, map_errors
from ..device import DeviceSpec
from .base import _A_LINK, _NOT_OURS, _SHARED, Completed, ConnectOptions, Transport, work_dir_script


@dataclass
class MockRequest:
    """One command as the device would see it: the full shell script and the argv it ``exec``s."""

    script: str
    argv: list[str]
    cwd: str | None = None
    files: dict[str, bytes] = field(default_factory=dict)


class MockTransport(Transport):
    """See the module docstring. ``dirs`` maps device dirs to their modes (set one before ``connect()`` to model an
    existing folder), ``foreign`` holds device dirs owned by another user; ``log`` every script run."""

    kind = "mock"

    def __init__(self, handler: Callable[[MockRequest], Completed | None] | None = None,
                 spec: DeviceSpec | None = None, options: ConnectOptions | None = None, *, home: str = "/home/me"):
        super().__init__(spec or DeviceSpec(name="mock", transport="mock"), options)
        self.handler = handler
        self.home = home
        self.files: dict[str, bytes] = {}
        self.dirs: dict[str, int] = {}  # device dir -> mode
        self.foreign: set[str] = set()
        self.links: set[str] = set()  # device paths that are symbolic links (to a dir of ours unless also foreign)
        self.log: list[str] = []
        self.uploads: list[str] = []
        self.killed: list[str] = []
        self.disconnected = False
        self.has_sha256sum = True

    def _connect(self) -> None:
        self.disconnected = False

    def _disconnect(self) -> None:
        self.disconnected = True

    def _upload(self, local: Path, dest: str) -> None:
        self.files[dest] = local.read_bytes()
        self.uploads.append(dest)

    def _download(self, remote: str, local: Path) -> None:
        if remote not in self.files:
            raise FileNotFoundError(remote)
        local.write_bytes(self.files[remote])

    def _exec(self, script: str, *, timeout: float | None) -> Completed:
        self.log.append(script)
        with map_errors({TimeoutError: DeviceTimeout, OSError: ConnectError}, f"command on {self.spec.name}"):
            return self._emulate(script)

    # -- the few shell forms the base class emits
    def _emulate(self, script: str) -> Completed:
        if script == 'printf %s "$HOME"':
            return Completed(0, self.home, "")
        if script == work_dir_script(self.work_dir, self.run_dir):
            return self._prepare(self.work_dir, self.run_dir)
        m = re.fullmatch(r"\[ -f (.+?) \] \|\| exit 3; \(sha256sum .+", script)
        if m:
            path = shlex.split(m.group(1))[0]
            if path not in self.files:
                return Completed(3, "", "")
            if not self.has_sha256sum:
                return Completed(127, "", "")
            return Completed(0, f"{hashlib.sha256(self.files[path]).hexdigest()}  {path}\n", "")
        m = re.fullmatch(r"(kill \$\(cat (.+?) 2>/dev/null\) 2>/dev/null;? ?)?(rm -rf (.+))?", script)
        if m and (m.group(1) or m.group(3)):
            if m.group(2):
                self.killed.append(shlex.split(m.group(2))[0])
            if m.group(4):
                self._rm(shlex.split(m.group(4))[0])
            return Completed(0, "", "")
        m = re.fullmatch(r"cd (.+?) 2>/dev/null \|\| cd /; echo \$\$ 2>/dev/null >(.+?); exec (.+)", script, re.S)
        if not m:
            raise AssertionError(f"MockTransport cannot emulate: {script!r}")
        cwd, argv = shlex.split(m.group(1))[0], shlex.split(m.group(3))
        core = argv[2:] if argv[:1] == ["taskset"] else argv
        if core[:2] == ["mkdir", "-p"]:
            self.dirs[core[2]] = 0o700
            return Completed(0, "", "")
        done = self.handler(MockRequest(script, argv, cwd, self.files)) if self.handler else None
        return done if done is not None else Completed(0, "", "")

    def _prepare(self, wd: str, rd: str) -> Completed:
        """The work dir script: existing dirs keep their mode (``dirs``), missing ones are made 0700."""
        if wd not in self.links:
            self.dirs.setdefault(wd, 0o700)
        for d in (wd, wd + "/cache"):
            if d in self.links:
                return Completed(1, f"{_A_LINK} {d}\n", "")
            if d in self.foreign:  # ``[ -O ]`` follows a link: a link to a dir of ours passes it
                return Completed(1, f"{_NOT_OURS} {d}\n", "")
            if d in self.dirs and self.dirs[d] & 0o022 and not self.dirs[d] & 0o1000:
                return Completed(1, f"{_SHARED} {d}\n", "")
        self.dirs[rd] = 0o700
        return Completed(0, "", "")

    def _rm(self, path: str) -> None:
        for p in [p for p in self.files if p == path or p.startswith(path + "/")]:
            del self.files[p]
        for d in [d for d in self.dirs if d == path or d.startswith(path + "/")]:
            del self.dirs[d]
