"""SIGTERM and SIGHUP clean up like Ctrl-C (CI cancel, ``timeout``, ``kill``, a closed terminal).

The CLI installs :func:`handle_termination` once: the signal raises :class:`Terminated` (a KeyboardInterrupt) in
the main thread, so every ``finally`` and ``except BaseException`` cleanup runs (staging folders, temp files, the
remote run dir and the remote runner). Library code never installs handlers.
"""
from __future__ import annotations

import signal


class Terminated(KeyboardInterrupt):
    """The process got SIGTERM/SIGHUP; ``exit_code`` is 128 + the signal number, as a shell reports it."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.exit_code = 128 + signum


def _raise(signum, frame):  # noqa: ARG001 - signal handler signature
    # a second signal while cleaning up must not abort the cleanup: ignore further ones
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    raise Terminated(signum)


def handle_termination() -> None:
    """Turn SIGTERM and SIGHUP into :class:`Terminated` (main thread only; elsewhere a no-op)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) is signal.SIG_IGN and sig == signal.SIGHUP:
            continue  # started under nohup: keep ignoring hangups
        signal.signal(sig, _raise)
