"""Transports: how edgekit reaches a device, one module each: ``local`` (subprocess), ``ssh`` (paramiko), ``adb``
(the adb binary), and :class:`MockTransport` for tests. Foreign errors are translated in each module."""
from __future__ import annotations

from .adb import ADBTransport
from .base import DEFAULT_WORK_DIR, TRANSPORTS, Completed, ConnectOptions, Transport, create, sha256_file
from .local import LocalTransport
from .mock import MockRequest, MockTransport
from .ssh import SSHTransport

__all__ = ["TRANSPORTS", "Transport", "Completed", "ConnectOptions", "create", "sha256_file", "LocalTransport",
           "SSHTransport", "ADBTransport", "MockTransport", "MockRequest", "DEFAULT_WORK_DIR"]
