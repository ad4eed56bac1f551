"""Terminal output for the CLI only: JSON for scripts, rich tables for people, progress and warnings on stderr."""
from __future__ import annotations

import contextlib
import json
import re
import sys
import time
from typing import Any, Callable, Iterator

import click
from rich.console import Console
from rich.errors import MarkupError
from rich.segment import Segment
from rich.text import Text
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .._jsonable import to_jsonable
from .._progress import Progress as ProgressFn

#: what a terminal would act on rather than show: C0 controls but newline and tab, DEL, C1 controls (0x9b is a CSI
#: on some terminals) and the bidirectional overrides/isolates ("Trojan Source" reordering)
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def escape_controls(text: str) -> str:
    """``text`` with every control character shown as a Python escape (``\\x1b``, ``\\u202e``): names read from
    files (custom ops, tensors, layers) must not move the cursor, recolour or retitle the user's terminal."""
    return _CONTROLS.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


class _SafeConsole(Console):
    """A rich Console that escapes control characters in every piece of text it writes (the one output boundary:
    tables, errors, warnings); rich's own styling and cursor codes (styles, control segments) pass. Strings are
    escaped before layout too, so that table columns fit the escaped text."""

    def render_str(self, text: str, **kwargs):
        try:
            return super().render_str(escape_controls(text), **kwargs)
        except MarkupError:  # a name from a file that looks like broken markup ('[/]'): shown as it is
            return super().render_str(escape_controls(text), **{**kwargs, "markup": False})


def plain(value: Any) -> Text:
    """A table cell or line part from data (names from files, devices, the history): shown literally, never read
    as rich markup (``[/]`` broke the table, ``[link=...]`` would style it), control characters escaped."""
    return Text(escape_controls(str(value)))

    def _render_buffer(self, buffer):  # rich's last step before the text is written
        return super()._render_buffer(seg if seg.control else Segment(escape_controls(seg.text), seg.style)
                                      for seg in buffer)


# Piped output (CI logs, `| tee`) would be cut at rich's 80-column default: give wide tables room there.
_PIPE_WIDTH = 220
out = _SafeConsole(soft_wrap=True, width=None if sys.stdout.isatty() else _PIPE_WIDTH)
err = _SafeConsole(stderr=True, width=None if sys.stderr.isatty() else _PIPE_WIDTH)

json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON on stdout.")


def json_requested(args: list[str]) -> bool:
    """Whether the command line has ``--json`` (the flag, or bench's ``--json FILE|-``), read from the raw
    arguments so that it is known even when parsing them fails: its failure is then reported on stdout as JSON."""
    end = args.index("--") if "--" in args else len(args)
    return any(a == "--json" or a.startswith("--json=") for a in args[:end])


def json_error(message: str, hint: str | None, exit_code: int) -> None:
    """The failure of a ``--json`` command, on stdout as one JSON object (what scripts parse instead of nothing)."""
    click.echo(json.dumps({"error": message, "hint": hint, "exit_code": exit_code}, indent=2))


def emit(data: Any, as_json: bool, render: Callable[[Any], None]) -> None:
    """Print ``data`` as JSON (``--json``) or through ``render`` (rich)."""
    if as_json:
        click.echo(json.dumps(to_jsonable(data), indent=2))
    else:
        render(data)


#: seconds between two progress lines of one task when stderr is not a terminal (CI logs)
LINE_INTERVAL = 10.0


@contextlib.contextmanager
def progress(enabled: bool = True) -> Iterator[ProgressFn]:
    """A progress callback for library calls, drawn on stderr while the block runs: bars on a terminal, plain
    lines elsewhere (CI logs, ``2> file``) so a long run is never silent there."""
    if not enabled:
        yield lambda task, done, total: None
        return
    if not sys.stderr.isatty():
        yield _line_progress()
        return
    bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=err, transient=True)
    tasks: dict[str, Any] = {}

    def update(task: str, done: int, total: int | None) -> None:
        if task not in tasks:
            tasks[task] = bars.add_task(task, total=total)
        bars.update(tasks[task], completed=done, total=total)

    with bars:
        yield update


def _line_progress(interval: float | None = None) -> ProgressFn:
    """``progress: [  12s] task 3/10`` lines: when a task completes, and at most every ``interval`` seconds while it
    runs (a command that fails or finishes quickly prints none)."""
    t0 = time.monotonic()
    last: dict[str, float | None] = {}  # task -> time of its last line (or first call); None once completed

    def update(task: str, done: int, total: int | None) -> None:
        now = time.monotonic()
        finished = total is not None and done >= total
        if task not in last:
            last[task] = now
            if not finished:
                return
        if last[task] is None or (not finished and now - last[task] < (interval or LINE_INTERVAL)):
            return
        last[task] = None if finished else now
        count = f"{done}/{total}" if total is not None else str(done)
        click.echo(escape_controls(f"progress: [{now - t0:6.0f}s] {task} {count}"), err=True)

    return update
