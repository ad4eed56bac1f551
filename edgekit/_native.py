"""Native (C++) log lines written straight to file descriptor 2, kept off the user's terminal. TensorFlow-free."""
from __future__ import annotations

import contextlib
import os
import sys


@contextlib.contextmanager
def quiet_native_logs():
    """Silence C++ log lines written straight to fd 2 (TF 2.21 prints oneDNN/CUDA notes at import even with
    TF_CPP_MIN_LOG_LEVEL set, because absl is not initialised yet; LiteRT prints "INFO: Created TensorFlow Lite
    XNNPACK delegate for CPU." when it applies its default delegate). ``EDGEKIT_TF_LOGS=1`` keeps them."""
    if os.environ.get("EDGEKIT_TF_LOGS") == "1":
        yield
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
