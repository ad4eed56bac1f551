"""Transports: how edgekit reaches a device. ``local`` (subprocess), ``ssh`` (paramiko), ``adb`` (the adb binary).

Every transport offers the same four operations: ``connect()``, ``put(local_file) -> device path`` (content-
addressed cache: a file is copied only when its sha256 is not on the device yet), ``run(argv) -> Completed``
(argv is quoted for the device shell; optional ``taskset`` CPU mask) and ``close()`` (removes the per-session work
dir; also on Ctrl-C). ``abort()`` may be called from another thread to kill the running command and clean up.
Foreign errors (paramiko, socket, adb) are translated here into edgekit's :class:`DeviceError` family.
"""
from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from ..errors import (AuthError, ConnectError, DeviceError, DeviceTimeout, HostKeyError, InvalidArgument,
                      MissingDependency, RemoteCommandError, map_errors)
from ..registry import Registry
from .profiles import DeviceSpec

TRANSPORTS: Registry[type["Transport"]] = Registry("transport")


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


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class Transport:
    """Base class; subclasses implement ``_connect``, ``_exec``, ``_upload``, ``_exists``, ``_remove``."""

    kind = "base"
    default_work_dir = "/tmp/edgekit-bench"

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
        self.run(["mkdir", "-p", self.run_dir], check=True, taskset=False, timeout=self.connect_timeout * 3)

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
        """Remove this session's work dir on the device (the hash-keyed cache stays) and disconnect."""
        if self._connected:
            self._connected = False
            try:
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
        """Kill the command running in this session (if any) and remove the work dir. Thread-safe, best effort."""
        pid_file = self.pid_file
        kill = f"kill $(cat {shlex.quote(pid_file)} 2>/dev/null) 2>/dev/null; " if pid_file else ""
        try:
            self._shell(f"{kill}rm -rf {shlex.quote(self.run_dir)}", timeout=10)
        except (DeviceError, OSError):
            pass

    # -- files
    def put(self, local: str | os.PathLike, sha256: str | None = None) -> str:
        """Copy ``local`` into the device cache unless the same content is already there; return its path."""
        local = Path(local)
        sha = sha256 or sha256_file(local)
        dest = f"{self.work_dir}/cache/{sha[:20]}/{local.name}"
        size = local.stat().st_size
        if self._exists(dest, size):
            return dest
        self.run(["mkdir", "-p", dest.rsplit("/", 1)[0]], check=True, taskset=False)
        self._upload(local, dest)
        self.transfers.append(local.name)
        return dest

    # -- commands
    def run(self, argv: list[str], *, timeout: float | None = None, check: bool = False,
            taskset: bool = True) -> Completed:
        """Run ``argv`` on the device in the session's work dir (``exec``'d, so its pid is recorded for abort)."""
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

    def _exists(self, path: str, size: int) -> bool:
        done = self._shell(f"[ -f {shlex.quote(path)} ] && wc -c < {shlex.quote(path)}", timeout=30)
        return done.returncode == 0 and done.stdout.strip() == str(size)

    def _remove(self, path: str) -> None:
        self._shell(f"rm -rf {shlex.quote(path)}", timeout=30)


# --------------------------------------------------------------------------------------------------- local
@TRANSPORTS.register("local", description="this machine, through a subprocess running the same runner")
class LocalTransport(Transport):
    """This machine. Files are used in place (no copies); commands run through ``/bin/sh``."""

    kind = "local"

    def __init__(self, spec: DeviceSpec, options: ConnectOptions | None = None):
        super().__init__(spec, options)
        if not spec.work_dir:
            self.work_dir = tempfile.gettempdir().rstrip("/") + "/edgekit-bench"
            self.run_dir = f"{self.work_dir}/run-{uuid.uuid4().hex[:12]}"
        self._proc: subprocess.Popen | None = None

    def _connect(self) -> None:
        if self.spec.cpu_mask and not shutil.which("taskset"):
            raise ConnectError("this machine has no taskset for cpu_mask", hint="apt-get install util-linux")

    def put(self, local: str | os.PathLike, sha256: str | None = None) -> str:
        return str(Path(local).resolve())

    def expand(self, path: str) -> str:
        return os.path.expanduser(path)

    def _exec(self, script: str, *, timeout: float | None) -> Completed:
        proc = subprocess.Popen(["/bin/sh", "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, start_new_session=True)
        self._proc = proc
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            proc.kill()
            proc.communicate()
            raise DeviceTimeout(f"local command did not finish within {timeout:g} s",
                                hint="raise --max-seconds / --timeout, or lower --runs") from exc
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            self._proc = None
        return Completed(proc.returncode, out, err)

    def abort(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
        shutil.rmtree(self.run_dir, ignore_errors=True)

    def _remove(self, path: str) -> None:
        shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------------------------------- ssh
def _paramiko():
    try:
        import paramiko
    except ImportError as exc:
        raise MissingDependency("paramiko", "ssh", purpose="for ssh:// devices") from exc
    import logging

    # paramiko's transport thread logs failures (e.g. a banner timeout, already translated into our error) with a
    # traceback; without a handler, logging's last resort printed it on stderr. Apps that configure logging still
    # get these records (they propagate).
    log = logging.getLogger("paramiko")
    if not any(isinstance(h, logging.NullHandler) for h in log.handlers):
        log.addHandler(logging.NullHandler())
    return paramiko


@TRANSPORTS.register("ssh", description="Linux boards (Raspberry Pi) over SSH with paramiko, key auth")
class SSHTransport(Transport):
    """SSH with key authentication; host keys checked against known_hosts (RejectPolicy) unless told otherwise."""

    kind = "ssh"

    def __init__(self, spec: DeviceSpec, options: ConnectOptions | None = None):
        super().__init__(spec, options)
        self._client = None
        self._sftp = None

    @property
    def _where(self) -> str:
        user = f"{self.spec.user}@" if self.spec.user else ""
        return f"{user}{self.spec.host}:{self.spec.port or 22}"

    def _known_hosts_file(self) -> str:
        return self.options.known_hosts or self.spec.known_hosts or os.path.expanduser("~/.ssh/known_hosts")

    def _connect(self) -> None:
        paramiko = _paramiko()
        client = paramiko.SSHClient()
        kh = self._known_hosts_file()
        explicit_kh = bool(self.options.known_hosts or self.spec.known_hosts)
        try:
            if explicit_kh:
                if os.path.exists(kh):
                    client.load_host_keys(kh)
            else:
                client.load_system_host_keys()
        except (OSError, paramiko.SSHException) as exc:
            raise HostKeyError(f"cannot read known_hosts {kh}: {exc}") from exc
        if self.options.accept_new_host_key:
            client.set_missing_host_key_policy(_AcceptNewPolicy(kh))
        else:
            client.set_missing_host_key_policy(paramiko.RejectPolicy())
        key = self.options.key_file or self.spec.key_file
        if key and not os.path.isfile(os.path.expanduser(key)):
            raise InvalidArgument(f"SSH key file {key} does not exist")
        timeout = self.connect_timeout
        host_key_hint = (f"if this is the right device, rerun with --accept-new-host-key (stores its key in {kh}), "
                         f"or add it with: ssh-keyscan -p {self.spec.port or 22} {self.spec.host} >> {kh}")
        t0 = time.monotonic()
        try:
            client.connect(self.spec.host, port=self.spec.port or 22, username=self.spec.user,
                           key_filename=os.path.expanduser(key) if key else None, timeout=timeout,
                           banner_timeout=timeout, auth_timeout=timeout, allow_agent=key is None,
                           look_for_keys=key is None)
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise HostKeyError(f"host key of {self._where} does NOT match {kh} (possible man-in-the-middle, or the "
                               f"device was reinstalled)", hint=f"if the device was reinstalled, remove its old "
                               f"line with: ssh-keygen -R '[{self.spec.host}]:{self.spec.port or 22}' -f {kh}") from exc
        except paramiko.PasswordRequiredException as exc:  # before AuthenticationException, its base class
            client.close()
            raise AuthError(f"SSH key file {key} is protected by a passphrase (edgekit does not prompt)",
                            hint=f"load it into ssh-agent (ssh-add {key}) and omit --key-file, or use a key "
                                 f"without a passphrase") from exc
        except paramiko.AuthenticationException as exc:
            client.close()
            raise AuthError(f"{self._where} refused our key: {exc}",
                            hint="check --key-file / the profile's key_file and the device's authorized_keys "
                                 "(ssh-copy-id)") from exc
        except (socket.timeout, TimeoutError) as exc:
            client.close()
            raise DeviceTimeout(f"{self._where} did not answer within {timeout:g} s",
                                hint="is the device on and on this network? (--connect-timeout)") from exc
        except paramiko.SSHException as exc:
            client.close()
            text = str(exc)
            if "not found in known_hosts" in text:
                raise HostKeyError(f"host key of {self._where} is not in {kh}", hint=host_key_hint) from exc
            if key and "private key" in text.lower():  # paramiko could not parse --key-file (no own subclass)
                raise InvalidArgument(f"cannot read SSH key file {key}: {text}",
                                      hint="pass a private key file (OpenSSH or PEM), e.g. ~/.ssh/id_ed25519") from exc
            handshake = "banner" in text.lower() or "no existing session" in text.lower()
            if handshake and time.monotonic() - t0 >= 0.9 * timeout or "timed out" in text.lower():
                raise DeviceTimeout(f"{self._where} accepted the connection but sent no SSH banner within "
                                    f"{timeout:g} s: {text}", hint="is an SSH server listening there?") from exc
            if handshake:
                raise ConnectError(f"{self._where} accepted the connection but the SSH handshake failed: {text}",
                                   hint="is an SSH server listening on that port?") from exc
            raise ConnectError(f"SSH to {self._where} failed: {text}") from exc
        except OSError as exc:  # refused, unreachable, DNS (NoValidConnectionsError is an OSError)
            client.close()
            reason = exc.strerror or str(exc)
            raise ConnectError(f"cannot reach {self._where}: {reason}",
                               hint="check host, port and that sshd runs on the device") from exc
        self._client = client

    def _disconnect(self) -> None:
        if self._sftp is not None:
            try:
                self._sftp.close()
            except Exception:  # noqa: BLE001
                pass
            self._sftp = None
        if self._client is not None:
            self._client.close()
            self._client = None

    def _exec(self, script: str, *, timeout: float | None) -> Completed:
        paramiko = _paramiko()
        if self._client is None:
            raise ConnectError(f"not connected to {self._where}")
        with map_errors({socket.timeout: DeviceTimeout, paramiko.SSHException: ConnectError, OSError: ConnectError},
                        f"command on {self._where}"):
            chan = self._client.get_transport().open_session(timeout=self.connect_timeout)
            try:
                chan.settimeout(timeout)
                chan.exec_command(script)
                return self._wait(chan, timeout)
            finally:
                chan.close()

    def _wait(self, chan, timeout: float | None) -> Completed:
        """Collect the command's output (a hook for tests: it is where a Ctrl-C lands)."""
        try:
            out = chan.makefile("rb").read()
            err = chan.makefile_stderr("rb").read()
        except socket.timeout as exc:
            raise DeviceTimeout(f"command on {self._where} did not finish within {timeout:g} s",
                                hint="raise --max-seconds / --timeout, or lower --runs") from exc
        rc = chan.recv_exit_status()
        return Completed(rc, out.decode(errors="replace"), err.decode(errors="replace"))

    def _upload(self, local: Path, dest: str) -> None:
        paramiko = _paramiko()
        with map_errors({OSError: RemoteCommandError, paramiko.SSHException: ConnectError},
                        f"copying {local.name} to {self._where}:{dest}"):
            if self._sftp is None:
                self._sftp = self._client.open_sftp()
            part = f"{dest}.part-{uuid.uuid4().hex[:8]}"
            self._sftp.put(str(local), part)
            self._sftp.posix_rename(part, dest)


def _AcceptNewPolicy(known_hosts: str):  # noqa: N802 - a class factory (paramiko is imported lazily)
    paramiko = _paramiko()

    class AcceptNew(paramiko.MissingHostKeyPolicy):
        """Accept an UNKNOWN host key and append it to known_hosts (a changed key is still rejected)."""

        def missing_host_key(self, client, hostname, key):
            client.get_host_keys().add(hostname, key.get_name(), key)
            os.makedirs(os.path.dirname(os.path.abspath(known_hosts)), exist_ok=True)
            with open(known_hosts, "a") as fh:
                fh.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")

    return AcceptNew()


# --------------------------------------------------------------------------------------------------- adb
@TRANSPORTS.register("adb", description="Android (benchmark_model) or Linux boards with Python, via the adb binary")
class ADBTransport(Transport):
    """The ``adb`` binary. Honours ANDROID_SERIAL and ANDROID_ADB_SERVER_PORT (passed through the environment)."""

    kind = "adb"
    default_work_dir = "/data/local/tmp/edgekit"

    def _adb(self, *args: str, timeout: float | None = None) -> subprocess.CompletedProcess:
        adb = shutil.which(self.options.adb)
        if not adb:
            raise ConnectError(f"the adb binary ({self.options.adb}) is not installed",
                               hint="apt-get install adb, or install Android platform-tools")
        serial = self.spec.serial or os.environ.get("ANDROID_SERIAL")
        argv = [adb, *(("-s", serial) if serial else ()), *args]
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise DeviceTimeout(f"adb {args[0]} on {self.spec.name} did not finish within {timeout:g} s",
                                hint="raise --max-seconds / --timeout, or lower --runs") from exc

    def _connect(self) -> None:
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


def create(spec: DeviceSpec, options: ConnectOptions | None = None) -> Transport:
    """The transport object for ``spec`` (looked up in :data:`TRANSPORTS`)."""
    return TRANSPORTS.get(spec.transport)(spec, options)


def local_python() -> str:
    return sys.executable
