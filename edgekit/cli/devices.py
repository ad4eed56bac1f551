"""``edgekit bench`` and ``edgekit devices list|show|check``: thin wrappers over :mod:`edgekit.devices`."""
from __future__ import annotations

import csv
import io
import json

import click

from ._output import emit, err, json_option, out, progress

_CONNECT_OPTIONS = [
    click.option("--python", "python", default=None, help="Python on the device (overrides the profile's python:)."),
    click.option("--benchmark-binary", default=None,
                 help="TFLite benchmark_model for devices without Python: a host file (pushed) or a device path."),
    click.option("--key-file", default=None, type=click.Path(dir_okay=False), help="SSH private key."),
    click.option("--known-hosts", default=None, type=click.Path(dir_okay=False),
                 help="known_hosts file (default: the profile's, else ~/.ssh/known_hosts)."),
    click.option("--accept-new-host-key", is_flag=True,
                 help="Trust an SSH host key seen for the first time and store it in known_hosts."),
    click.option("--connect-timeout", default=None, type=float, help="Seconds (default: the profile's, else 10)."),
]


def _connect_options(fn):
    for opt in reversed(_CONNECT_OPTIONS):
        fn = opt(fn)
    return fn


def _fmt(v, nd=2):
    return "-" if v is None else f"{v:.{nd}f}"


COLUMNS = ["model", "format", "precision", "size_mb", "device", "runtime", "threads", "p50_ms", "p90_ms", "mean_ms",
           "std_ms", "fps", "peak_memory_mb", "status"]


def _render_results(results) -> None:
    from rich.table import Table

    table = Table(title="edgekit bench", show_lines=False)
    for col in ("model", "format", "precision", "size MB", "device", "runtime", "threads", "p50 ms", "p90 ms",
                "mean±std ms", "FPS", "peak MB", "status"):
        table.add_column(col, justify="right" if col.endswith(("MB", "ms", "FPS", "threads")) else "left")
    for r in results:
        runtime = f"{r.runtime} {r.runtime_version}" if r.runtime and r.runtime_version else (r.runtime or "-")
        status = "[green]ok[/]" if r.ok else f"[red]{r.status}[/]: {r.error}"
        mean = "-" if r.mean_ms is None else f"{r.mean_ms:.3f}±{_fmt(r.std_ms, 3)}"
        peak = r.peak_memory_mb if r.peak_memory_mb is not None else r.memory_delta_mb
        table.add_row(r.model, r.format, r.precision, _fmt(r.size_mb, 3), r.device, runtime,
                      "-" if r.threads is None else str(r.threads), _fmt(r.p50_ms, 3), _fmt(r.p90_ms, 3), mean,
                      _fmt(r.fps, 1), _fmt(peak, 1), status)
    out.print(table)
    shown = set()
    for r in results:
        if not r.ok and r.hint and (r.device, r.hint) not in shown:
            shown.add((r.device, r.hint))
            err.print(f"[bold]hint[/] ({r.device}): {r.hint}", highlight=False)


def _write_csv(path: str, results) -> None:
    from .._io import write_text_atomic

    buf = io.StringIO()
    fields = [f for f in results[0].to_dict() if f != "raw"] if results else COLUMNS
    w = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
    w.writeheader()
    for r in results:
        row = r.to_dict()
        row["transfers"] = " ".join(row.get("transfers") or [])
        w.writerow(row)
    write_text_atomic(path, buf.getvalue())


@click.command("bench")
@click.argument("artifacts", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--device", "-d", "devices", multiple=True, default=("local",), show_default=True,
              help="local, ssh://user@host[:port], adb://SERIAL or a profile name (repeatable; run in parallel).")
@click.option("--threads", type=int, default=None, help="Interpreter threads (default: the profile's).")
@click.option("--runs", type=int, default=50, show_default=True)
@click.option("--warmup", type=int, default=5, show_default=True)
@click.option("--max-seconds", type=float, default=150.0, show_default=True, help="Time cap per phase.")
@click.option("--delegate", default=None, help="auto (XNNPACK), xnnpack, none, or PATH.so (external delegate).")
@click.option("--input", "input_", default=None, type=click.Path(dir_okay=False),
              help=".npy/.npz input instead of random data.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--timeout", type=float, default=None, help="Seconds per run (default: 2 x max-seconds + 120).")
@_connect_options
@click.option("--json", "json_out", default=None, type=click.Path(dir_okay=False),
              help="Write the results as JSON to this file ('-': stdout, no table).")
@click.option("--csv", "csv_out", default=None, type=click.Path(dir_okay=False), help="Write the results as CSV.")
@click.option("--history", default=None, type=click.Path(dir_okay=False),
              help="JSON-lines history to append to (default: $EDGEKIT_BENCH_HISTORY or "
                   "~/.cache/edgekit/bench_history.jsonl).")
@click.option("--no-history", is_flag=True, help="Do not record the results.")
def bench_cmd(artifacts, devices, threads, runs, warmup, max_seconds, delegate, input_, seed, timeout, python,
              benchmark_binary, key_file, known_hosts, accept_new_host_key, connect_timeout, json_out, csv_out,
              history, no_history):
    """Measure ARTIFACT(s) (.tflite/.onnx) on one or more devices; one row per artifact x device."""
    from ..devices import bench
    from ..devices.history import default_path

    hist = None if no_history else (history or default_path())
    for path, option in ((json_out, "--json"), (csv_out, "--csv"), (hist, "--history")):
        if path and path != "-":  # before the run: a bad output path must not throw the measurements away
            _check_writable(path, option)
    with progress(json_out != "-") as cb:
        results = bench(list(artifacts), list(devices), threads=threads, runs=runs, warmup=warmup,
                        max_seconds=max_seconds, delegate=delegate, input=input_, seed=seed, timeout=timeout,
                        python=python, benchmark_binary=benchmark_binary, key_file=key_file,
                        known_hosts=known_hosts, accept_new_host_key=accept_new_host_key,
                        connect_timeout=connect_timeout, history=hist, progress=cb)
    data = [r.to_dict() for r in results]
    if json_out == "-":
        click.echo(json.dumps(data, indent=2))
    else:
        _render_results(results)
        if json_out:
            from .._io import write_text_atomic
            write_text_atomic(json_out, json.dumps(data, indent=2))
    if csv_out:
        _write_csv(csv_out, results)
    if not any(r.ok for r in results):
        raise click.exceptions.Exit(1)


def _check_writable(path, option: str) -> None:
    from pathlib import Path

    from .._io import ensure_writable_dir
    from ..errors import InvalidArgument

    p = Path(path).expanduser()
    if p.is_dir():
        raise InvalidArgument(f"{option} {str(path)!r} is a directory", hint=f"give {option} a file path")
    try:
        ensure_writable_dir(p.parent)
    except InvalidArgument as exc:
        raise InvalidArgument(f"cannot write {option} {path}: {exc.message}",
                              hint=f"choose another file for {option}") from exc


@click.group("devices")
def devices_group():
    """Device profiles (devices/*.yaml) and reachability checks."""


@devices_group.command("list")
@json_option
def list_cmd(as_json):
    """Profiles on the search path ($EDGEKIT_DEVICES_DIR, ./devices, ~/.config/edgekit/devices, repo devices/)."""
    from ..devices import list_profiles, parse_device, search_path

    rows = [parse_device(n) for n in list_profiles()]

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
        err.print("search path: " + ", ".join(str(p) for p in search_path()), highlight=False)

    emit([s.to_dict() for s in rows], as_json, render)


@devices_group.command("show")
@click.argument("name")
@json_option
def show_cmd(name, as_json):
    """Show a profile (or a parsed ssh:// / adb:// spec)."""
    from ..devices import parse_device

    spec = parse_device(name)

    def render(d):
        for k, v in d.items():
            if v not in (None, "", {}):
                out.print(f"[bold]{k}[/]: {v}", highlight=False)

    emit(spec.to_dict(), as_json, render)


@devices_group.command("check")
@click.argument("name")
@_connect_options
@json_option
def check_cmd(name, python, benchmark_binary, key_file, known_hosts, accept_new_host_key, connect_timeout,
              as_json):
    """Reach NAME and report arch, Python, numpy, interpreters, and how to install what is missing."""
    from ..devices import check

    rep = check(name, python=python, benchmark_binary=benchmark_binary, key_file=key_file, known_hosts=known_hosts,
                accept_new_host_key=accept_new_host_key, connect_timeout=connect_timeout)

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


def register(main):
    main.add_command(bench_cmd)
    main.add_command(devices_group)
