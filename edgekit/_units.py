"""One size convention for everything edgekit prints or records: binary units named as such (KiB = 1024 bytes,
MiB = 2**20 bytes, GiB = 2**30). JSON fields ending in ``_mb`` hold MiB too (file sizes and memory alike)."""
from __future__ import annotations

KIB = 1024
MIB = 1024 ** 2
GIB = 1024 ** 3


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
