"""Terminal output for the CLI only: JSON for scripts, rich tables for people, progress and warnings on stderr."""
from __future__ import annotations

import contextlib
import json
import sys
from typing import Any, Callable, Iterator

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .._jsonable import to_jsonable
from .._progress import Progress as ProgressFn

# Piped output (CI logs, `| tee`) would be cut at rich's 80-column default: give wide tables room there.
_PIPE_WIDTH = 220
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else _PIPE_WIDTH)
err = Console(stderr=True, width=None if sys.stderr.isatty() else _PIPE_WIDTH)

json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON on stdout.")


def emit(data: Any, as_json: bool, render: Callable[[Any], None]) -> None:
    """Print ``data`` as JSON (``--json``) or through ``render`` (rich)."""
    if as_json:
        click.echo(json.dumps(to_jsonable(data), indent=2))
    else:
        render(data)


@contextlib.contextmanager
def progress(enabled: bool = True) -> Iterator[ProgressFn]:
    """A progress callback for library calls, drawn on stderr while the block runs."""
    if not enabled or not sys.stderr.isatty():
        yield lambda task, done, total: None
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
