"""``edgekit models`` (the zoo as a table) and ``edgekit profile`` (params, mult-adds, separable savings, memory)."""
from __future__ import annotations

from typing import Any

import click

from ..specs import ModelSpec
from ._options import given, spec_command, spec_options
from ._output import emit, json_option, out, plain, progress


def _millions(v: int | None, digits: int = 2) -> str:
    return "-" if v is None else f"{v / 1e6:,.{digits}f}"


def render_zoo(rows: list) -> None:
    from rich.table import Table

    table = Table(title="edgekit model zoo (params and mult-adds at the default input, 1000 classes)",
                  title_justify="left")
    for col, just in (("name", "left"), ("aliases", "left"), ("family", "left"), ("input", "left"),
                      ("params (M)", "right"), ("mult-adds (M)", "right"), ("preprocess", "left"),
                      ("imagenet", "left")):
        table.add_column(col, justify=just, no_wrap=col == "name")
    for r in rows:
        table.add_row(r.name, ", ".join(r.aliases), r.family, "x".join(map(str, r.input_shape)), _millions(r.params),
                      _millions(r.mult_adds, 1), r.preprocess, "yes" if r.has_imagenet else "no")
    out.print(table)


@spec_command(None, "edgekit.zoo:summary", cli_only=("as_json",), api_only=("use_cache",))
@click.command("models")
@click.argument("pattern", required=False)
@click.option("--stats/--no-stats", default=True, show_default=True,
              help="Compute params and mult-adds (builds each model once; cached per version).")
@json_option
def models_cmd(pattern: str | None, stats: bool, as_json: bool) -> None:
    """The model zoo: name, family, default input, params, mult-adds. PATTERN filters (e.g. 'mobilenet*')."""
    from ..zoo import summary

    with progress(not as_json) as cb:
        rows = summary(pattern, stats=stats, progress=cb)
    emit(rows, as_json, render_zoo)


def render_profile(rep: Any, *, layers: bool = True) -> None:
    from rich.table import Table

    if layers:
        table = Table(title=f"{rep.model}: per layer", title_justify="left")
        for col, just in (("layer", "left"), ("type", "left"), ("output shape", "left"), ("params", "right"),
                          ("mult-adds", "right")):
            table.add_column(col, justify=just, no_wrap=True)
        for r in rep.layers:
            table.add_row(plain(r.name), plain(r.type), str(r.output_shape).replace("None", "-"), f"{r.params:,}",
                          f"{r.mult_adds:,}" if r.mult_adds else "")
        out.print(table)
    if rep.separable:
        sep = Table(title="depthwise separable vs standard convolution (mult-adds in M)", title_justify="left")
        for col in ("depthwise", "pointwise", "Dk", "M", "N", "Df", "separable", "standard", "ratio", "1/N+1/Dk²"):
            sep.add_column(col, justify="left" if col.endswith("wise") else "right", no_wrap=True)
        for b in rep.separable:
            sep.add_row(b.depthwise, "(same layer)" if b.depthwise == b.pointwise else b.pointwise,
                        "x".join(map(str, b.kernel)), str(b.in_channels), str(b.out_channels),
                        "x".join(map(str, b.output_hw)), _millions(b.separable_mult_adds),
                        _millions(b.standard_mult_adds), f"{b.ratio:.4f}", f"{b.paper_ratio:.4f}")
        total_sep, total_std = rep.separable_mult_adds, rep.separable_standard_mult_adds
        sep.add_row("all blocks", "", "", "", "", "", _millions(total_sep), _millions(total_std),
                    f"{total_sep / total_std:.4f}", "", style="bold")
        out.print(sep)
    pm = rep.peak_memory
    out.print(f"[bold]{rep.model}[/]  input {rep.input_shape}  output {rep.output_shape}", highlight=False)
    out.print(f"params: {rep.total_params:,} (trainable {rep.trainable_params:,}, non-trainable "
              f"{rep.non_trainable_params:,}; conv/FC weights {rep.conv_fc_params:,})", highlight=False)
    out.print(f"mult-adds: {rep.total_mult_adds:,} ({rep.total_mult_adds / 1e6:,.1f} M; conv and FC layers only)",
              highlight=False)
    out.print(f"peak activation memory (batch 1): {pm.float32_bytes / 2**20:,.2f} MiB float32, "
              f"{pm.int8_bytes / 2**20:,.2f} MiB int8, at {pm.at_layer}", highlight=False)
    if pm.live_tensors:
        out.print("  live then (float32): " + ", ".join(f"{name} {n * 4 / 2**20:,.2f} MiB" for name, n in pm.live_tensors[:4])
                  + (f" (+{len(pm.live_tensors) - 4} more)" if len(pm.live_tensors) > 4 else ""), highlight=False)
    for note in rep.notes:
        out.print(f"note: {note}", highlight=False)


@spec_command(ModelSpec, "edgekit.profiling:profile", cli_only=("show_layers", "as_json"), exclude=("weights",))
@click.command("profile")
@spec_options(ModelSpec, exclude=("weights",))
@click.option("--layers/--no-layers", "show_layers", default=True, show_default=True,
              help="Show the per-layer table (the JSON always has it).")
@json_option
def profile_cmd(model: str, show_layers: bool, as_json: bool, **kwargs: Any) -> None:
    """Per-layer params and mult-adds, separable-vs-standard savings and peak activation memory of MODEL.

    \b
    edgekit profile mobilenet --alpha 0.5 --rho 0.714
    edgekit profile artifacts/fmnist.keras --json   # any .keras/.h5/SavedModel (this one: edgekit doctor --help)
    """
    from ..profiling import profile

    spec = ModelSpec.from_dict({"model": model, **given(kwargs)})
    rep = profile(spec.model, **spec.model_options())
    emit(rep, as_json, lambda r: render_profile(r, layers=show_layers))


def register(main: click.Group) -> None:
    main.add_command(models_cmd)
    main.add_command(profile_cmd)
