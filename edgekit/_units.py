"""One size convention for everything edgekit prints or records: binary units named as such (KiB = 1024 bytes,
MiB = 2**20 bytes, GiB = 2**30). JSON fields ending in ``_mb`` hold MiB too (file sizes and memory alike)."""
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
