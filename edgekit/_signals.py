"""SIGTERM and SIGHUP clean up like Ctrl-C (CI cancel, ``timeout``, ``kill``, a closed terminal).

The CLI installs :func:`handle_termination` once: the signal raises :class:`Terminated` (a KeyboardInterrupt) in
the main thread, so every ``finally`` and ``except BaseException`` cleanup runs (staging folders, temp files, the
remote run dir and the remote runner). Where foreign code swallows the exception (a finalizer, a C++ callback),
the signal is remembered (:func:`pending`) and the CLI still exits with 128 + signum when the command returns; a
Ctrl-C swallowed by a finalizer is delivered again the same way.
Library code never installs handlers.
"""
from __future__ import annotations

import signal
import sys

_pending: int | None = None  # the signal received, until the CLI has reported it
_redeliver = False


class Terminated(KeyboardInterrupt):
    """The process got SIGTERM/SIGHUP; ``exit_code`` is 128 + the signal number, as a shell reports it."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.exit_code = 128 + signum


def _raise(signum, frame):  # noqa: ARG001 - signal handler signature
    global _pending, _redeliver
    first = _pending is None
    _pending = signum
    if first or _redeliver:  # a second signal while cleaning up is recorded, not raised (it would cut the cleanup)
        _redeliver = False
        raise Terminated(signum)


def _unraisable(hook):
    """Terminated or a Ctrl-C KeyboardInterrupt raised inside a finalizer (``__del__``, a GC callback) is swallowed by
    Python: deliver it again (a Ctrl-C landing in one of TensorFlow's many finalizers would otherwise be ignored)."""

    def wrapped(info):
        global _pending, _redeliver
        if isinstance(info.exc_value, KeyboardInterrupt):
            import _thread
            import threading

            signum = getattr(info.exc_value, "signum", signal.SIGINT)
            if _pending is None:
                _pending = signum  # the CLI still exits 128 + signum if the command returns first
            _redeliver = True  # once the finalizer is over (a signal handled inside this hook would be lost too)
            threading.Timer(0.05, _thread.interrupt_main, args=(signum,)).start()
            return
        hook(info)

    return wrapped


def pending() -> int | None:
    """The SIGTERM/SIGHUP received so far, or a SIGINT whose KeyboardInterrupt a finalizer swallowed, or None."""
    return _pending


def clear() -> None:
    """Forget a reported signal (the CLI after printing it; in-process test runners invoke the CLI again)."""
    global _pending, _redeliver
    _pending, _redeliver = None, False


def handle_termination() -> None:
    """Turn SIGTERM and SIGHUP into :class:`Terminated` (main thread only; elsewhere a no-op)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) is signal.SIG_IGN and sig == signal.SIGHUP:
            continue  # started under nohup: keep ignoring hangups
        signal.signal(sig, _raise)
    if not getattr(sys.unraisablehook, "_edgekit", False):
        sys.unraisablehook = _unraisable(sys.unraisablehook)
        sys.unraisablehook._edgekit = True  # type: ignore[attr-defined]
