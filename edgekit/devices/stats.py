"""Statistics you can act on: bootstrap 95% intervals, drift, A/B ratios with a verdict in words, system state.

Bootstrap: percentile intervals over ``n_boot`` resamples of the runs (seeded: the same runs give the same
interval). Runs that come in blocks (``compare``'s interleaved rounds) are resampled a block at a time: runs of one
block share the load of their moment, so they are not independent draws. A ratio of two interleaved series comes
from the paired blocks (:func:`paired_ratio_ci`: the per-round ratios of block medians, a t interval on their
logs): load that slows a round slows its A and its B block alike and cancels in the ratio, while load that hits
one block and not the other widens the interval instead of faking a difference. Two series that were not timed
together (one artifact on two devices) fall back to :func:`ratio_ci`, which resamples both independently.
A difference is reported only when the interval excludes 1 AND the ratio is at least ``min_effect`` away from 1
(smaller gaps are below what run-to-run noise on a real device lets one trust).
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

N_BOOT = 2000
CONF = 0.95
#: a ratio closer to 1 than this is 'no significant difference' even when its interval excludes 1: two interpreters
#: of one byte-identical file in one process differ by a stable 2-3 % (buffer placement; 20 compares under load,
#: tests/test_compare_under_load.py), so a smaller gap says nothing about the models
MIN_EFFECT = 0.05
#: drift: last third vs first third of the runs, flagged beyond this relative change (and outside the CI)
DRIFT_LIMIT = 0.05


def _resampled(x: np.ndarray, stat: Callable, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    out = np.empty(n_boot)
    step = max(1, 2_000_000 // max(1, len(x)))  # bound the index matrix to ~16 MB
    for i in range(0, n_boot, step):
        k = min(step, n_boot - i)
        idx = rng.integers(0, len(x), size=(k, len(x)))
        out[i:i + k] = stat(x[idx], axis=1)
    return out


def bootstrap_ci(samples: Sequence[float], stat: str = "median", *, n_boot: int = N_BOOT, conf: float = CONF,
                 seed: int = 0) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the median or mean (None for fewer than 3 runs)."""
    x = np.asarray(samples, np.float64)
    if len(x) < 3:
        return None
    fn = np.median if stat == "median" else np.mean
    boots = _resampled(x, fn, n_boot, np.random.default_rng(seed))
    a = (1 - conf) / 2
    lo, hi = np.quantile(boots, [a, 1 - a])
    return float(lo), float(hi)


def ratio_ci(a: Sequence[float], b: Sequence[float], *, stat: str = "median", n_boot: int = N_BOOT,
             conf: float = CONF, seed: int = 0) -> tuple[float, float, float] | None:
    """``stat(a) / stat(b)`` and its bootstrap interval (None when either has fewer than 3 runs)."""
    xa, xb = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(xa) < 3 or len(xb) < 3:
        return None
    fn = np.median if stat == "median" else np.mean
    rng = np.random.default_rng(seed)
    ra = _resampled(xa, fn, n_boot, rng) / _resampled(xb, fn, n_boot, rng)
    al = (1 - conf) / 2
    lo, hi = np.quantile(ra, [al, 1 - al])
    return float(fn(xa) / fn(xb)), float(lo), float(hi)


def block_bootstrap_ci(blocks: Sequence[Sequence[float]], stat: str = "median", *, n_boot: int = N_BOOT,
                       conf: float = CONF, seed: int = 0) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the median or mean of runs that come in ``blocks`` (whole blocks are
    resampled; None for fewer than 3 blocks)."""
    bl = [np.asarray(b, np.float64) for b in blocks if len(b)]
    if len(bl) < 3:
        return None
    fn = np.median if stat == "median" else np.mean
    rng = np.random.default_rng(seed)
    boots = np.empty(n_boot)
    for i in range(n_boot):
        boots[i] = fn(np.concatenate([bl[j] for j in rng.integers(0, len(bl), len(bl))]))
    a = (1 - conf) / 2
    lo, hi = np.quantile(boots, [a, 1 - a])
    return float(lo), float(hi)


def t_quantile(p: float, df: int) -> float:
    """Student's t quantile (bisection on the CDF, integrated numerically: no scipy on this path)."""
    import math

    c = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)

    def cdf(x: float) -> float:  # symmetric: 0.5 + integral of the density over [0, x] (Simpson, 4001 points)
        t = np.linspace(0.0, abs(x), 4001)
        f = c * (1 + t * t / df) ** (-(df + 1) / 2)
        h = t[1] - t[0]
        area = h / 3 * (f[0] + f[-1] + 4 * f[1:-1:2].sum() + 2 * f[2:-1:2].sum())
        return 0.5 + math.copysign(area, x)

    lo, hi = -1e3, 1e3
    for _ in range(80):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cdf(mid) < p else (lo, mid)
    return (lo + hi) / 2


def paired_ratio_ci(a_blocks: Sequence[float], b_blocks: Sequence[float], *, conf: float = CONF
                    ) -> tuple[float, float, float] | None:
    """A/B time ratio from paired blocks (``a_blocks[i]``, ``b_blocks[i]``: each model's block median in round i):
    the geometric mean of the per-round ratios and a t interval on their logs (None for fewer than 3 rounds)."""
    a, b = np.asarray(a_blocks, np.float64), np.asarray(b_blocks, np.float64)
    ok = (a > 0) & (b > 0) & np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    k = min(len(a), len(b))
    if k < 3:
        return None
    lr = np.log(a[:k] / b[:k])
    m, s = float(lr.mean()), float(lr.std(ddof=1))
    h = t_quantile(1 - (1 - conf) / 2, k - 1) * s / np.sqrt(k)
    return float(np.exp(m)), float(np.exp(m - h)), float(np.exp(m + h))


def drift(samples: Sequence[float], *, seed: int = 0) -> dict[str, Any] | None:
    """First third vs last third of the runs (thermal throttling, a background job): median ratio + interval."""
    x = np.asarray(samples, np.float64)
    if len(x) < 9:
        return None
    k = len(x) // 3
    r = ratio_ci(x[-k:], x[:k], seed=seed)
    assert r is not None
    ratio, lo, hi = r
    flagged = (lo > 1 or hi < 1) and abs(ratio - 1) >= DRIFT_LIMIT
    return {"last_vs_first": ratio, "ci": [lo, hi], "flagged": bool(flagged),
            "first_median_ms": float(np.median(x[:k])), "last_median_ms": float(np.median(x[-k:]))}


def verdict(ratio: float, lo: float, hi: float, a: str = "A", b: str = "B", *, min_effect: float = MIN_EFFECT) -> str:
    """Words for a time ratio ``a/b`` with its interval, e.g. "B is 1.83x faster than A (1.78-1.88)"."""
    if lo <= 1 <= hi or abs(ratio - 1) < min_effect:
        why = "interval includes 1" if lo <= 1 <= hi else f"difference under {min_effect:.0%}"
        return f"no significant difference ({a}/{b} time ratio {ratio:.3f}, 95% CI {lo:.3f}-{hi:.3f}; {why})"
    if ratio > 1:  # a takes longer: b is faster
        return f"{b} is {ratio:.2f}x faster than {a} ({_span(lo, hi)})"
    return f"{a} is {1 / ratio:.2f}x faster than {b} ({_span(1 / hi, 1 / lo)})"


def _span(lo: float, hi: float) -> str:
    """``1.78-1.88``, with more decimals when two would print the same number twice."""
    for nd in (2, 3, 4):
        if f"{lo:.{nd}f}" != f"{hi:.{nd}f}":
            break
    return f"{lo:.{nd}f}-{hi:.{nd}f}"


# ------------------------------------------------------------------------------------------ system state
def system_warnings(before: dict | None, after: dict | None, cpus_used: Sequence[int] | None = None) -> list[str]:
    """Warnings from the runner's system state before/after the timed runs (Linux sysfs; absent keys: silent)."""
    if not before or not after:
        return []
    warn: list[str] = []
    cpus = before.get("cpus") or {}
    used = [str(c) for c in cpus_used] if cpus_used else list(cpus)
    govs = sorted({cpus[c]["governor"] for c in used if c in cpus and cpus[c].get("governor")})
    if govs and govs != ["performance"]:
        warn.append(f"CPU governor is {'/'.join(govs)}, not performance: frequency scaling adds noise (echo "
                    "performance | sudo tee /sys/devices/system/cpu/cpu*/cpufreq/scaling_governor)")
    a_cpus = after.get("cpus") or {}
    changed = []
    for c in used:
        f0, f1 = (cpus.get(c) or {}).get("freq_mhz"), (a_cpus.get(c) or {}).get("freq_mhz")
        if f0 and f1 and abs(f1 - f0) / f0 > 0.05:
            changed.append(f"cpu{c} {f0:.0f}->{f1:.0f} MHz")
        g0, g1 = (cpus.get(c) or {}).get("governor"), (a_cpus.get(c) or {}).get("governor")
        if g0 and g1 and g0 != g1:
            changed.append(f"cpu{c} governor {g0}->{g1}")
    if changed:
        warn.append("CPU state changed during the run (" + ", ".join(changed[:4]) + (" ..." if len(changed) > 4
                                                                                      else "") + ")")
    t0, t1 = before.get("thermal_c") or {}, after.get("thermal_c") or {}
    hot = [f"{z} {t0[z]:.0f}->{t1[z]:.0f} C" for z in t0 if z in t1 and t1[z] - t0[z] >= 5]
    if hot:
        warn.append("temperature rose during the run (" + ", ".join(hot[:3]) + "): throttling may have slowed it")
    elif t1 and max(t1.values()) >= 80:
        warn.append(f"device is hot ({max(t1.values()):.0f} C): throttling likely")
    la = before.get("loadavg")
    ncpu = len(cpus) or None
    if la and ncpu and la[0] > 0.5 * ncpu + 0.5:
        warn.append(f"device was busy before the run (load average {la[0]:.2f} on {ncpu} CPUs)")
    return warn
