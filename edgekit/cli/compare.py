"""``edgekit compare``: thin wrapper over :func:`edgekit.devices.compare`; renders both rows, the ratio and the
verdict."""
from __future__ import annotations

import click

from ..specs import CompareSpec
from ._bench_output import render_results as _render_results
from ._options import given, spec_command, spec_options
from ._output import emit, json_option, out, progress


@spec_command(CompareSpec, "edgekit.devices:compare", cli_only=("as_json",))
@click.command("compare")
@spec_options(CompareSpec)
@json_option
def compare_cmd(as_json, **kwargs):
    """Is A faster than B? Two artifacts interleaved on one device, or one artifact on two devices: the p50 time
    ratio with its bootstrap 95% interval and a verdict in words.

    Examples (offline, in order, except where a line says what it needs):

    \b
    edgekit export mobilenet_v1 --alpha 0.25 --resolution 32 --input-channels 1 --classes 10 --weights none \\
        --quantize int8 --format tflite,onnx --calib-data fashion-mnist   # writes the two files below
    edgekit compare artifacts/mobilenet_v1_0.25_32_1ch_10cls_int8.tflite \\
        artifacts/mobilenet_v1_0.25_32_1ch_10cls_int8.onnx -d local
    edgekit compare artifacts/mobilenet_v1_0.25_32_1ch_10cls_int8.tflite -d rpi4 -d rpi5  # needs both Pis
    """
    from ..devices import compare

    spec = CompareSpec.from_dict(given(kwargs))
    with progress(not as_json) as cb:
        c = compare(spec=spec, progress=cb)

    def render(c):
        from rich.markup import escape

        _render_results(c.rows)
        ci = f"{c.ci[0]:.3f}-{c.ci[1]:.3f}" if c.ci else "-"
        how = f"interleaved, {c.rounds} rounds" if c.kind == "artifacts" else "one device after the other"
        out.print(f"p50 {escape(c.a)} {c.a_p50_ms:.4f} ms, {escape(c.b)} {c.b_p50_ms:.4f} ms; time ratio A/B "
                  f"{c.ratio:.3f} (95% CI {ci}; {c.runs} runs each, {how})", highlight=False)
        out.print(f"[bold]{escape(c.verdict)}[/]", highlight=False)

    emit(c, as_json, render)


def register(main):
    main.add_command(compare_cmd)
