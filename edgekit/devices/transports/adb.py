"""``adb``: Android phones (benchmark_model) and Linux boards with Python, through the ``adb`` binary."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import uuid
from pathlib import Path

from ...errors import ConnectError, DeviceTimeout, RemoteCommandError
from .base import TRANSPORTS, Completed, Transport

_CHATTER = re.compile(r"^\* daemon (not running|started)|^\* failed to start daemon|adb server (is out of date|"
                      r"version \(\d+\) doesn't match)|^\* killing")
_DAEMON_STARTED = re.compile(r"^\* daemon started successfully")
_LOCK = threading.Lock()
_SESSIONS: dict[str, int] = {}  # adb server port -> open sessions of this process
_STARTED: set[str] = set()  # server ports whose server an edgekit session started


@TRANSPORTS.register("adb", description="Android (benchmark_model) or Linux boards with Python, via the adb binary")
class ADBTransport(Transport):
    """The ``adb`` binary. Honours ANDROID_SERIAL and ANDROID_ADB_SERVER_PORT (passed through the environment)."""

    kind = "adb"
    default_work_dir = "/data/local/tmp/edgekit"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._port = os.environ.get("ANDROID_ADB_SERVER_PORT", "5037")
        self._open = False

    def _adb(self, *args: str, timeout: float | None = None) -> subprocess.CompletedProcess:
        adb = shutil.which(self.options.adb)
        if not adb:
            raise ConnectError(f"the adb binary ({self.options.adb}) is not installed",
                               hint="apt-get install adb, or install Android platform-tools")
        serial = self.spec.serial or os.environ.get("ANDROID_SERIAL")
        argv = [adb, *(("-s", serial) if serial else ()), *args]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise DeviceTimeout(f"adb {args[0]} on {self.spec.name} did not finish within {timeout:g} s",
                                hint="raise --max-seconds / --timeout, or lower --runs") from exc
        # the adb client starts a server when none runs and says so on stderr ("* daemon not running; starting
        # now at tcp:5037", "* daemon started successfully"): keep that out of statuses and results
        if any(_DAEMON_STARTED.search(line) for line in done.stderr.splitlines()):
            with _LOCK:
                _STARTED.add(self._port)
        done.stderr = "".join(ln for ln in done.stderr.splitlines(keepends=True) if not _CHATTER.search(ln))
        done.stdout = "".join(ln for ln in done.stdout.splitlines(keepends=True) if not _CHATTER.search(ln))
        return done

    def _disconnect(self) -> None:
        """Stop the adb server if edgekit started it and no other session of ours uses it (a server the user ran
        is left alone)."""
        if not self._open:
            return
        self._open = False
        with _LOCK:
            _SESSIONS[self._port] -= 1
            stop = _SESSIONS[self._port] == 0 and self._port in _STARTED
            if stop:
                _STARTED.discard(self._port)
        if stop:
            try:
                self._adb("kill-server", timeout=30)
            except (ConnectError, DeviceTimeout, OSError):
                pass

    def _connect(self) -> None:
        with _LOCK:
            _SESSIONS[self._port] = _SESSIONS.get(self._port, 0) + 1
        self._open = True
        done = self._adb("get-state", timeout=self.connect_timeout)
        if done.returncode != 0 or done.stdout.strip() != "device":
            serial = self.spec.serial or os.environ.get("ANDROID_SERIAL") or "(default)"
            port = os.environ.get("ANDROID_ADB_SERVER_PORT", "5037")
            raise ConnectError(f"adb device {serial} is not available (adb server port {port}): "
                               f"{(done.stderr or done.stdout).strip() or done.returncode}",
                               hint="check `adb devices`; for a network device run `adb connect HOST:PORT`")

    def _exec(self, script: str, *, timeout: float | None) -> Completed:
        done = self._adb("shell", script, timeout=timeout)
        if done.returncode != 0 and done.stderr.startswith(("error: device", "adb: device", "error: no devices",
                                                            "error: closed")):
            raise ConnectError(f"adb lost {self.spec.name}: {done.stderr.strip()}")
        return Completed(done.returncode, done.stdout, done.stderr)

    def _upload(self, local: Path, dest: str) -> None:
        part = f"{dest}.part-{uuid.uuid4().hex[:8]}"
        done = self._adb("push", str(local), part, timeout=600)
        if done.returncode != 0:
            raise RemoteCommandError(f"adb push {local.name} failed: {(done.stderr or done.stdout).strip()}")
        self.run(["mv", "-f", part, dest], check=True, taskset=False)

    def _download(self, remote: str, local: Path) -> None:
        done = self._adb("pull", remote, str(local), timeout=600)
        if done.returncode != 0:
            raise RemoteCommandError(f"adb pull {remote} failed: {(done.stderr or done.stdout).strip()}")
