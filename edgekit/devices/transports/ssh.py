"""``ssh``: Linux boards (Raspberry Pi) over SSH with paramiko; key auth, host keys checked against known_hosts."""
from __future__ import annotations

import os
import socket
import time
import uuid
from pathlib import Path

from ...errors import (AuthError, ConnectError, DeviceTimeout, HostKeyError, InvalidArgument, MissingDependency,
                       RemoteCommandError, map_errors)
from ..device import DeviceSpec
from .base import TRANSPORTS, Completed, ConnectOptions, Transport


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

    def _download(self, remote: str, local: Path) -> None:
        paramiko = _paramiko()
        with map_errors({OSError: RemoteCommandError, paramiko.SSHException: ConnectError},
                        f"copying {self._where}:{remote} back"):
            if self._sftp is None:
                self._sftp = self._client.open_sftp()
            self._sftp.get(remote, str(local))


def _AcceptNewPolicy(known_hosts: str):  # noqa: N802 - a class factory (paramiko is imported lazily)
    paramiko = _paramiko()

    class AcceptNew(paramiko.MissingHostKeyPolicy):
        """Accept an UNKNOWN host key and append it to known_hosts (a changed key is still rejected)."""

        def missing_host_key(self, client, hostname, key):
            client.get_host_keys().add(hostname, key.get_name(), key)
            # a folder edgekit creates is private (~/.ssh must be, for OpenSSH); an existing one is left as it is
            os.makedirs(os.path.dirname(os.path.abspath(known_hosts)), mode=0o700, exist_ok=True)
            with open(known_hosts, "a") as fh:
                fh.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")

    return AcceptNew()
