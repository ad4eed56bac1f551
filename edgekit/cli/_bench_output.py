"""Tables and CSV for bench/compare results (rows, parity per output, slowest ops, warnings and hints)."""
from __future__ import annotations

import csv
import io

from .._units import mib
from ._output import err, out, plain


def _fmt(v, nd=2):
    return "-" if v is None else f"{v:.{nd}f}"


def _mib(n):
    """Bytes as MiB for a table cell (results hold bytes)."""
    return None if n is None else mib(n)


COLUMNS = ["model", "format", "precision", "size_bytes", "device", "cpu", "runtime", "threads", "p50_ms", "p90_ms",
           "mean_ms", "std_ms", "fps", "peak_memory_bytes", "status"]


def render_results(results) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="edgekit bench", show_lines=False)
    for col in ("model", "format", "precision", "size MiB", "device", "cpu", "runtime", "threads", "p50 ms",
                "p50 95% CI", "p90 ms", "mean±std ms", "FPS", "peak MiB", "parity", "status"):
        table.add_column(col, justify="right" if col.endswith(("MiB", "ms", "FPS", "threads")) else "left")
    for r in results:
        runtime = f"{r.runtime} {r.runtime_version}" if r.runtime and r.runtime_version else (r.runtime or "-")
        status = "[green]ok[/]" if r.ok else f"[red]{r.status}[/]: {escape(str(r.error))}"
        mean = "-" if r.mean_ms is None else f"{r.mean_ms:.3f}±{_fmt(r.std_ms, 3)}"
        peak = r.peak_memory_bytes if r.peak_memory_bytes is not None else r.memory_delta_bytes
        ci = "-" if not r.p50_ci_ms else f"{r.p50_ci_ms[0]:.3f}-{r.p50_ci_ms[1]:.3f}"
        table.add_row(plain(r.model), r.format, plain(r.precision), _fmt(_mib(r.size_bytes), 3), plain(r.device),
                      plain(r.cpu or "-"), plain(runtime),
                      "-" if r.threads is None else str(r.threads), _fmt(r.p50_ms, 3), ci, _fmt(r.p90_ms, 3), mean,
                      _fmt(r.fps, 1), _fmt(_mib(peak), 1), _parity_cell(r.parity), status)
    out.print(table)
    for r in results:
        if r.package:
            p = r.package
            out.print(f"{escape(r.device)}: package {escape(str(p.get('path')))} ({p.get('bytes'):,} B, "
                      f"{p.get('kind')}) restored in {_fmt(p.get('restore_ms'), 1)} ms to {p.get('restored_bytes'):,} "
                      f"B, sha256 checked; {r.bytes_transferred or 0:,} B copied to the device for this row",
                      highlight=False, soft_wrap=True)
        if r.parity and r.parity.get("outputs"):
            _render_parity(r)
        if r.op_profile:
            _render_ops(r)
    shown = set()
    for r in results:
        for w in r.warnings:
            if (r.device, w) not in shown:
                shown.add((r.device, w))
                err.print(f"[yellow]warning:[/] ({escape(r.device)}) {escape(w)}", highlight=False)
        if not r.ok and r.hint and (r.device, r.hint) not in shown:
            shown.add((r.device, r.hint))
            err.print(f"[bold]hint[/] ({escape(r.device)}): {escape(r.hint)}", highlight=False)


def _parity_cell(p) -> str:
    if not p:
        return "-"
    if p.get("status") == "not_checked":
        return "not checked"
    worst = min((o["sqnr_db"] for o in p.get("outputs") or []), default=None)
    text = {"passed": "passed", "inconclusive": "[yellow]inconclusive[/]"}.get(p["status"], "[red]FAILED[/]")
    return text + (f" {worst:.1f} dB" if worst is not None else "")


def _render_parity(r) -> None:
    from rich.table import Table

    p = r.parity
    t = Table(title=f"parity on {r.device}: {r.model} {r.precision} vs Keras ({p.get('samples')} samples, "
                    f"{p.get('status')})")
    for col in ("output", "max abs err", "SQNR dB", "top-1 sure (n)", "vs host: max abs err", "vs host: SQNR dB"):
        t.add_column(col, justify="left" if col == "output" else "right")
    for o in p["outputs"]:
        top1 = "-" if o.get("top1_agreement") is None else f"{o['top1_agreement']:.3f} ({o.get('confident_samples')})"
        t.add_row(plain(o["name"]), f"{o['max_abs_err']:.3g}", f"{o['sqnr_db']:.1f}", top1,
                  "-" if o.get("host_max_abs_err") is None else f"{o['host_max_abs_err']:.3g}",
                  "-" if o.get("host_sqnr_db") is None else f"{o['host_sqnr_db']:.1f}")
    out.print(t)


def _render_ops(r) -> None:
    from rich.table import Table

    prof = r.op_profile
    if not prof.get("available"):
        err.print(f"[yellow]per-op times:[/] ({r.device}) {prof.get('reason')}", highlight=False)
        return
    t = Table(title=f"slowest ops on {r.device}: {r.model} {r.precision} ({prof.get('source')})")
    for col in ("op", "type", "layer", "ms", "share", "MMAC", "ms/MMAC", "flags"):
        t.add_column(col, justify="right" if col in ("ms", "share", "MMAC", "ms/MMAC") else "left")
    for o in prof["ops"]:
        t.add_row(plain(o["name"][-60:]), plain(o.get("op")), plain(o.get("layer") or "-"), f"{o['avg_ms']:.4f}",
                  f"{o['share']:.1%}", "-" if not o.get("mult_adds") else f"{o['mult_adds'] / 1e6:.2f}",
                  "-" if o.get("ms_per_mmac") is None else f"{o['ms_per_mmac']:.4f}", "; ".join(o["flags"]))
    out.print(t)
    if prof.get("note"):
        err.print(f"note: {prof['note']}", highlight=False)


def write_csv(path: str, results) -> None:
    from .._io import write_text_atomic

    buf = io.StringIO()
    fields = [f for f in results[0].to_dict() if f != "raw"] if results else COLUMNS
    w = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
    w.writeheader()
    for r in results:
        row = r.to_dict()
        row["transfers"] = " ".join(row.get("transfers") or [])
        row["warnings"] = " | ".join(row.get("warnings") or [])
        for key in ("p50_ci_ms", "mean_ci_ms"):
            row[key] = "-".join(f"{v:.6g}" for v in row[key]) if row.get(key) else ""
        row["drift"] = f"{row['drift']['last_vs_first']:.4g}" if row.get("drift") else ""
        row["parity"] = (row["parity"] or {}).get("status", "") if row.get("parity") else ""
        row["op_profile"] = "yes" if row.get("op_profile") else ""
        row["package"] = (row["package"] or {}).get("bytes", "") if row.get("package") else ""
        w.writerow(row)
    write_text_atomic(path, buf.getvalue(), option="--csv")
