"""``edgekit bench`` and ``edgekit devices list|show|check``: thin wrappers over :mod:`edgekit.devices`."""
from __future__ import annotations

import json
from pathlib import Path

import click

from ..specs import BenchSpec, CheckSpec, CompareSpec
from ._bench_output import _fmt, render_results as _render_results, write_csv as _write_csv
from ._options import given, spec_command, spec_options
from ._output import emit, err, json_option, out, plain, progress


@spec_command(BenchSpec, "edgekit.devices:bench", cli_only=("json_out", "csv_out", "no_history"))
@click.command("bench")
@spec_options(BenchSpec)
@click.option("--json", "json_out", default=None, type=click.Path(dir_okay=False),
              help="Write the results as JSON to this file ('-': stdout, no table).")
@click.option("--csv", "csv_out", default=None, type=click.Path(dir_okay=False), help="Write the results as CSV.")
@click.option("--no-history", is_flag=True, help="Do not record the results.")
def bench_cmd(json_out, csv_out, no_history, **kwargs):
    """Measure ARTIFACT(s) (.tflite/.onnx) on one or more devices; one row per artifact x device.

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
        results = bench(**spec.kwargs(), progress=cb)
    data = [r.to_dict() for r in results]
    if json_out == "-":
        click.echo(json.dumps(data, indent=2))
    else:
        _render_results(results)
        if json_out:
            from .._io import write_text_atomic
            write_text_atomic(json_out, json.dumps(data, indent=2), option="--json")
    if csv_out:
        _write_csv(csv_out, results)
    failed = sum(1 for r in results if not r.ok)
    if failed:
        err.print(f"[bold red]{failed} of {len(results)} rows failed[/]", highlight=False)
        raise click.exceptions.Exit(1)


def _check_writable(path, option: str) -> None:
    from pathlib import Path

    from .._io import check_output_path, ensure_writable_dir
    from ..errors import InvalidArgument

    p = Path(path).expanduser()
    check_output_path(p, option)  # a folder, a link, a device, a FIFO: refused before the run
    try:
        ensure_writable_dir(p.parent)
    except InvalidArgument as exc:
        raise InvalidArgument(f"cannot write {option} {path}: {exc.message}",
                              hint=f"choose another file for {option}") from exc


@click.group("devices")
def devices_group():
    """Device profiles (devices/*.yaml) and reachability checks."""


@spec_command(None, "edgekit.devices:list_profiles", cli_only=("as_json",))
@devices_group.command("list")
@json_option
def list_cmd(as_json):
    """Profiles on the search path ($EDGEKIT_DEVICES_DIR, ./devices, ~/.config/edgekit/devices, repo devices/)."""
    from rich.markup import escape

    from ..devices import search_path
    from ..devices.profiles import load_all

    found = load_all()  # a bad profile is listed with its error; the others still show
    rows = [s for _, s, e in found if s is not None]
    bad = [(n, e) for n, s, e in found if e is not None]

    def render(_):
        from rich.table import Table

        t = Table(title="device profiles")
        for c in ("name", "transport", "target", "arch", "threads", "cpu mask", "description"):
            t.add_column(c)
        for s in rows:
            target = s.host or s.serial or ("this machine" if s.transport == "local" else "-")
            t.add_row(s.name, s.transport, target, s.arch or "-", str(s.threads or "-"), s.cpu_mask or "-",
                      s.description)
        out.print(t)
        for n, e in bad:
            err.print(f"[yellow]warning:[/] profile {escape(n)} skipped: {escape(e.message)}"
                      + (f" (hint: {escape(e.hint)})" if e.hint else ""), highlight=False)
        err.print("search path: " + ", ".join(str(p) for p in search_path()), highlight=False)

    emit([s.to_dict() for s in rows] + [{"name": n, "error": e.message, "hint": e.hint} for n, e in bad], as_json,
         render)


@spec_command(None, "edgekit.devices:parse_device", cli_only=("as_json",))
@devices_group.command("show")
@click.argument("spec", metavar="NAME")
@json_option
def show_cmd(spec, as_json):
    """Show a profile (or a parsed ssh:// / adb:// spec)."""
    from ..devices import parse_device

    spec = parse_device(spec)

    def render(d):
        for k, v in d.items():
            if v not in (None, "", {}):
                out.print(f"[bold]{k}[/]: {v}", highlight=False)

    emit(spec.to_dict(), as_json, render)


@spec_command(CheckSpec, "edgekit.devices:check", cli_only=("as_json",))
@devices_group.command("check")
@spec_options(CheckSpec)
@json_option
def check_cmd(as_json, **kwargs):
    """Reach NAME and report arch, Python, numpy, interpreters, and how to install what is missing."""
    from ..devices import check

    spec = CheckSpec.from_dict(given(kwargs))
    rep = check(**spec.kwargs())

    def render(r):
        mark = "[green]ready[/]" if r.ready else f"[red]{r.status}[/]"
        out.print(f"[bold]{r.device}[/] ({r.transport}): {mark}", highlight=False)
        if r.error:
            out.print(f"  error: {r.error}", highlight=False)
        for k in ("machine", "cpu_model", "python", "numpy", "benchmark_binary"):
            if getattr(r, k):
                out.print(f"  {k}: {getattr(r, k)}", highlight=False)
        for rt, v in r.runtimes.items():
            out.print(f"  {rt}: {v.get('version') if v.get('available') else 'missing'}", highlight=False)
        for fix in r.fixes:
            out.print(f"  fix: {fix}", highlight=False)

    emit(rep, as_json, render)
    if not rep.ready:
        raise click.exceptions.Exit(1)


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
        c = compare(**spec.kwargs(), progress=cb)

    def render(c):
        from rich.markup import escape

        _render_results(c.rows)
        ci = f"{c.ci[0]:.3f}-{c.ci[1]:.3f}" if c.ci else "-"
        how = f"interleaved, {c.rounds} rounds" if c.kind == "artifacts" else "one device after the other"
        out.print(f"p50 {escape(c.a)} {c.a_p50_ms:.4f} ms, {escape(c.b)} {c.b_p50_ms:.4f} ms; time ratio A/B "
                  f"{c.ratio:.3f} (95% CI {ci}; {c.runs} runs each, {how})", highlight=False)
        out.print(f"[bold]{escape(c.verdict)}[/]", highlight=False)

    emit(c, as_json, render)


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
    from ..errors import InvalidArgument

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
    main.add_command(bench_cmd)
    main.add_command(compare_cmd)
    main.add_command(history_cmd)
    main.add_command(devices_group)
