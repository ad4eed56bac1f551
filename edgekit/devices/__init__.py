"""On-device latency: a self-contained runner (``runner.py``) driven locally, over SSH (paramiko) or adb.

``bench(artifacts, devices, ...) -> list[BenchResult]``; devices are ``local``, ``ssh://user@host[:port]``,
``adb://SERIAL`` or profile names from ``devices/*.yaml`` (search path: :func:`profiles.search_path`).
``compare(a, b, device=...)`` runs two artifacts interleaved and says whether the difference is real;
``history.load(...)`` reads the recorded results with regression flags.
"""
from __future__ import annotations

from .artifacts import ArtifactInfo, artifact_info
from .bench import BenchResult, bench, status_of
from .check import CheckReport, check
from .compare import Comparison, compare
from .profiles import DeviceSpec, list_profiles, load_profile, parse_device, search_path
from .protocol import RUNNER
from .transports import TRANSPORTS, ConnectOptions, MockTransport, Transport, create

#: the public names: what edgekit/__init__.py and the CLI use (the others are importable, not public API)
__all__ = ["bench", "BenchResult", "compare", "Comparison", "check", "parse_device", "list_profiles", "search_path"]
