"""The one exception tree of edgekit, and the boundary helper that translates foreign errors into it.

Every error edgekit raises derives from :class:`EdgekitError`. Errors caused by the caller's input derive from
:class:`InvalidArgument` (the CLI exits with code 2 for those, 1 for the rest). Third-party errors (paramiko,
adb, the TF converter, tf2onnx) are translated at the boundary with :func:`map_errors`, httpx style.
"""
from __future__ import annotations

import contextlib
import difflib
from typing import Iterable, Iterator, Mapping


def did_you_mean(name: str, known: Iterable[str], n: int = 3) -> str | None:
    """``"did you mean 'a' or 'b'?"`` for the names in ``known`` closest to ``name`` (case-insensitive), or None."""
    by_lower: dict[str, str] = {}
    for k in known:
        by_lower.setdefault(str(k).lower(), str(k))
    close = [by_lower[c] for c in difflib.get_close_matches(str(name).lower(), list(by_lower), n=n, cutoff=0.5)]
    if not close:
        return None
    quoted = [repr(c) for c in close]
    return f"did you mean {' or '.join(quoted) if len(quoted) < 3 else ', '.join(quoted[:-1]) + ' or ' + quoted[-1]}?"


class EdgekitError(Exception):
    """Base of every edgekit error. ``hint`` says what to do about it."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class InvalidArgument(EdgekitError, ValueError):
    """The caller passed something edgekit cannot use (bad option, unknown name, unreadable file)."""

    exit_code = 2


class UnknownNameError(InvalidArgument, KeyError):
    """A registry lookup failed; carries the closest known names."""

    def __init__(self, kind: str, name: str, known: Iterable[str]):
        known = sorted(known)
        self.kind, self.name, self.known = kind, name, known
        super().__init__(f"unknown {kind} {name!r}", hint=did_you_mean(name, known)
                         or f"known: {', '.join(known[:12])}" + (" ..." if len(known) > 12 else ""))

    __str__ = EdgekitError.__str__


class MissingDependency(EdgekitError, ImportError):
    """An optional dependency is not installed; the message names the extra that provides it."""

    def __init__(self, package: str, extra: str | None = None, *, purpose: str = ""):
        fix = f"pip install 'edgekit[{extra}]'" if extra else f"pip install {package}"
        what = f" (needed {purpose})" if purpose else ""
        super().__init__(f"{package} is not installed{what}", hint=f"install it with: {fix}")


class ModelLoadError(InvalidArgument):
    """A model file could not be read."""


class WeightsUnavailable(EdgekitError):
    """Pretrained weights could not be obtained (e.g. offline)."""


class DataError(InvalidArgument):
    """Calibration, training or evaluation data is missing, empty, undecodable or of the wrong shape."""


class ExportError(EdgekitError):
    """A converter failed."""


class VerificationError(ExportError):
    """An exported artifact does not match the Keras model within the precision's thresholds."""


class InferenceError(EdgekitError):
    """A host runtime (LiteRT, onnxruntime) loaded a model but failed while running it."""


class BudgetNotMet(EdgekitError):
    """A budget is not met: no rung of the int8 doctor's ladder is within ``max_drop`` (``result``: the DoctorResult,
    what was tried), or no sweep point within the latency budget on some device (``result``: the SweepResult)."""

    def __init__(self, message: str, *, hint: str | None = None, result=None):
        super().__init__(message, hint=hint)
        self.result = result


class CompressionError(EdgekitError):
    """A compression stage failed."""


class PipelineError(InvalidArgument):
    """A compression pipeline or recipe is invalid; raised before any training."""


class DeviceError(EdgekitError):
    """Talking to a device failed."""


class ConnectError(DeviceError):
    """The device could not be reached."""


class DeviceTimeout(ConnectError):
    """The device did not answer in time."""


class AuthError(DeviceError):
    """The device refused our credentials."""


class HostKeyError(DeviceError):
    """The device's host key is unknown or does not match known_hosts."""


class RemoteCommandError(DeviceError):
    """A command on the device failed."""


class RuntimeMissing(DeviceError):
    """No usable interpreter (LiteRT, tflite-runtime, onnxruntime) where the model must run."""


class EdgekitWarning(UserWarning):
    """A loud warning from edgekit (e.g. calibration on synthetic data). The CLI always shows these."""


@contextlib.contextmanager
def map_errors(mapping: Mapping[type[BaseException], type[EdgekitError]], message: str = "", *,
               hint: str | None = None, origin: tuple[str, ...] | None = None) -> Iterator[None]:
    """Translate foreign exceptions raised inside the block into edgekit errors.

    ``mapping`` maps a foreign exception type to the :class:`EdgekitError` subclass to raise; the first matching
    entry wins. The original exception is chained as ``__cause__``. With ``origin`` (top-level package names, e.g.
    ``("tensorflow",)``) an exception is mapped only when the innermost frame that raised it belongs to one of those
    packages: a generic ``ValueError`` from the converter is translated, the same type raised by edgekit's own code
    (a bug) is not.
    """
    try:
        yield
    except EdgekitError:
        raise
    except BaseException as exc:  # noqa: BLE001 - we re-raise everything we do not map
        if origin is None or raised_in(exc, origin):
            for foreign, ours in mapping.items():
                if isinstance(exc, foreign):
                    detail = str(exc).strip().splitlines()
                    detail = detail[-1] if detail else type(exc).__name__
                    text = f"{message}: {detail}" if message else detail
                    raise ours(text, hint=hint) from exc
        raise


def raised_in(exc: BaseException, packages: tuple[str, ...]) -> bool:
    """True when the innermost Python frame of ``exc``'s traceback belongs to one of ``packages`` (module names).

    Exceptions from C extensions count for the Python module that called into them."""
    tb, module = exc.__traceback__, None
    while tb is not None:
        module = tb.tb_frame.f_globals.get("__name__", "")
        tb = tb.tb_next
    return bool(module) and any(module == p or module.startswith(p + ".") for p in packages)
