"""``edgekit bench``: thin wrapper over :func:`edgekit.devices.bench`; renders the rows, writes JSON/CSV/history."""
from __future__ import annotations

import json
from pathlib import Path

import click

from .._io import check_output_path, ensure_writable_dir, write_text_atomic
from ..errors import InvalidArgument
from ..specs import BenchSpec
from ._bench_output import render_results as _render_results, write_csv as _write_csv
from ._options import given, spec_command, spec_options
from ._output import err, progress


@spec_command(BenchSpec, "edgekit.devices:bench", cli_only=("json_out", "csv_out", "no_history"))
@click.command("bench")
@spec_options(BenchSpec)
@click.option("--json", "json_out", default=None, type=click.Path(dir_okay=False),
              help="Write the results as JSON to this file ('-': stdout, no table).")
@click.option("--csv", "csv_out", default=None, type=click.Path(dir_okay=False), help="Write the results as CSV.")
@click.option("--no-history", is_flag=True, help="Do not record the results.")
def bench_cmd(json_out, csv_out, no_history, **kwargs):
    """Measure ARTIFACT(s) (.tflite/.onnx, or .ekpkg update packages) on one or more devices; one row per artifact x
    device. A package is sent as it is, restored and sha256-checked on the device (--base: the deployed file a delta
    needs); the row reports the bytes transferred.

    Exits 1 when any row failed (device unreachable, model not loadable, parity failed).

    Examples (offline, in order, except where a line says what it needs):

    \b
    edgekit export mobilenet_v1 --alpha 0.25 --resolution 32 --input-channels 1 --classes 10 --weights none \\
        --quantize int8 --format tflite,onnx --calib-data fashion-mnist   # writes the two files below
    edgekit bench artifacts/mobilenet_v1_0.25_32_1ch_10cls_int8.tflite \\
        artifacts/mobilenet_v1_0.25_32_1ch_10cls_int8.onnx -d local --csv results.csv
    edgekit bench artifacts/mobilenet_v1_0.25_32_1ch_10cls_int8.onnx --verify --profile-ops  # parity, per-op times
    edgekit bench artifacts/mobilenet_v1_0.25_32_1ch_10cls_int8.tflite -d rpi4 --verify  # needs the Pi
    """
    from ..devices import bench
    from ..devices.history import default_path

    options = given(kwargs)
    options["history"] = None if no_history else (options.get("history") or str(default_path()))
    for path, option in ((json_out, "--json"), (csv_out, "--csv"), (options["history"], "--history")):
        if path and path != "-":  # before the run: a bad output path must not throw the measurements away
            _check_writable(path, option)
    spec = BenchSpec.from_dict(options)
    with progress(json_out != "-") as cb:
        results = bench(spec=spec, progress=cb)
    data = [r.to_dict() for r in results]
    if json_out == "-":
        click.echo(json.dumps(data, indent=2))
    else:
        _render_results(results)
        if json_out:
            write_text_atomic(json_out, json.dumps(data, indent=2), option="--json")
    if csv_out:
        _write_csv(csv_out, results)
    failed = sum(1 for r in results if not r.ok)
    if failed:
        err.print(f"[bold red]{failed} of {len(results)} rows failed[/]", highlight=False)
        raise click.exceptions.Exit(1)


def _check_writable(path, option: str) -> None:
    p = Path(path).expanduser()
    check_output_path(p, option)  # a folder, a link, a device, a FIFO: refused before the run
    try:
        ensure_writable_dir(p.parent)
    except InvalidArgument as exc:
        raise InvalidArgument(f"cannot write {option} {path}: {exc.message}",
                              hint=f"choose another file for {option}") from exc


def register(main):
    main.add_command(bench_cmd)
