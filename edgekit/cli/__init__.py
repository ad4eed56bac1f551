"""The ``edgekit`` command. Thin: each command builds its arguments, makes one API call and renders the result."""
from __future__ import annotations

import errno
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
from ._output import err, json_error, json_requested

_JSON = "edgekit.json_errors"  # ctx.meta key: the command line has --json, so failures go to stdout as JSON too

#: command modules; each defines ``register(main)``
COMMAND_MODULES = ("models", "export", "compress", "bench", "compare", "history", "devices", "sweep", "doctor",
                   "package")


class _Group(click.Group):
    """Turns EdgekitError into a one-line message and its exit code (2 for bad input); --debug shows tracebacks and
    is accepted anywhere on the command line (``edgekit export x --debug`` as well as ``edgekit --debug export x``)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        end = args.index("--") if "--" in args else len(args)  # after "--" every word is an argument
        if "--debug" in args[:end]:
            args = ["--debug", *[a for i, a in enumerate(args) if not (i < end and a == "--debug")]]
        ctx.meta[_JSON] = json_requested(args)
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
            _fail(ctx, exc.message, exc.hint, exc.exit_code)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM/SIGHUP (edgekit._signals): cleanup already ran
            what = f"interrupted{f' ({exc})' if isinstance(exc, Terminated) else ''}"
            err.print(f"[bold red]{escape(what)}[/]")
            clear()
            code = getattr(exc, "exit_code", 130)
            if ctx.meta.get(_JSON):
                json_error(what, None, code)
            ctx.exit(code)
        except RecursionError:  # a parser (YAML, JSON, protobuf) or a walk over a structure nested in a file
            if debug:
                traceback.print_exc()
            _fail(ctx, "an input file nests its structure too deeply to be read (Python's recursion limit)",
                  "check the files this command reads (a recipe, a config, a profile, a model's config): nothing "
                  "edgekit writes nests that deep", 2)
        except OSError as exc:
            if debug:
                traceback.print_exc()
            if exc.errno in _OS_HINTS:  # the machine's state, not a bug: a full disk, a name too long, ...
                where = f": {exc.filename}" if exc.filename else ""
                _fail(ctx, f"{exc.strerror or exc}{where}", _OS_HINTS[exc.errno], 2)
            _internal(ctx, exc)
        except Exception as exc:  # noqa: BLE001 - last resort: still one line unless --debug
            if debug:
                traceback.print_exc()
            _internal(ctx, exc)


#: OSErrors that reach the CLI boundary and are the machine's state rather than edgekit's bug -> their hint
_OS_HINTS = {
    errno.ENOSPC: "the disk is full: free some space (or choose another --out / $TMPDIR) and run again; nothing "
                  "partial was kept",
    errno.EDQUOT: "your disk quota is exhausted: free some space or choose another --out, and run again",
    errno.ENAMETOOLONG: "a file name is longer than the file system takes (255 bytes per name): use a shorter one",
    errno.EROFS: "that file system is read-only: choose a writable folder",
    errno.EACCES: "you lack the permission for that path: choose another one or fix its permissions",
    errno.EPERM: "the operation is not permitted on that path: choose another one",
    errno.ELOOP: "that path has too many levels of symbolic links (a loop?): give the real path",
    errno.EFBIG: "the file is larger than the file system takes: choose another folder",
    errno.EMFILE: "too many open files: raise the limit (ulimit -n) and run again",
}


def _internal(ctx: click.Context, exc: BaseException):
    message = f"{type(exc).__name__}: {exc}"
    err.print(f"[bold red]internal error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    err.print("rerun with --debug for the traceback, and please report it")
    if ctx.meta.get(_JSON):
        json_error(f"internal error: {message}", "rerun with --debug for the traceback, and please report it", 1)
    ctx.exit(1)


def _fail(ctx: click.Context, message: str, hint: str | None, code: int):
    """``error:`` + ``hint:`` on stderr, and with --json the same as a JSON object on stdout; exit ``code``."""
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, markup=True, soft_wrap=True)
    if hint:
        err.print(f"[bold]hint:[/] {escape(hint)}", highlight=False, soft_wrap=True)
    if ctx.find_root().meta.get(_JSON):
        json_error(message, hint, code)
    ctx.exit(code)


def _usage_error(ctx: click.Context, exc: click.UsageError):
    """click's parse errors in edgekit's form: one ``error:`` line, one ``hint:`` line naming the command's help."""
    if isinstance(exc, getattr(click.exceptions, "NoArgsIsHelpError", ())):  # bare ``edgekit``: click's help
        raise exc
    where = (exc.ctx or ctx).command_path
    _fail(ctx, exc.format_message(), f"see '{where} --help'", 2)


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
