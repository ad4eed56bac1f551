"""DeviceSpec: where and how to run (a resolved profile or URL); what the transports connect to."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .._jsonable import JsonMixin


@dataclass
class DeviceSpec(JsonMixin):
    """Where and how to run: a resolved profile or URL. ``name`` is what the results call the device."""

    name: str
    transport: str = "local"
    host: str | None = None
    port: int | None = None
    user: str | None = None
    key_file: str | None = None
    known_hosts: str | None = None
    serial: str | None = None
    arch: str | None = None
    threads: int | None = None
    cpu_mask: str | None = None
    work_dir: str | None = None
    python: str | None = None
    benchmark_binary: str | None = None
    connect_timeout: float | None = None
    runtime: str | None = None
    description: str = ""
    notes: str = ""
    source: str | None = None  # the profile file, if any
    extra: dict[str, Any] = field(default_factory=dict)

    def replace(self, **changes: Any) -> "DeviceSpec":
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    @property
    def uses_runner(self) -> bool:
        """True when the device runs the Python runner; False for adb devices without Python (benchmark_model)."""
        return self.transport != "adb" or bool(self.python)
