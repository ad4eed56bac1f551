"""The sweep's three PNGs (matplotlib's object API, no pyplot state, so it is safe to call from any thread):

- ``accuracy_vs_latency.png``: per device, accuracy against measured latency; the Pareto front as a step line,
  the budget and the pick.
- ``accuracy_vs_mult_adds.png``: accuracy against mult-adds on a log axis with the fitted log-linear line and R²
  per family and precision (the MobileNet paper's Figure 4 on the user's data).
- ``latency_vs_mult_adds.png``: per device, measured latency against mult-adds (log-log) with the fitted latency
  model; points far from it (more than the outlier factor either way) are ringed and labelled with the ratio.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np

from .._io import atomic_path
from .analysis import OUTLIER_FACTOR, by_device, latency

_COLORS = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:gray"]
_MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]


def short_label(row, formats: int = 1) -> str:
    """``0.5/48 int8``: the point's grid values, its precision (and format when several are swept)."""
    vals = "/".join(_fmt(v) for k, v in row.options.items() if k != "model")
    fam = row.options.get("model")
    text = " ".join(t for t in (fam, vals, row.precision) if t)
    return text + (f" {row.format}" if formats > 1 else "")


def _fmt(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _styles(rows) -> tuple[dict[str, str], dict[str, str]]:
    precisions = sorted({r.precision for r in rows})
    families = sorted({r.model for r in rows})
    return ({p: _COLORS[i % len(_COLORS)] for i, p in enumerate(precisions)},
            {f: _MARKERS[i % len(_MARKERS)] for i, f in enumerate(families)})


def _device_title(rows) -> str:
    dev = rows[0].device
    return f"{dev} (EMULATED: not the real device's speed)" if any(r.emulated for r in rows) else dev


def _grid(n: int):
    from matplotlib.figure import Figure

    cols = 1 if n == 1 else 2
    nrows = math.ceil(n / cols)
    fig = Figure(figsize=(6.4 * cols, 4.8 * nrows), dpi=110)
    axes = [fig.add_subplot(nrows, cols, i + 1) for i in range(n)]
    return fig, axes


def _save(fig, dest: Path) -> Path:
    with atomic_path(dest) as tmp:
        fig.savefig(tmp, format="png")
    return dest


def _legend(ax, colors, markers, loc: str = "lower right") -> None:
    """One legend: the lines already drawn (front, budget, fit, pick), then a colour per precision and a marker per
    family."""
    from matplotlib.lines import Line2D

    handles, _ = ax.get_legend_handles_labels()
    handles += [Line2D([], [], color=c, marker="o", linestyle="", label=p) for p, c in colors.items()]
    if len(markers) > 1:
        handles += [Line2D([], [], color="black", marker=m, linestyle="", label=f) for f, m in markers.items()]
    ax.legend(handles=handles, fontsize=7, loc=loc)


def _plain_ticks(ax) -> None:
    """Log axes labelled 0.3, 1, 3 (not 3x10^-1)."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    fmt = FuncFormatter(lambda v, _: f"{v:g}")
    for axis in (ax.xaxis, ax.yaxis):
        if axis.get_scale() == "log":
            axis.set_major_formatter(fmt)
            axis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
            axis.set_minor_formatter(fmt)
            axis.set_tick_params(which="minor", labelsize=6.5)


def _log_if_wide(ax, values: Sequence[float], axis: str = "x") -> None:
    vals = [v for v in values if v and v > 0]
    if vals and max(vals) / min(vals) > 8:
        (ax.set_xscale if axis == "x" else ax.set_yscale)("log")


def accuracy_vs_latency(result, dest: Path) -> Path:
    metric, rows = result.metric, result.rows
    devices = by_device(rows)
    colors, markers = _styles(rows)
    formats = len({r.format for r in rows})
    fig, axes = _grid(max(1, len(devices)))
    picks = {p.device: p for p in result.picks}
    for ax, (device, dev_rows) in zip(axes, devices.items()):
        ok = [r for r in dev_rows if r.status == "ok" and r.accuracy is not None and latency(r, metric)]
        for r in ok:   # a point at chance is drawn hollow: measured, but it learned nothing
            paint = ({"facecolors": "none", "edgecolors": colors[r.precision]} if r.above_chance is False else
                     {"color": colors[r.precision]})
            ax.scatter(latency(r, metric), 100 * r.accuracy, marker=markers[r.model], s=30, zorder=3, alpha=0.9,
                       **paint)
        if result.chance is not None and result.chance.min_accuracy is not None:
            ax.axhline(100 * result.chance.min_accuracy, color="grey", linestyle=":", linewidth=1,
                       label=f"above chance from {100 * result.chance.min_accuracy:.1f}%")
        front = sorted((r for r in ok if r.pareto), key=lambda r: latency(r, metric))
        if front:
            ax.plot([latency(r, metric) for r in front], [100 * r.accuracy for r in front], color="black",
                    linewidth=1.2, drawstyle="steps-post", zorder=2, label="Pareto front")
            for r in front:
                ax.annotate(short_label(r, formats), (latency(r, metric), 100 * r.accuracy), fontsize=6.5,
                            textcoords="offset points", xytext=(4, -9))
        if result.budget_ms is not None:
            ax.axvline(result.budget_ms, color="tab:red", linestyle="--", linewidth=1,
                       label=f"budget {result.budget_ms:g} ms")
            p = picks.get(device)
            chosen = [r for r in ok if r.pick]
            if p is not None and chosen:
                r = chosen[0]
                ax.scatter(latency(r, metric), 100 * r.accuracy, s=220, facecolors="none", edgecolors="tab:red",
                           linewidths=1.8, zorder=4, label="pick")
        _log_if_wide(ax, [latency(r, metric) for r in ok] + ([result.budget_ms] if result.budget_ms else []))
        _plain_ticks(ax)
        ax.set_xlabel(f"measured latency {metric} (ms)")
        ax.set_ylabel("test accuracy of the artifact (%)")
        ax.set_title(_device_title(dev_rows), fontsize=9)
        ax.grid(True, alpha=0.3, which="both")
        if not ok:
            ax.text(0.5, 0.5, "no successful measurement", ha="center", transform=ax.transAxes)
        _legend(ax, colors, markers)
    fig.suptitle("accuracy vs measured latency (front: no other point is both faster and more accurate)",
                 fontsize=10)
    fig.tight_layout()
    return _save(fig, dest)


def accuracy_vs_mult_adds(result, dest: Path) -> Path:
    from matplotlib.figure import Figure

    colors, markers = _styles(result.rows)
    fig = Figure(figsize=(7.5, 5.2), dpi=110)
    ax = fig.add_subplot(1, 1, 1)
    xs = []
    for fit in result.accuracy_fits:
        if not fit.points:
            continue
        x = np.array([p[0] for p in fit.points]) / 1e6
        y = np.array([p[1] for p in fit.points]) * 100
        xs.extend(x)
        color, marker = colors.get(fit.precision, "black"), markers.get(fit.model, "o")
        label = f"{fit.model} {fit.precision}"
        if fit.r2 is not None:
            grid = np.logspace(np.log10(x.min()), np.log10(x.max()), 50)
            ax.plot(grid, [100 * fit.predict(g * 1e6) for g in grid], color=color, linewidth=1.2)
            label += f": R²={fit.r2:.3f}, {100 * fit.slope:+.2f} pts/decade"
        else:
            label += f" ({fit.note})"
        ax.scatter(x, y, color=color, marker=marker, s=30, zorder=3, label=label)
    ax.set_xscale("log")
    _plain_ticks(ax)
    ax.set_xlabel("mult-adds (millions, log scale)")
    ax.set_ylabel("test accuracy of the artifact (%)")
    ax.set_title("accuracy vs mult-adds with the log-linear fit (MobileNet paper, Figure 4)", fontsize=10)
    ax.grid(True, alpha=0.3, which="both")
    if xs:
        ax.legend(fontsize=7, loc="lower right")
    else:
        ax.text(0.5, 0.5, "no point with an accuracy yet", ha="center", transform=ax.transAxes)
    fig.tight_layout()
    return _save(fig, dest)


def latency_vs_mult_adds(result, dest: Path) -> Path:
    metric, rows = result.metric, result.rows
    devices = by_device(rows)
    colors, markers = _styles(rows)
    formats = len({r.format for r in rows})
    fits = {f.device: f for f in result.latency_fits}
    fig, axes = _grid(max(1, len(devices)))
    for ax, (device, dev_rows) in zip(axes, devices.items()):
        ok = [r for r in dev_rows if r.status == "ok" and r.mult_adds and latency(r, metric)]
        for r in ok:
            ax.scatter(r.mult_adds / 1e6, latency(r, metric), color=colors[r.precision], marker=markers[r.model],
                       s=30, zorder=3)
            if r.latency_outlier:
                ax.scatter(r.mult_adds / 1e6, latency(r, metric), s=200, facecolors="none", edgecolors="red",
                           linewidths=1.5, zorder=4)
                ax.annotate(f"{short_label(r, formats)} x{r.latency_ratio:.2g}", (r.mult_adds / 1e6, latency(r, metric)),
                            fontsize=6.5, color="red", textcoords="offset points", xytext=(5, 5))
        fit = fits.get(device)
        title = _device_title(dev_rows)
        if fit is not None and fit.overhead_ms is not None and ok:
            x = np.array([r.mult_adds for r in ok], dtype=float)
            grid = np.logspace(np.log10(x.min()), np.log10(x.max()), 50)
            ax.plot(grid / 1e6, [fit.predict(g) for g in grid], color="black", linewidth=1,
                    label=f"fit: {fit.overhead_ms:.3g} ms + MACs / "
                          f"({'inf' if not fit.gmacs else f'{fit.gmacs:.3g}'} GMAC/s)")
            title += f" - R²(log) {fit.r2_log:.2f}" if fit.r2_log is not None else ""
            if fit.ratios:
                text = "measured / fit:\n" + "\n".join(f"{k} x{v:.2g}" for k, v in fit.ratios.items())
                ax.text(0.98, 0.03, text, ha="right", va="bottom", fontsize=7, transform=ax.transAxes)
        elif fit is not None and fit.note:
            ax.text(0.5, 0.9, fit.note, ha="center", transform=ax.transAxes, fontsize=7)
        _legend(ax, colors, markers, loc="upper left")
        if ok:
            ax.set_xscale("log")
            ax.set_yscale("log")
            _plain_ticks(ax)
        ax.set_xlabel("mult-adds (millions)")
        ax.set_ylabel(f"latency {metric} (ms)")
        ax.set_title(title, fontsize=9)
        ax.grid(True, alpha=0.3, which="both")
    fig.suptitle(f"latency vs mult-adds; ringed: more than {OUTLIER_FACTOR:g}x off the fit", fontsize=10)
    fig.tight_layout()
    return _save(fig, dest)


PLOTS = {"accuracy_vs_latency": accuracy_vs_latency, "accuracy_vs_mult_adds": accuracy_vs_mult_adds,
         "latency_vs_mult_adds": latency_vs_mult_adds}


def write_plots(result, folder: Path) -> dict[str, str]:
    """All three PNGs into ``folder``; returns {name: path}. ImportError when matplotlib is missing."""
    import matplotlib  # noqa: F401 - raises ImportError early, before any file is touched

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return {name: str(fn(result, folder / f"{name}.png")) for name, fn in PLOTS.items()}
