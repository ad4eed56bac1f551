"""``edgekit doctor``: why int8 hurts a model, and the cheapest fix within an accuracy budget (also behind
``edgekit export --max-drop``)."""
from __future__ import annotations

from typing import Any

import click
from rich.markup import escape

from ..specs import DoctorSpec
from ._options import given, spec_command, spec_options
from ._output import emit, err, json_option, out, plain, progress

#: layers shown in the table (all of them in --json)
TOP = 12


def _f(v: Any, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def _pts(v: float | None, spec: str) -> str:
    """A fraction (edgekit's accuracy scale) as percent / points for the table."""
    return "-" if v is None else format(100 * v, spec)


def render_doctor(res, top: int = TOP) -> None:
    from rich import box
    from rich.table import Table

    metric = "acc" if res.metric == "accuracy" else "agreement"
    out.print(f"[bold]{escape(res.model)}[/] ({res.format}): float {100 * res.float_accuracy:.2f} % -> plain int8 "
              f"{100 * res.int8_accuracy:.2f} % [bold](drop {100 * res.int8_drop:.2f} points)[/]; {res.metric} on "
              f"{res.eval_samples} samples of {escape(res.eval_source)}"
              + (f"; chance {100 * res.chance['chance']:.2f} %"
                 + ("" if res.chance["above_chance"] else " [bold yellow](float is NOT above chance)[/]")
                 if res.chance else ""), highlight=False, soft_wrap=True)
    shown = res.layers[:top]
    t = Table(title=f"error each quantized op adds, worst first ({len(shown)} of {len(res.layers)})",
              title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("layer", "op", "SQNR dB", "ch. SQNR", "RMSE/step", "int8 range", "bulk use", "clipped", "ch. max/med",
                "float ok", "finding"):
        t.add_column(col, justify="left" if col in ("layer", "op", "finding", "float ok") else "right")
    for s in shown:
        t.add_row(escape(s.layer), s.op, f"{s.sqnr_db:.1f}", _f(s.channel_sqnr_db, ".1f"), f"{s.rmse_scale:.2f}",
                  f"[{s.range_min:.3g}, {s.range_max:.3g}]", _f(s.bulk_use and 100 * s.bulk_use, ".1f") + " %",
                  f"{100 * s.clipped:.2f} %", _f(s.channel_ratio, ".1f"), "yes" if s.can_keep_float else "-",
                  escape("; ".join(s.findings)))
    out.print(t)
    if res.max_drop is None:
        out.print("no --max-drop given: diagnosis only (give --max-drop PTS to search for a fix within that budget)",
                  highlight=False, soft_wrap=True)
        _notes(res)
        return
    render_ladder(res, metric)
    _notes(res)


def render_ladder(res, metric: str = "acc") -> None:
    from rich import box
    from rich.table import Table

    t = Table(title=f"ladder: budget {100 * res.max_drop:g} points below float {100 * res.float_accuracy:.2f} % "
                    f"({res.samples_needed} samples needed, {res.eval_samples} used)",
              title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("rung", "calib", "method", "float layers", f"{metric} %", "drop", "KiB", "p50 ms", "status"):
        t.add_column(col, justify="left" if col in ("rung", "method", "float layers", "status") else "right")
    for r in res.rungs:
        status = {"within": "[green]within[/]", "over": "[red]over[/]", "skipped": "[dim]skipped[/]"}.get(r.status,
                                                                                                          r.status)
        if r.name == res.chosen:
            status += " [bold]<- chosen[/]"
        elif r.name == res.best and not res.met:
            status += " [bold]<- best[/]"
        layers = ", ".join(r.float_layers) if len(r.float_layers) <= 4 else \
            f"{', '.join(r.float_layers[:3])} +{len(r.float_layers) - 3}"
        t.add_row(plain(r.name), _f(r.calib_samples, "d") if r.calib_samples else ("QAT" if r.qat_epochs else "-"),
                  r.calibration_method or "-", escape(layers) or "-", _pts(r.accuracy, ".2f"), _pts(r.drop, "+.2f"),
                  _f(r.size_bytes and r.size_bytes / 1024, ".1f"), _f(r.p50_ms, ".4f"), status)
    out.print(t)
    for r in res.rungs:
        if r.note:
            out.print(f"  {r.name}: {escape(r.note)}", highlight=False, soft_wrap=True)
        for s in r.steps:
            units = escape(", ".join(s["units"]))
            acc, drop = 100 * s["accuracy"], 100 * s["drop"]  # results hold fractions; the table shows percent
            text = {"add": f"kept {units} in float: {acc:.2f} % (drop {drop:+.2f})",
                    "drop": f"{units} not needed: without it {acc:.2f} % (drop {drop:+.2f})",
                    "keep": f"{units} needed: without it {acc:.2f} % (drop {drop:+.2f})"}[s["action"]]
            out.print(f"  {r.name}: {text}", highlight=False, soft_wrap=True)
    if res.met:
        out.print(f"[green bold]within budget[/]: {res.chosen}", highlight=False)
    else:
        out.print(f"[red bold]budget not met[/]: best found {res.best or '-'}"
                  + ("" if res.export is not None else " (nothing written; --keep-best writes it)"), highlight=False)
    if res.export is not None:
        import yaml

        a = res.export.artifacts[0]
        out.print(f"wrote {a.path} (manifest {a.manifest.name}, recipe {a.path.name}.recipe.yaml)", highlight=False,
                  soft_wrap=True)
        out.print("recipe keys (edgekit export --recipe runs this choice without searching):", highlight=False)
        out.print(escape(yaml.safe_dump(res.recipe, sort_keys=False).rstrip()), highlight=False)


def _notes(res) -> None:
    for n in res.notes:
        err.print(f"note: {escape(n)}", highlight=False, soft_wrap=True)


@spec_command(DoctorSpec, "edgekit.doctor:run", cli_only=("as_json", "top"))
@click.command("doctor")
@spec_options(DoctorSpec)
@click.option("--top", type=int, default=TOP, show_default=True, help="Layers shown in the table (--json has all).")
@json_option
@click.pass_context
def doctor_cmd(ctx: click.Context, as_json: bool, top: int, **kwargs: Any) -> None:
    """Find the layers that break int8 in MODEL and fix them within an accuracy budget.

    \b
    edgekit train mobilenet_v1 --alpha 0.25 --resolution 32 --input-channels 1 --classes 10 --weights none \\
        --data fashion-mnist --epochs 4 --out artifacts/fmnist.keras      # a trained classifier to look at
    edgekit doctor artifacts/fmnist.keras --calib-data fashion-mnist --eval-data fashion-mnist
    edgekit doctor artifacts/fmnist.keras --calib-data fashion-mnist --eval-data fashion-mnist --max-drop 1 \\
        --format onnx

    Without --max-drop: float vs plain int8 accuracy and the per-layer error table (worst first). With it: the
    ladder (plain int8 -> more calibration -> onnx: entropy/percentile calibration -> layers kept in float ->
    int16x8 -> QAT with --train-data), stopping at the first rung within the budget; that artifact is exported
    with its manifest and a recipe that reproduces it. Budget not met: exit code 1, nothing written unless
    --keep-best.
    """
    from ..doctor import run

    spec = DoctorSpec.from_dict(given(kwargs))
    with progress(not as_json) as cb:
        result = run(spec=spec, progress=cb)
    emit(result, as_json, lambda r: render_doctor(r, top))
    if result.met is False:
        ctx.exit(1)


def register(main: click.Group) -> None:
    main.add_command(doctor_cmd)
