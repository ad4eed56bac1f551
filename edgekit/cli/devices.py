"""``edgekit devices list|show|check``: device profiles and reachability, thin wrappers over
:mod:`edgekit.devices`."""
from __future__ import annotations

import click

from ..specs import CheckSpec
from ._options import given, spec_command, spec_options
from ._output import emit, err, json_option, out


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
    rep = check(spec=spec)

    def render(r):
        mark = "[green]ready[/]" if r.ready else f"[red]{r.status}[/]"
        out.print(f"[bold]{r.device}[/] ({r.transport}): {mark}", highlight=False)
        if r.error:
            out.print(f"  error: {r.error}", highlight=False)
        for k in ("machine", "cpu", "cpu_model", "python", "numpy", "benchmark_binary"):
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
    main.add_command(devices_group)
