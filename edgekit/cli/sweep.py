"""``edgekit sweep``: thin wrapper over :func:`edgekit.sweep.sweep`; renders the table, picks, fits and progress."""
from __future__ import annotations

import sys
import time
from typing import Any

import click
from rich.markup import escape

from ._output import err, out

_OPTIONS = [
    click.option("--config", default=None, type=click.Path(dir_okay=False),
                 help="A *.sweep.yaml whose keys are these options (options given here win)."),
    click.option("--grid", multiple=True, metavar="KEY=V1,V2,...",
                 help="Swept values of a zoo option (alpha, resolution or rho, depth_multiplier, dropout, ...) or "
                      "model=A,B (families); repeatable."),
    click.option("--quantize", default=None, help="Precisions, comma-separated: none (float32), fp16, dynamic, "
                                                  "int8, int16x8 [default: none,int8]."),
    click.option("--format", "formats", default=None, help="Export formats, comma-separated [default: tflite]."),
    click.option("--alpha", type=float, default=None, help="Fixed width multiplier (when not swept)."),
    click.option("--rho", type=float, default=None, help="Fixed resolution multiplier."),
    click.option("--resolution", type=int, default=None, help="Fixed input resolution."),
    click.option("--depth-multiplier", type=int, default=None, help="Fixed depthwise channel multiplier."),
    click.option("--dropout", type=float, default=None, help="Dropout before the classifier."),
    click.option("--classes", type=int, default=None, help="Output classes [default: the classes of --data]."),
    click.option("--input-channels", type=int, default=None, help="Input channels (1 for grayscale)."),
    click.option("--weights", default=None, help="imagenet, none, or a weights/model file every point starts from."),
    click.option("--data", default=None, help="Training data: fashion-mnist, digits, an image folder (sub-folder "
                                              "per class) or an .npz with x and y."),
    click.option("--epochs", type=int, default=None, help="Training epochs [default: 5]."),
    click.option("--batch-size", type=int, default=None, help="[default: 64]"),
    click.option("--lr", type=float, default=None, help="Learning rate [default: 1e-3, Adam]."),
    click.option("--optimizer", type=click.Choice(["adam", "sgd", "rmsprop"]), default=None),
    click.option("--val-fraction", type=float, default=None, help="Held-out validation fraction [default: 0.1]."),
    click.option("--val-data", default=None, help="Separate validation data instead of --val-fraction."),
    click.option("--limit", type=int, default=None, help="Seeded random subset of the training data."),
    click.option("--seed", type=int, default=None, help="[default: 0]"),
    click.option("--bn-momentum", type=float, default=None, help="[default: 0.9]"),
    click.option("--preprocess", default=None, help="Input preprocessing: unit, tf, torch, caffe, raw."),
    click.option("--share-training", type=click.Choice(["resolution", "none"]), default=None,
                 help="resolution: train each model once at its smallest resolution and fine-tune the others; "
                      "none: train every point independently [default: resolution]."),
    click.option("--finetune-epochs", type=int, default=None, help="Fine-tuning epochs per resolution [default: 1]."),
    click.option("--finetune-lr", type=float, default=None, help="Fine-tuning learning rate [default: lr/10]."),
    click.option("--recipe", default=None, type=click.Path(dir_okay=False),
                 help="A compression recipe (export/*.yaml) whose stages (prune, cluster, qat, ...) every point gets."),
    click.option("--test-data", default=None, help="Labelled test data [default: the test split of a built-in "
                                                   "--data]."),
    click.option("--test-limit", type=int, default=None, help="Test samples [default: all]."),
    click.option("--calib-data", default=None, help="Calibration data [default: --data]."),
    click.option("--calib-samples", type=int, default=None, help="[default: 300]"),
    click.option("--io", type=click.Choice(["float", "int8", "uint8", "int16"]), default=None),
    click.option("--per-tensor", is_flag=True, default=None),
    click.option("--opset", type=int, default=None, help="ONNX opset."),
    click.option("--verify/--no-verify", default=None, help="A point whose artifact fails verification is a failed "
                                                            "row (--no-verify: measured anyway)."),
    click.option("--device", "-d", "devices", multiple=True, help="local, ssh://user@host[:port], adb://SERIAL or a "
                                                                  "profile (repeatable; run in parallel) "
                                                                  "[default: local]."),
    click.option("--emulated", multiple=True, help="A --device whose latencies are emulated (e.g. qemu): labelled "
                                                   "so in the table and plots (repeatable)."),
    click.option("--runs", type=int, default=None, help="Timed runs per measurement [default: 50]."),
    click.option("--warmup", type=int, default=None, help="[default: 5]"),
    click.option("--threads", type=int, default=None, help="Interpreter threads on the device."),
    click.option("--max-seconds", type=float, default=None, help="Time cap per measurement phase [default: 150]."),
    click.option("--delegate", default=None, help="auto (XNNPACK), xnnpack, none, or PATH.so."),
    click.option("--timeout", type=float, default=None, help="Seconds per measurement."),
    click.option("--python", default=None, help="Python on the device."),
    click.option("--runtime", default=None, help="Interpreter on the device: ai-edge-litert, tflite-runtime or "
                                                 "onnxruntime [default: the profile's, else the first found]."),
    click.option("--benchmark-binary", default=None, help="TFLite benchmark_model (devices without Python)."),
    click.option("--key-file", default=None, help="SSH private key."),
    click.option("--known-hosts", default=None, help="known_hosts file."),
    click.option("--accept-new-host-key", is_flag=True, default=None, help="Trust a new SSH host key."),
    click.option("--connect-timeout", type=float, default=None),
    click.option("--budget-ms", type=float, default=None, help="Latency budget: pick the most accurate point within it "
                                                               "on each device."),
    click.option("--metric", type=click.Choice(["p50", "p90"]), default=None, help="Latency statistic [default: p50]."),
    click.option("--require-budget", is_flag=True, default=None, help="Exit 1 when a device has no point within "
                                                                      "--budget-ms."),
    click.option("--out", default=None, help="Folder for everything (a rerun of the same sweep resumes from it)."),
    click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout (no table)."),
]


def _options(fn):
    for opt in reversed(_OPTIONS):
        fn = opt(fn)
    return fn


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
    for col in ["device", *keys, "precision", *(["format"] if len({r.format for r in result.rows}) > 1 else []),
                "MMACs", "params", "KiB", "acc %", f"{result.metric} ms", "front", "status"]:
        table.add_column(col, justify="left" if col in ("device", "precision", "format", "status", "front", "model")
                         else "right")
    metric = f"{result.metric}_ms"
    rows = sorted(result.rows, key=lambda r: (r.device, getattr(r, metric) is None, getattr(r, metric) or 0))
    for r in rows:
        dev = r.device + (" (emulated)" if r.emulated else "")
        mark = ("[bold green]PICK[/] " if r.pick else "") + ("*" if r.pareto else "")
        if r.latency_outlier:
            mark += f" [yellow]x{r.latency_ratio:.2g} off[/]"
        status = "[green]ok[/]" if r.status == "ok" else f"[red]{escape(r.status)}[/]"
        if r.reused and r.status == "ok":
            status += " (reused)"
        cells = [escape(dev), *[escape(str(r.options.get(k, "-"))) for k in keys], r.precision]
        if len({x.format for x in result.rows}) > 1:
            cells.append(r.format)
        cells += [f"{r.mult_adds / 1e6:.2f}" if r.mult_adds else "-", f"{r.params:,}" if r.params else "-",
                  f"{r.size_bytes / 1024:.1f}" if r.size_bytes else "-", _pct(r.accuracy),
                  _ms(getattr(r, metric)), mark, status]
        table.add_row(*cells)
    out.print(table)
    out.print("front (*): no other point on that device is both faster and more accurate", highlight=False)
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
    failed = {}
    for r in result.rows:
        if r.status not in ("ok", "pending") and r.error:
            failed.setdefault((r.status, r.error), []).append(r)
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


def _given(ctx: click.Context, kwargs: dict[str, Any]) -> dict[str, Any]:
    from click.core import ParameterSource

    return {k: v for k, v in kwargs.items()
            if ctx.get_parameter_source(k) not in (ParameterSource.DEFAULT, None) and v is not None and v != ()}


@click.command("sweep")
@click.argument("model", required=False)
@_options
@click.pass_context
def sweep_cmd(ctx: click.Context, model: str | None, config: str | None, as_json: bool, **kwargs: Any) -> None:
    """Find the most accurate MODEL within a latency budget, measured on your device(s).

    Every point of the grid x --quantize x --format is trained on --data (precisions share one training; see
    --share-training), exported with verification, scored on labelled test data in the artifact's runtime and
    measured on every --device. Results land under --out as points finish; rerun the same command to resume.

    \b
    edgekit sweep mobilenet_v1 --grid alpha=0.25,0.5 --grid resolution=32,48 --quantize none,int8 \\
        --input-channels 1 --weights none --data fashion-mnist --epochs 1 --limit 2000 --test-limit 1000 \\
        --device local --budget-ms 0.1 --out artifacts/sweep
    \b
    edgekit sweep --config export/fashion_mnist_mobilenet.sweep.yaml --device rpi4 --budget-ms 15
    """
    from ..sweep import BudgetNotMet, SweepSpec, load_config, sweep

    values = load_config(config) if config else {}
    given = _given(ctx, kwargs)
    if "grid" in given:
        from ..sweep.grid import parse_grid

        values["grid"] = {**parse_grid(values.get("grid")), **parse_grid(given.pop("grid"))}
    values.update(given)
    if model is not None:
        values["model"] = model
    spec = SweepSpec(**values)
    t0 = time.monotonic()
    try:
        with _Progress(not as_json) as bar:
            result = sweep(spec=spec, progress=bar.task, on_event=bar.event)
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
