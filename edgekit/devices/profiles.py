"""Device profiles (``devices/*.yaml``) and device specs (``local``, ``ssh://user@host[:port]``, ``adb://SERIAL``).

Profile search path, first match wins:

1. every directory in ``$EDGEKIT_DEVICES_DIR`` (``os.pathsep``-separated),
2. ``./devices`` (the current directory),
3. ``~/.config/edgekit/devices``,
4. the repository's ``devices/`` beside the package (editable installs and source checkouts).

A profile is a YAML mapping; every key is optional except ``transport``::

    transport: ssh            # local | ssh | adb
    host: raspberrypi.local   # ssh: host, port (22), user, key_file, known_hosts
    serial: 1A2B3C            # adb: device serial (else $ANDROID_SERIAL)
    arch: aarch64
    threads: 4                # default --threads
    cpu_mask: "f0"            # taskset mask pinning the run to the big cores
    work_dir: ~/.cache/edgekit/bench  # default; created 0700, refused if another user owns it
    runtime: ai-edge-litert   # which interpreter the runner uses (auto: the first one importable)
    python: python3           # interpreter with numpy + a runtime; absent on Android -> benchmark_model
    benchmark_binary: /data/local/tmp/benchmark_model   # a host path is pushed, else it must exist on the device
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from .._units import MAX_THREADS
from ..errors import InvalidArgument, UnknownNameError, did_you_mean
from .device import DeviceSpec
from .transports import TRANSPORTS
from .runner import RunnerError, runtime_name

_KEYS = {"name", "description", "transport", "host", "port", "user", "key_file", "known_hosts", "serial", "arch",
         "threads", "cpu_mask", "work_dir", "python", "benchmark_binary", "connect_timeout", "runtime", "notes"}


def search_path() -> list[Path]:
    dirs = [Path(p).expanduser() for p in os.environ.get("EDGEKIT_DEVICES_DIR", "").split(os.pathsep) if p]
    dirs += [Path.cwd() / "devices", Path.home() / ".config" / "edgekit" / "devices",
             Path(__file__).resolve().parents[2] / "devices"]
    seen, out = set(), []
    for d in dirs:
        key = str(d.resolve()) if d.exists() else str(d)
        if key not in seen:
            seen.add(key)
            out.append(d)
    return out


def _profile_files() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for d in search_path():
        if d.is_dir():
            for f in sorted([*d.glob("*.yaml"), *d.glob("*.yml")]):
                found.setdefault(f.stem.lower(), f)
    return found


def list_profiles() -> list[str]:
    return sorted(_profile_files())


def load_all() -> list[tuple[str, DeviceSpec | None, InvalidArgument | None]]:
    """Every profile on the search path: (name, spec, None), or (name, None, error) for a bad one."""
    out: list[tuple[str, DeviceSpec | None, InvalidArgument | None]] = []
    for name, path in sorted(_profile_files().items()):
        try:
            out.append((name, load_profile(path, name=name), None))
        except InvalidArgument as exc:
            out.append((name, None, exc))
    return out


def load_profile(path: str | os.PathLike, name: str | None = None) -> DeviceSpec:
    """Read one profile YAML; unknown keys are rejected (they are usually typos)."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise InvalidArgument(f"cannot read device profile {path}: {exc.strerror or exc}",
                              hint="check the file's permissions") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise InvalidArgument(f"device profile {path} is not valid YAML{where}: {getattr(exc, 'problem', exc)}",
                              hint="fix the YAML syntax at that place (key: value, one per line)") from exc
    if not isinstance(data, dict):
        raise InvalidArgument(f"device profile {path} must be a YAML mapping of keys to values",
                              hint="e.g. transport: ssh / host: raspberrypi.local, one per line")
    bad = sorted(set(data) - _KEYS)
    if bad:
        sugg = [did_you_mean(str(b), _KEYS, n=1) for b in bad]
        hint = "; ".join(f"{b!r}: {s}" for b, s in zip(bad, sugg) if s) or f"known keys: {sorted(_KEYS)}"
        raise InvalidArgument(f"device profile {path}: unknown key(s) {', '.join(bad)}", hint=hint)
    transport = str(data.get("transport", "")).lower()
    if transport not in TRANSPORTS.list():
        raise InvalidArgument(f"device profile {path}: transport must be one of {', '.join(TRANSPORTS.list())}, "
                              f"got {data.get('transport')!r}", hint=f"e.g. transport: ssh in {path.name}")
    data["transport"] = transport
    data.setdefault("name", name or path.stem)
    for key, low, high in (("port", 1, None), ("threads", 1, MAX_THREADS)):
        if data.get(key) is not None:
            data[key] = _int(data[key], key, low, path, high)
    if data.get("port") is not None and data["port"] > 65535:
        raise InvalidArgument(f"device profile {path}: port must be 1-65535, got {data['port']}",
                              hint="e.g. port: 22")
    if data.get("connect_timeout") is not None:
        v = data["connect_timeout"]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
            raise InvalidArgument(f"device profile {path}: connect_timeout must be a number of seconds > 0, got "
                                  f"{v!r}", hint="e.g. connect_timeout: 10")
        data["connect_timeout"] = float(v)
    if transport == "ssh" and not data.get("host"):
        raise InvalidArgument(f"device profile {path}: an ssh profile needs host:",
                              hint="add host: (name or address of the board), e.g. host: raspberrypi.local")
    for key in ("host", "user", "serial", "python", "work_dir", "benchmark_binary", "runtime", "arch", "key_file",
                "known_hosts", "description", "notes", "name"):
        if data.get(key) is not None and not isinstance(data[key], (str, int, float)) or isinstance(data.get(key),
                                                                                                   bool):
            raise InvalidArgument(f"device profile {path}: {key} must be a single value, got {data[key]!r}",
                                  hint=f"write {key}: VALUE")
        if data.get(key) is not None:
            data[key] = str(data[key])
    if data.get("cpu_mask") is not None:
        data["cpu_mask"] = _mask(data["cpu_mask"], path)
    if data.get("runtime") is not None:
        check_runtime(data["runtime"], f"device profile {path}: runtime")
    for key in ("key_file", "known_hosts"):
        if data.get(key):
            data[key] = str(Path(str(data[key])).expanduser())
    return DeviceSpec(**{k: v for k, v in data.items()}, source=str(path))


def check_runtime(name: str, what: str = "--runtime") -> str | None:
    """A runtime name as the runner understands it (aliases: ai-edge-litert, tflite-runtime, ort); None = auto."""

    try:
        return runtime_name(str(name))
    except RunnerError as exc:
        raise InvalidArgument(f"{what}: {exc.message}", hint=exc.hint) from exc


def _int(value: Any, key: str, low: int, path: Path, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).strip().isdigit():
        raise InvalidArgument(f"device profile {path}: {key} must be a whole number, got {_short(value)}",
                              hint=f"e.g. {key}: {22 if key == 'port' else 4}")
    if len(str(value).strip()) > 12:  # int() of a 100,000-digit string is slow and then refused by Python
        raise InvalidArgument(f"device profile {path}: {key} {_short(value)} is out of range",
                              hint=f"e.g. {key}: {22 if key == 'port' else 4}")
    n = int(value)
    if n < low:
        raise InvalidArgument(f"device profile {path}: {key} must be >= {low}, got {n}",
                              hint=f"e.g. {key}: {22 if key == 'port' else 4}")
    if high is not None and n > high:
        raise InvalidArgument(f"device profile {path}: {key} must be <= {high}, got {n}",
                              hint=f"e.g. {key}: {22 if key == 'port' else 4}")
    return n


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:40] + "..." + text[-10:]


def _mask(value: Any, where: Any) -> str:
    text = format(value, "x") if isinstance(value, int) else str(value).lower().removeprefix("0x")
    if not re.fullmatch(r"[0-9a-f]+", text):
        raise InvalidArgument(f"{where}: cpu_mask must be a hex CPU mask such as 'f0', got {value!r}")
    return text


def parse_device(spec: "str | DeviceSpec") -> DeviceSpec:
    """``local`` | ``ssh://user@host[:port]`` | ``adb://[SERIAL]`` | a profile name -> :class:`DeviceSpec`."""
    if isinstance(spec, DeviceSpec):
        return spec
    text = str(spec).strip()
    if not text:
        raise InvalidArgument("empty --device", hint="use local, ssh://user@host[:port], adb://SERIAL or a profile")
    if "://" in text:
        url = urlsplit(text)
        scheme = url.scheme.lower()
        if scheme == "ssh":
            if not url.hostname:
                raise InvalidArgument(f"device {text!r} has no host", hint="e.g. ssh://pi@raspberrypi.local:22")
            try:
                port = url.port
            except ValueError as exc:
                raise InvalidArgument(f"device {text!r}: bad port (a number from 1 to 65535)",
                                      hint="e.g. ssh://pi@raspberrypi.local:22, or leave the port out for 22") from exc
            return DeviceSpec(name=text, transport="ssh", host=url.hostname, port=port or 22,
                              user=unquote(url.username) if url.username else None)
        if scheme == "adb":
            serial = unquote(text[len("adb://"):]).strip("/") or None
            return DeviceSpec(name=text, transport="adb", serial=serial)
        if scheme == "local":
            return DeviceSpec(name="local", transport="local")
        raise InvalidArgument(f"unknown device scheme {url.scheme!r} in {text!r}",
                              hint="use local, ssh://user@host[:port], adb://SERIAL or a profile name")
    files = _profile_files()
    if text.lower() in files:
        return load_profile(files[text.lower()], name=text.lower())
    if text.lower() == "local":
        return DeviceSpec(name="local", transport="local", description="this machine")
    raise UnknownNameError("device", text, {*files, "local"})  # local.yaml may also be a profile file
