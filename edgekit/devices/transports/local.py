"""``local``: this machine, the runner in a subprocess (same protocol as a remote device, no copies)."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from ...errors import ConnectError, DeviceTimeout
from ..device import DeviceSpec
from .base import TRANSPORTS, Completed, ConnectOptions, Transport


@TRANSPORTS.register("local", description="this machine, through a subprocess running the same runner")
class LocalTransport(Transport):
    """This machine. Files are used in place (no copies); commands run through ``/bin/sh``."""

    kind = "local"

    def __init__(self, spec: DeviceSpec, options: ConnectOptions | None = None):
        super().__init__(spec, options)
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

    def _download(self, remote: str, local: Path) -> None:
        shutil.copyfile(remote, local)
