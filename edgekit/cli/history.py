"""``edgekit history``: the recorded bench results over time, regressions flagged (:mod:`edgekit.devices.history`)."""
from __future__ import annotations

from pathlib import Path

import click

from ..errors import InvalidArgument
from ._bench_output import _fmt
from ._options import spec_command
from ._output import emit, err, json_option, out, plain


@spec_command(None, "edgekit.devices.history:load", cli_only=("as_json", "last"))
@click.command("history")
@click.option("--artifact", default=None, help="An artifact file (matched by sha256), its name, or a sha256 prefix.")
@click.option("--device", "-d", default=None, help="Only this device.")
@click.option("--history", "path", default=None, type=click.Path(dir_okay=False),
              help="The JSON-lines history (default: $EDGEKIT_BENCH_HISTORY or ~/.cache/edgekit/bench_history.jsonl).")
@click.option("--last", type=int, default=None, help="Only the last N results.")
@json_option
def history_cmd(artifact, device, path, last, as_json):
    """Recorded bench results over time; a regression against the previous result of the same artifact sha256 on
    the same device is flagged. Exits 1 when the newest result of an artifact on a device is a regression.

    Examples (offline, in order; every bench run is recorded unless --no-history):

    \b
    edgekit export mobilenet_v1 --alpha 0.25 --resolution 32 --input-channels 1 --classes 10 --weights none \\
        --quantize int8 --format tflite,onnx --calib-data fashion-mnist   # writes the two files below
    edgekit bench artifacts/mobilenet_v1_0.25_32_1ch_10cls_int8.tflite -d local
    edgekit bench artifacts/mobilenet_v1_0.25_32_1ch_10cls_int8.tflite -d local
    edgekit history --artifact artifacts/mobilenet_v1_0.25_32_1ch_10cls_int8.tflite --last 5
    edgekit history --device local --json
    """
    from ..devices import history

    if last is not None and last < 1:
        raise InvalidArgument(f"--last must be >= 1, got {last}", hint="e.g. --last 20")
    hist = path or history.default_path()
    if path and not Path(path).is_file():
        raise InvalidArgument(f"history file {path} does not exist", hint="bench writes it (--history FILE)")
    recs = history.load(hist, artifact=artifact, device=device)
    if last:
        recs = recs[-last:]

    def render(recs):
        from rich.table import Table

        t = Table(title=f"edgekit history ({hist})")
        for col in ("time", "model", "precision", "device", "sha256", "p50 ms", "p50 95% CI", "vs previous",
                    "status"):
            t.add_column(col, justify="right" if col in ("p50 ms", "vs previous") else "left")
        for r in recs:
            ci = "-" if not r.get("p50_ci_ms") else f"{r['p50_ci_ms'][0]:.3f}-{r['p50_ci_ms'][1]:.3f}"
            change = "-" if r.get("change") is None else f"{r['change']:.3f}x"
            if r.get("regression"):
                change = f"[red]{change} REGRESSION[/]"
            t.add_row(plain(r.get("timestamp", "")), plain(r.get("model")), plain(r.get("precision")),
                      plain(r.get("device")), plain(str(r.get("sha256", ""))[:10]), _fmt(r.get("p50_ms"), 3), ci,
                      change, plain(r.get("status")))
        out.print(t)
        if not recs:
            err.print("no recorded results match", highlight=False)

    emit(recs, as_json, render)
    latest: dict = {}
    for r in recs:
        latest[(r.get("sha256"), r.get("device"))] = r
    if any(r.get("regression") for r in latest.values()):
        raise click.exceptions.Exit(1)


def register(main):
    main.add_command(history_cmd)
