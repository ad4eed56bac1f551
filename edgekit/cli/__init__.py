"""The ``edgekit`` command. Thin: each command builds its arguments, makes one API call and renders the result."""
from __future__ import annotations

import importlib
import os
import sys
import traceback
import warnings

import click
from rich.markup import escape

from .. import __version__
from .._signals import Terminated, clear, handle_termination, pending
from ..errors import EdgekitError, EdgekitWarning
from ._output import err

#: command modules; each defines ``register(main)``
COMMAND_MODULES = ("models", "export", "compress", "devices", "sweep", "doctor", "package")


class _Group(click.Group):
    """Turns EdgekitError into a one-line message and its exit code (2 for bad input); --debug shows tracebacks and
    is accepted anywhere on the command line (``edgekit export x --debug`` as well as ``edgekit --debug export x``)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        end = args.index("--") if "--" in args else len(args)  # after "--" every word is an argument
        if "--debug" in args[:end]:
            args = ["--debug", *[a for i, a in enumerate(args) if not (i < end and a == "--debug")]]
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:  # e.g. edgekit --bogus
            _usage_error(ctx, exc)

    def invoke(self, ctx: click.Context):
        try:
            return self._invoke(ctx)
        except click.UsageError as exc:  # click's own: bad value, unknown option or command, missing argument
            _usage_error(ctx, exc)

    def _invoke(self, ctx: click.Context):
        debug = bool(ctx.params.get("debug"))
        try:
            rv = super().invoke(ctx)
            if pending() is not None:  # a signal whose exception foreign code swallowed (edgekit._signals)
                raise Terminated(pending())
            return rv
        except EdgekitError as exc:
            if debug:
                traceback.print_exc()
            err.print(f"[bold red]error:[/] {escape(exc.message)}", highlight=False, markup=True, soft_wrap=True)
            if exc.hint:
                err.print(f"[bold]hint:[/] {escape(exc.hint)}", highlight=False, soft_wrap=True)
            ctx.exit(exc.exit_code)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM/SIGHUP (edgekit._signals): cleanup already ran
            err.print(f"[bold red]interrupted[/]{f' ({exc})' if isinstance(exc, Terminated) else ''}")
            clear()
            ctx.exit(getattr(exc, "exit_code", 130))
        except Exception as exc:  # noqa: BLE001 - last resort: still one line unless --debug
            if debug:
                traceback.print_exc()
            err.print(f"[bold red]internal error:[/] {type(exc).__name__}: {escape(str(exc))}", highlight=False,
                      soft_wrap=True)
            err.print("rerun with --debug for the traceback, and please report it")
            ctx.exit(1)


def _usage_error(ctx: click.Context, exc: click.UsageError):
    """click's parse errors in edgekit's form: one ``error:`` line, one ``hint:`` line naming the command's help."""
    if isinstance(exc, getattr(click.exceptions, "NoArgsIsHelpError", ())):  # bare ``edgekit``: click's help
        raise exc
    where = (exc.ctx or ctx).command_path
    err.print(f"[bold red]error:[/] {escape(exc.format_message())}", highlight=False, markup=True, soft_wrap=True)
    err.print(f"[bold]hint:[/] see '{escape(where)} --help'", highlight=False, soft_wrap=True)
    ctx.exit(2)


def _show_warning(message, category, filename, lineno, file=None, line=None):
    style = "bold yellow" if issubclass(category, EdgekitWarning) else "yellow"
    err.print(f"[{style}]warning:[/] {escape(str(message))}", highlight=False, soft_wrap=True)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, "--version", prog_name="edgekit")
@click.option("--debug", is_flag=True, help="Show full tracebacks.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """edgekit: Keras CNN -> compressed, exported, verified .tflite/.onnx -> latency measured on the device."""
    ctx.ensure_object(dict)["debug"] = debug
    handle_termination()  # SIGTERM/SIGHUP clean up like Ctrl-C
    if debug:  # show TensorFlow's native log lines too (edgekit._keras.quiet_native_logs)
        os.environ["EDGEKIT_TF_LOGS"] = "1"
    warnings.showwarning = _show_warning
    warnings.simplefilter("always", EdgekitWarning)


for _name in COMMAND_MODULES:
    importlib.import_module(f"{__name__}.{_name}").register(main)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
