"""One size convention for everything edgekit prints or records: results and JSON hold bytes (``*_bytes``, int; file
sizes and memory alike); tables show binary units named as such (KiB = 1024 bytes, MiB = 2**20, GiB = 2**30) and a
field that holds MiB for display is named ``*_mib``. Accuracy is a fraction 0..1 in results and JSON (tables may print
percent); latency fields are ``<stat>_ms`` (``p50_ms``, ``mean_ms``, ``p50_ci_ms``)."""
from __future__ import annotations

KIB = 1024
MIB = 1024 ** 2
GIB = 1024 ** 3
#: the most interpreter threads edgekit asks for (bench, compare, export and doctor verification, device profiles):
#: more cores than phones and boards have; beyond it runners crashed (100,000 segfaulted) or ran for minutes
MAX_THREADS = 64
THREADS_HINT = "use the machine's core count or fewer (e.g. --threads 4), or leave --threads out"


def kib(n: float) -> float:
    return n / KIB


def mib(n: float) -> float:
    return n / MIB


def human(n: float) -> str:
    """``512 B``, ``812.3 KiB``, ``4.2 MiB``, ``1.1 GiB``."""
    if n >= GIB:
        return f"{n / GIB:.1f} GiB"
    if n >= MIB:
        return f"{n / MIB:.1f} MiB"
    if n >= KIB:
        return f"{n / KIB:.1f} KiB"
    return f"{int(n)} B"
