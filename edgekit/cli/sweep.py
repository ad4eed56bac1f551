"""``edgekit sweep``: thin wrapper over :func:`edgekit.sweep.run`; renders the table, picks, fits and progress."""
from __future__ import annotations

import sys
import time
from typing import Any

import click
from rich.markup import escape

from ..sweep.spec import SweepSpec
from ._options import given, spec_command, spec_options
from ._output import err, json_option, out

def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "estimating"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    m, s = divmod(seconds, 60)
    return f"{m}m{s:02d}s" if m < 60 else f"{m // 60}h{m % 60:02d}m"


class _Progress:
    """Points done / total and time left: a live bar on a terminal, one line per finished row otherwise."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.tty = enabled and sys.stderr.isatty()
        self.bars = None
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> "_Progress":
        if self.tty:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self.bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[left]}"), console=err, transient=True)
            self.bars.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.bars is not None:
            self.bars.__exit__(*exc)

    def task(self, name: str, done: int, total: int | None) -> None:
        """The library's progress callback (training epochs, verification, grid checks)."""
        if self.bars is None:
            return
        if name not in self.tasks:
            self.tasks[name] = self.bars.add_task(name, total=total, left="")
        self.bars.update(self.tasks[name], completed=done, total=total)

    def event(self, p) -> None:
        if not self.enabled:
            return
        left = "" if p.points_done == p.points_total else f"time left ~{_duration(p.eta_seconds)}"
        if self.bars is not None:
            if "points" not in self.tasks:
                self.tasks["points"] = self.bars.add_task("points", total=p.points_total, left=left)
            self.bars.update(self.tasks["points"], completed=p.points_done, total=p.points_total, left=left,
                             description=f"points ({escape(p.activity)})"[:100])
        elif p.row is not None:
            r = p.row
            what = (f"{100 * r.accuracy:.2f}% {r.p50_ms:.4g} ms p50" if r.status == "ok" and r.accuracy is not None
                    and r.p50_ms is not None else f"{r.status}: {r.error or ''}")
            err.print(f"[{p.points_done}/{p.points_total} points] {escape(r.point)} on {escape(r.device)}: "
                      f"{escape(what)}{' (reused)' if r.reused else ''}{'; ' + left if left else ''}",
                      highlight=False, soft_wrap=True)


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.2f}"


def _ms(v) -> str:
    return "-" if v is None else f"{v:.4g}"


def render(result) -> None:
    from rich import box
    from rich.table import Table

    keys = [k for k in dict.fromkeys(k for r in result.rows for k in r.options)]
    table = Table(title=f"edgekit sweep -> {result.out}", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    nodes = len({r.node for r in result.rows if r.node}) > 1     # several machines (Ray): where each row ran
    for col in ["device", *keys, "precision", *(["format"] if len({r.format for r in result.rows}) > 1 else []),
                "MMACs", "params", "KiB", "acc %", f"{result.metric} ms", "front", "status",
                *(["node"] if nodes else [])]:
        table.add_column(col, justify="left" if col in ("device", "precision", "format", "status", "front", "model",
                                                        "node") else "right")
    metric = f"{result.metric}_ms"
    rows = sorted(result.rows, key=lambda r: (r.device, getattr(r, metric) is None, getattr(r, metric) or 0))
    for r in rows:
        dev = r.device + (" (emulated)" if r.emulated else "")
        mark = ("[bold green]PICK[/] " if r.pick else "") + ("*" if r.pareto else "")
        if r.latency_outlier:
            mark += f" [yellow]x{r.latency_ratio:.2g} off[/]"
        status = "[green]ok[/]" if r.status == "ok" else f"[red]{escape(r.status)}[/]"
        if r.above_chance is False:
            status += " [yellow]at chance[/]"
        if r.reused and r.status == "ok":
            status += " (reused)"
        cells = [escape(dev), *[escape(str(r.options.get(k, "-"))) for k in keys], r.precision]
        if len({x.format for x in result.rows}) > 1:
            cells.append(r.format)
        cells += [f"{r.mult_adds / 1e6:.2f}" if r.mult_adds else "-", f"{r.params:,}" if r.params else "-",
                  f"{r.size_bytes / 1024:.1f}" if r.size_bytes else "-", _pct(r.accuracy),
                  _ms(getattr(r, metric)), mark, status, *([escape(r.node or "-")] if nodes else [])]
        table.add_row(*cells)
    out.print(table)
    out.print("front (*): no other point on that device is both faster and more accurate", highlight=False)
    if result.chance is not None:
        ok = not result.chance.at_chance
        out.print(("" if ok else "[bold yellow]") + escape(result.chance.statement) + ("" if ok else "[/]"),
                  highlight=False)
    for p in result.picks:
        out.print(("[bold green]pick[/] " if p.fits else "[bold red]budget[/] ") + escape(p.statement), highlight=False)
    for f in result.accuracy_fits:
        if f.r2 is not None:
            out.print(f"accuracy fit {f.model} {f.precision}: acc = {100 * f.intercept:.2f}% "
                      f"{100 * f.slope:+.2f} pts x log10(mult-adds), R² = {f.r2:.3f} over {f.n} points",
                      highlight=False)
        else:
            out.print(f"accuracy fit {f.model} {f.precision}: {f.note}", highlight=False)
    emulated = {r.device for r in result.rows if r.emulated}
    for f in result.latency_fits:
        label = f.device + (" (emulated)" if f.device in emulated else "")
        if f.overhead_ms is None:
            out.print(f"latency model {escape(label)}: {f.note}", highlight=False)
            continue
        gmacs = f"{f.gmacs:.3g} GMAC/s" if f.gmacs else "no mult-adds dependence"
        ratios = ", ".join(f"{k} x{v:.2g}" for k, v in f.ratios.items())
        out.print(f"latency model {escape(label)}: {_ms(round(f.overhead_ms, 6))} ms + mult-adds at {gmacs}, R²(log) "
                  f"{f.r2_log:.2f}; measured/predicted by precision: {ratios}"
                  + (f"; outliers (> x2 off): {', '.join(f.outliers)}" if f.outliers else ""), highlight=False)
    failed, noted = {}, {}
    for r in result.rows:
        if r.status not in ("ok", "pending") and r.error:
            failed.setdefault((r.status, r.error), []).append(r)
        if r.note:
            noted.setdefault(r.note, []).append(r)
    for note, rs in noted.items():
        err.print(f"note ({len({r.point for r in rs})} point(s), e.g. {escape(rs[0].point)}): {escape(note)}",
                  highlight=False, soft_wrap=True)
    for (status, error), rs in failed.items():
        err.print(f"[red]{escape(status)}[/] ({len(rs)} row(s), e.g. {escape(rs[0].point)} on {escape(rs[0].device)}): "
                  f"{escape(error)}" + (f" [bold]hint:[/] {escape(rs[0].hint)}" if rs[0].hint else ""),
                  highlight=False, soft_wrap=True)
    s = result.summary
    out.print(f"{s.points} points x {s.devices} device(s) = {s.rows} rows: {s.ok} ok, {s.failed} failed"
              + (f", {s.pending} pending" if s.pending else "")
              + f"; reused {s.rows_reused} rows from an earlier run (trainings {s.trainings_reused}/{s.trainings}, "
                f"exports {s.exports_reused}/{s.exports_reused + s.exports_computed}); {_duration(s.seconds)} wall",
              highlight=False)
    out.print(f"training: {s.training_sharing}", highlight=False)
    for note in result.notes:
        out.print(f"note: {escape(note)}", highlight=False)
    for name, path in {**result.files, **result.plots}.items():
        out.print(f"{name}: {path}", highlight=False, soft_wrap=True)


@spec_command(SweepSpec, "edgekit.sweep:run", cli_only=("config", "as_json"), api_only=("on_event",))
@click.command("sweep")
@spec_options(SweepSpec, argument_required=False)
@click.option("--config", default=None, type=click.Path(dir_okay=False),
              help="A *.sweep.yaml whose keys are these options (options given here win; --grid merges by key).")
@json_option
def sweep_cmd(config: str | None, as_json: bool, **kwargs: Any) -> None:
    """Find the most accurate MODEL within a latency budget, measured on your device(s).

    Every point of the grid x --quantize x --format is trained on --data (precisions share one training; see
    --share-training), exported with verification, scored on labelled test data in the artifact's runtime and
    measured on every --device. Results land under --out as points finish; rerun the same command to resume.

    \b
    edgekit sweep mobilenet_v1 --grid alpha=0.25,0.5 --grid resolution=32,48 --quantize float32,int8 \\
        --input-channels 1 --weights none --data fashion-mnist --epochs 2 --limit 4000 --lr 0.003 \\
        --test-limit 1000 --device local --budget-ms 0.05 --out artifacts/sweep
    \b
    edgekit sweep --config export/fashion_mnist_mobilenet.sweep.yaml --device local --budget-ms 0.05
    (the benchmark's grid: 12 trainings on 20k Fashion-MNIST images, ~20 min on 2 cores, ~400 MiB under artifacts/)
    """
    from ..sweep import BudgetNotMet, run
    from ..sweep.spec import from_config

    options = given(kwargs)
    spec = from_config(config, options) if config else SweepSpec.from_dict(options)
    t0 = time.monotonic()
    try:
        with _Progress(not as_json) as bar:
            result = run(spec=spec, progress=bar.task, on_event=bar.event)
    except BudgetNotMet as exc:
        _emit(exc.result, as_json)
        raise
    except KeyboardInterrupt:
        err.print(f"[bold red]interrupted[/] after {_duration(time.monotonic() - t0)}: finished rows are saved under "
                  f"{escape(str(spec.out))}; rerun the same command to resume", highlight=False)
        raise click.exceptions.Exit(130)
    _emit(result, as_json)
    if result.summary.ok == 0:
        from ..errors import EdgekitError

        raise EdgekitError("every point of the sweep failed", hint="see the statuses and hints above")


def _emit(result, as_json: bool) -> None:
    if as_json:
        click.echo(result.to_json())
    else:
        render(result)


def register(main: click.Group) -> None:
    main.add_command(sweep_cmd)
