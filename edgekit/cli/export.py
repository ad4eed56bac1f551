"""``edgekit export`` and ``edgekit inspect``: thin wrappers over :func:`edgekit.export` (``edgekit.doctor.export``)
and ``inspect``."""
from __future__ import annotations

from typing import Any

import click
from rich.markup import escape

from .._units import human, kib
from ..errors import InvalidArgument
from ..specs import ExportSpec
from ._options import given, spec_command, spec_options
from ._output import emit, err, json_option, out, plain, progress


def _fmt_num(v: Any, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def render_export(result) -> None:
    from rich import box
    from rich.table import Table

    cal = result.calibration
    cal_text = {"data": f"{cal.count} samples of {escape(str(cal.source))}",
                "synthetic": f"[bold yellow]SYNTHETIC[/] ({cal.count})",
                "qat": f"QAT ranges ({escape(str(cal.source))})", "none": "not needed"}.get(cal.kind, cal.kind)
    labelled = any(a.verification is not None and a.verification.keras_accuracy is not None for a in result.artifacts)
    table = Table(title=f"{result.model} -> {result.out_dir}", title_justify="left", box=box.SIMPLE_HEAD,
                  pad_edge=False)
    cols = ["format", "precision", "KiB", "max|err|", "SQNR dB", "top-1"] + (["acc keras/art"] if labelled else [])
    for col in cols + ["ok"]:
        table.add_column(col, justify="left" if col in ("format", "precision", "ok") else "right")
    for a in result.artifacts:
        v = a.verification
        status = "-" if v is None else {"passed": "[green]pass[/]", "inconclusive": "[yellow]inconclusive[/]"}.get(
            v.status, "[bold red]FAIL[/]")
        prec = a.precision + ("" if a.io == "float" else f" {a.io}-io")
        if a.computes_in != a.precision:
            prec += f" (runs {a.computes_in})"
        row = [a.format, prec, f"{kib(a.size_bytes):.1f}", _fmt_num(v and v.max_abs_err, ".1e"),
               _fmt_num(v and v.sqnr_db, ".1f"), _fmt_num(v and v.top1_agreement, ".3f")]
        if labelled:
            row.append("-" if v is None or v.keras_accuracy is None
                       else f"{v.keras_accuracy:.3f}/{v.artifact_accuracy:.3f}")
        table.add_row(*row, status)
    out.print(table)
    out.print(f"calibration: {cal_text}; verified on {escape(str(result.verify_data))}", highlight=False,
              soft_wrap=True)
    for a in result.artifacts:  # several outputs: each one's numbers (the table shows the worst)
        v = a.verification
        if v is not None and len(v.outputs) > 1:
            out.print(f"{a.path.name}: " + "; ".join(
                f"{escape(c.name)} SQNR {c.sqnr_db:.1f} dB, max|err| {c.max_abs_err:.1e}"
                + (f", top-1 {c.top1_agreement:.3f}" if c.top1_agreement is not None else "") + f" {c.status}"
                for c in v.outputs), highlight=False, soft_wrap=True)
    for a in result.artifacts:
        for w in a.warnings:
            err.print(f"[yellow]warning:[/] {a.path.name}: {escape(w)}", highlight=False, soft_wrap=True)
        if a.verification is not None and a.verification.note:
            err.print(f"note: {a.path.name}: {escape(a.verification.note)}", highlight=False, soft_wrap=True)
    for a in result.artifacts:
        out.print(f"wrote {a.path} (manifest {a.manifest.name})", highlight=False, soft_wrap=True)


def render_inspect(rep) -> None:
    from rich.table import Table

    # float16-weight .tflite files: stored in float16, computed in float32 by CPU kernels
    compute = (f"{rep.precision} weights, computes in [bold]{rep.cpu_compute}[/] on CPU" if rep.cpu_compute
               else f"computes in [bold]{rep.precision}[/]")
    out.print(f"[bold]{escape(str(rep.path))}[/]  {rep.format}, {compute}, "
              f"{human(rep.size_bytes)} = weights {human(rep.weights_bytes)} + graph {human(rep.graph_bytes)}",
              highlight=False, soft_wrap=True)
    io = Table("", "name (signature name)", "shape", "dtype", "scale", "zero point", title="inputs / outputs",
               title_justify="left")
    for kind, items in (("in", rep.inputs), ("out", rep.outputs)):
        for t in items:
            scale = "-" if t.scale is None else f"{t.scale:.6g}" + (f" ({t.via})" if t.via else "")
            name = t.name + (f" ({t.key})" if t.key and t.key != t.name else "")
            io.add_row(kind, escape(name), str(t.shape), t.dtype, scale, "-" if t.zero_point is None else str(t.zero_point))
    out.print(io)
    ops = Table("op", "count", title="ops", title_justify="left")
    for name, n in rep.ops.items():
        ops.add_row(plain(name), str(n))
    out.print(ops)
    out.print("tensor dtypes: " + ", ".join(f"{k} x{v}" for k, v in rep.tensor_dtypes.items()), highlight=False)
    out.print("weight bytes by dtype: " + ", ".join(f"{k} {v}" for k, v in rep.weight_dtypes.items()), highlight=False)
    if rep.custom_ops:
        out.print("custom ops: " + ", ".join(f"{k} x{v}" for k, v in rep.custom_ops.items())
                  + ("" if rep.missing_ops is None else
                     f" (missing in this runtime: {', '.join(rep.missing_ops) or 'none'})"), highlight=False)
    for n in rep.notes:
        err.print(f"note: {escape(n)}", highlight=False, soft_wrap=True)
    for w in rep.warnings:
        err.print(f"[bold yellow]warning:[/] {escape(w)}", highlight=False, soft_wrap=True)


@spec_command(ExportSpec, "edgekit.doctor:export", cli_only=("recipe", "as_json"), api_only=("provenance",))
@click.command("export")
@spec_options(ExportSpec, argument_required=False)
@click.option("--recipe", default=None, type=click.Path(), help="Run a recipe (export/NAME.yaml); options override keys.")
@json_option
def export_cmd(recipe: str | None, as_json: bool, **kwargs: Any) -> None:
    """Export MODEL (zoo name or model file) to verified TFLite/ONNX artifacts with JSON manifests.

    \b
    edgekit export mobilenet --quantize int8 --calib-data fashion-mnist
    edgekit export mobilenet_v1 --alpha 0.25 --resolution 32 --input-channels 1 --classes 10 \\
        --weights none --quantize int8 --format tflite,onnx --calib-data fashion-mnist
    """
    from ..errors import BudgetNotMet
    from .doctor import render_doctor

    options = given(kwargs)
    try:
        if recipe:
            from ..recipes import run_recipe
            from .compress import render_compress

            with progress(not as_json) as cb:
                result = run_recipe(recipe, options or None, progress=cb)
            exported = getattr(result, "export", None)
            if as_json or exported is None:
                emit(result.to_dict() if hasattr(result, "to_dict") else result, True, lambda r: None)
            elif getattr(exported, "doctor", None) is not None:
                render_doctor(exported.doctor)  # a recipe with max_drop: the ladder, ending with what was written
            else:
                if result.compressed:
                    render_compress(result.result)  # the recipe's stages (Deep Compression table), then the export
                render_export(exported)
            return
        if options.get("model") is None:
            raise InvalidArgument("missing MODEL", hint="give a zoo name (see edgekit models), a model file, or "
                                                        "--recipe")
        from ..doctor import export

        spec = ExportSpec.from_dict(options)
        with progress(not as_json) as cb:
            result = export(spec=spec, progress=cb)
    except BudgetNotMet as exc:  # what the ladder tried, then exit 1
        emit(exc.result, as_json, render_doctor)
        raise click.exceptions.Exit(exc.exit_code) from None
    if result.doctor is not None and not as_json:
        render_doctor(result.doctor)  # --max-drop: the diagnosis and the ladder, ending with what was written
        return
    emit(result, as_json, render_export)


@spec_command(None, "edgekit.exporters:inspect", cli_only=("as_json",))
@click.command("inspect")
@click.argument("path", metavar="FILE", type=click.Path(dir_okay=False))
@json_option
def inspect_cmd(path: str, as_json: bool) -> None:
    """Show what is inside FILE.tflite or FILE.onnx: ops, dtypes, I/O quantization, weights vs graph size."""
    from ..exporters import inspect

    emit(inspect(path), as_json, render_inspect)


def register(main: click.Group) -> None:
    main.add_command(export_cmd)
    main.add_command(inspect_cmd)
