"""The Transport base class: what every way of reaching a device shares (work dir, cache, quoting, cleanup).

Operations: ``connect()``, ``put(local) -> device path`` (content-addressed cache, checked by sha256 ON THE DEVICE
before every use and re-copied on mismatch), ``get(device path, local)``, ``run(argv) -> Completed`` (argv quoted
for the device shell; optional ``taskset`` CPU mask) and ``close()`` (removes the per-session run dir; also on
Ctrl-C/SIGTERM). ``abort()`` may be called from another thread to kill the running command and clean up.

The work dir (default: ``~/.cache/edgekit/bench`` of the login user) is created 0700 when missing and never chmod'ed
when it exists; a work dir that is a link, owned by another user or writable by others without the sticky bit is
refused, so nobody else can plant a file that we would run. Subclasses implement ``_connect``, ``_exec``,
``_upload``, ``_download`` and translate their foreign errors into edgekit's :class:`DeviceError` family.
"""
from __future__ import annotations

import os
import shlex
import uuid
from dataclasses import dataclass
from pathlib import Path

from ..._io import sha256_file
from ...errors import DeviceError, DeviceTimeout, InvalidArgument, RemoteCommandError
from ...registry import Registry
from ..device import DeviceSpec

TRANSPORTS: Registry[type["Transport"]] = Registry("transport")
DEFAULT_WORK_DIR = "~/.cache/edgekit/bench"
#: what the device answers when its work dir is not ours (see :meth:`Transport._prepare_work_dir`)
_NOT_OURS = "edgekit-work-dir-not-owned"
_A_LINK = "edgekit-work-dir-is-a-link"
_SHARED = "edgekit-work-dir-is-shared"


def _dir_checks(path: str) -> str:
    """Shell: fail with a marker line when ``path`` (existing) is a link, not ours, or group/world-writable
    without the sticky bit (``ls -ld`` modes: ``drwxrwxrwt``; portable to busybox and BSD, unlike ``stat -c``)."""
    q = shlex.quote(path)
    return (f"if [ -L {q} ]; then echo {_A_LINK} {q}; exit 1; fi; "
            f"if [ -e {q} ]; then if [ ! -O {q} ]; then echo {_NOT_OURS} {q}; exit 1; fi; "
            f'case "$(ls -ld -- {q})" in ?????????[tT]*) ;; ?????w*|????????w*) echo {_SHARED} {q}; exit 1;; '
            'esac; fi; ')


def work_dir_script(work_dir: str, run_dir: str) -> str:
    """The device script that checks (and, when missing, creates 0700) the work dir, then makes the run dir."""
    wd, rd = shlex.quote(work_dir), shlex.quote(run_dir)
    return (f"umask 077; mkdir -p {wd} || exit 1; {_dir_checks(work_dir)}"
            f"{_dir_checks(work_dir + '/cache')}mkdir {rd}")


@dataclass
class Completed:
    """A finished device command."""

    returncode: int
    stdout: str
    stderr: str


@dataclass
class ConnectOptions:
    """Per-call overrides of a profile's connection settings (CLI options / bench() arguments)."""

    key_file: str | None = None
    known_hosts: str | None = None
    accept_new_host_key: bool = False
    connect_timeout: float | None = None  # None: the profile's connect_timeout, else 10 s
    adb: str = "adb"

    def __post_init__(self) -> None:
        if self.connect_timeout is not None and not self.connect_timeout > 0:
            raise InvalidArgument(f"--connect-timeout must be > 0 seconds, got {self.connect_timeout}",
                                  hint="e.g. --connect-timeout 10")


class Transport:
    """Base class; see the module docstring."""

    kind = "base"
    default_work_dir = DEFAULT_WORK_DIR

    def __init__(self, spec: DeviceSpec, options: ConnectOptions | None = None):
        self.spec = spec
        self.options = options or ConnectOptions()
        self.work_dir = (spec.work_dir or self.default_work_dir).rstrip("/") or "/"
        self.run_dir = f"{self.work_dir}/run-{uuid.uuid4().hex[:12]}"
        self.transfers: list[str] = []  # names of files copied by put() since the last reset
        self.connect_timeout = float(self.options.connect_timeout or spec.connect_timeout or 10.0)
        self._connected = False
        self._count = 0
        self._home: str | None = None
        self.pid_file: str | None = None  # records the pid of the command running now (for abort)

    # -- lifecycle
    def __enter__(self) -> "Transport":
        self.connect()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def connect(self) -> None:
        self._connect()
        if self.work_dir.startswith("~"):
            self.work_dir = self.expand(self.work_dir)
            self.run_dir = f"{self.work_dir}/{self.run_dir.rsplit('/', 1)[1]}"
        self._connected = True
        self._prepare_work_dir()

    def _prepare_work_dir(self) -> None:
        """Create the work dir 0700 (umask 077) when it is missing; an existing one is never chmod'ed (a shared
        folder such as /tmp would be locked for everyone else). Refused: a symbolic link (``[ -O ]`` follows links,
        and whoever owns the link can point it elsewhere), a folder another user owns, and a folder other users can
        write to without the sticky bit (they could swap our files); the same for its ``cache`` folder. Then the
        run dir."""
        done = self._shell(work_dir_script(self.work_dir, self.run_dir), timeout=self.connect_timeout * 3)
        hint = f"set work_dir: in the profile to a private folder of the login user (default {DEFAULT_WORK_DIR})"
        for line in done.stdout.splitlines():
            marker, _, where = line.partition(" ")
            if marker == _A_LINK:
                raise InvalidArgument(f"work dir {where} on {self.spec.name} is a symbolic link: refusing to run "
                                      "files from it (whoever owns the link can point it at planted files)", hint=hint)
            if marker == _NOT_OURS:
                raise InvalidArgument(f"work dir {where} on {self.spec.name} belongs to another user: refusing "
                                      "to run files from it (they could have been planted)", hint=hint)
            if marker == _SHARED:
                raise InvalidArgument(f"work dir {where} on {self.spec.name} is writable by other users and has no "
                                      "sticky bit: refusing to run files from it (they could replace them); edgekit "
                                      "does not change the permissions of a folder it did not create",
                                      hint=hint + f", or make it private yourself: chmod go-w {where}")
        if done.returncode != 0:
            raise RemoteCommandError(f"cannot create the work dir {self.work_dir} on {self.spec.name}: "
                                     f"{(done.stderr or done.stdout).strip()[-300:]}",
                                     hint="set work_dir: in the profile to a writable folder of the login user")

    def expand(self, path: str) -> str:
        """``~/x`` -> the device user's home + ``/x`` (quoting would stop the device shell from expanding it)."""
        if path != "~" and not path.startswith("~/"):
            return path
        if self._home is None:
            done = self._shell('printf %s "$HOME"', timeout=30)
            self._home = done.stdout.strip().rstrip("/") if done.returncode == 0 else ""
            if not self._home:
                raise RemoteCommandError(f"cannot find the home directory on {self.spec.name}",
                                         hint="use absolute paths for work_dir / python in the profile")
        return self._home + path[1:]

    def close(self) -> None:
        """Remove this session's run dir on the device (the hash-keyed cache stays) and disconnect."""
        if self._connected:
            self._connected = False
            pid_file, self.pid_file = self.pid_file, None
            try:
                if pid_file:  # interrupted mid-command and abort() did not get through (a loaded device): kill now
                    self._shell(f"kill $(cat {shlex.quote(pid_file)} 2>/dev/null) 2>/dev/null; "
                                f"rm -rf {shlex.quote(self.run_dir)}", timeout=60)
                else:
                    self._remove(self.run_dir)
            except (DeviceError, OSError):
                pass
        self._disconnect()

    def _kill_running(self) -> None:
        pid_file, self.pid_file = self.pid_file, None
        if pid_file:
            try:
                self._shell(f"kill $(cat {shlex.quote(pid_file)} 2>/dev/null) 2>/dev/null", timeout=10)
            except (DeviceError, OSError):
                pass

    def abort(self) -> None:
        """Kill the command running in this session (if any) and remove the run dir. Thread-safe, best effort."""
        pid_file = self.pid_file
        kill = f"kill $(cat {shlex.quote(pid_file)} 2>/dev/null) 2>/dev/null; " if pid_file else ""
        try:
            self._shell(f"{kill}rm -rf {shlex.quote(self.run_dir)}", timeout=30)
        except (DeviceError, OSError):
            pass

    # -- files
    def cache_path(self, name: str, sha: str) -> str:
        return f"{self.work_dir}/cache/{sha[:20]}/{name}"

    def put(self, local: str | os.PathLike, sha256: str | None = None) -> str:
        """Copy ``local`` into the device cache unless a file with the same sha256 is there; return its path."""
        local = Path(local)
        sha = sha256 or sha256_file(local)
        dest = self.cache_path(local.name, sha)
        if self.remote_sha256(dest) == sha:
            return dest
        self.run(["mkdir", "-p", dest.rsplit("/", 1)[0]], check=True, taskset=False)
        self._upload(local, dest)
        if self.remote_sha256(dest) != sha:
            raise RemoteCommandError(f"{local.name} arrived corrupted on {self.spec.name} (sha256 differs after the "
                                     "copy)", hint="check the device's free space and storage")
        self.transfers.append(local.name)
        return dest

    def remote_sha256(self, path: str) -> str | None:
        """The sha256 of a device file computed ON the device (None if there is no such file)."""
        q = shlex.quote(path)
        done = self._shell(f"[ -f {q} ] || exit 3; (sha256sum {q} || shasum -a 256 {q} || openssl dgst -sha256 -r "
                           f"{q}) 2>/dev/null", timeout=120)
        if done.returncode == 3:
            return None
        word = done.stdout.split()[0] if done.stdout.split() else ""
        if done.returncode != 0 or len(word) != 64:
            raise RemoteCommandError(f"cannot compute a sha256 on {self.spec.name} (no sha256sum, shasum or openssl): "
                                     "edgekit does not run cached files it cannot verify",
                                     hint="install coreutils or busybox (sha256sum) on the device")
        return word.lower()

    def get(self, remote: str, local: str | os.PathLike) -> Path:
        """Copy a device file to ``local`` (written atomically)."""
        local = Path(local)
        part = local.with_name(f".{local.name}.part-{uuid.uuid4().hex[:8]}")
        try:
            self._download(remote, part)
            os.replace(part, local)
        finally:
            part.unlink(missing_ok=True)
        return local

    def run_file(self, name: str) -> str:
        """A path in this session's run dir (removed by close/abort)."""
        return f"{self.run_dir}/{name}"

    # -- commands
    def run(self, argv: list[str], *, timeout: float | None = None, check: bool = False,
            taskset: bool = True) -> Completed:
        """Run ``argv`` on the device in the session's run dir (``exec``'d, so its pid is recorded for abort)."""
        prefix = ["taskset", self.spec.cpu_mask] if (taskset and self.spec.cpu_mask) else []
        cmd = " ".join(shlex.quote(a) for a in [*prefix, *argv])
        rd = shlex.quote(self.run_dir)
        self._count += 1
        self.pid_file = f"{self.run_dir}/pid-{self._count}"
        script = f"cd {rd} 2>/dev/null || cd /; echo $$ 2>/dev/null >{shlex.quote(self.pid_file)}; exec {cmd}"
        try:
            done = self._shell(script, timeout=timeout)
        except DeviceTimeout:  # do not leave it running on the device
            self._kill_running()
            raise
        # on Ctrl-C (or any other escape) pid_file stays set so that abort() can kill the command
        self.pid_file = None
        if check and done.returncode != 0:
            raise RemoteCommandError(f"{argv[0]} failed on {self.spec.name} (exit {done.returncode}): "
                                     f"{(done.stderr or done.stdout).strip()[-300:]}")
        return done

    def _shell(self, script: str, *, timeout: float | None) -> Completed:
        return self._exec(script, timeout=timeout)

    # -- to implement
    def _connect(self) -> None:
        raise NotImplementedError

    def _disconnect(self) -> None:
        pass

    def _exec(self, script: str, *, timeout: float | None) -> Completed:
        raise NotImplementedError

    def _upload(self, local: Path, dest: str) -> None:
        raise NotImplementedError

    def _download(self, remote: str, local: Path) -> None:
        raise NotImplementedError

    def _remove(self, path: str) -> None:
        self._shell(f"rm -rf {shlex.quote(path)}", timeout=30)


def create(spec: DeviceSpec, options: ConnectOptions | None = None) -> Transport:
    """The transport object for ``spec`` (looked up in :data:`TRANSPORTS`)."""
    return TRANSPORTS.get(spec.transport)(spec, options)
