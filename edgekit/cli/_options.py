"""Click options generated from spec classes: a spec field is a CLI option (``--field-name``), the same-named
Python argument and the same recipe key. Commands declare their spec with :func:`spec_command`; their options are
whatever the spec holds (plus a few output options such as ``--json``)."""
from __future__ import annotations

import typing
from typing import Any, Callable, Iterable

import click

from .._spec import FieldInfo, Spec

#: the Python API each command calls (``module:function``) and its CLI-only parameters; read by the test that
#: proves CLI option = API argument = recipe key for every command
_API_ATTR = "edgekit_api"


class SpecOption(click.Option):
    """A click option for a spec field; its help (choices, default) is rendered only when ``--help`` asks, so the
    registries behind the choices are not imported at startup."""

    def __init__(self, *args: Any, spec_field: FieldInfo, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.spec_field = spec_field

    def get_help_record(self, ctx: click.Context):
        self.help = field_help(self.spec_field)
        return super().get_help_record(ctx)


def field_help(f: FieldInfo) -> str:
    """The field's help text plus its choices and default."""
    text = f.meta.help.rstrip()
    names = f.meta.choice_names()
    if names is not None and len(names) <= 12:
        text += f" One of: {', '.join(names)}."
    if not f.required and f.default not in (None, False, ()) and "default" not in text:
        default = ",".join(map(str, f.default)) if isinstance(f.default, tuple) else f.default
        text += f" [default: {default}]"
    return text


def _click_type(tp: Any) -> Any:
    """int/float/str click type of a field type (None: a flag or free text)."""
    args = [a for a in typing.get_args(tp) if a is not type(None)] if typing.get_origin(tp) in (
        typing.Union, getattr(__import__("types"), "UnionType")) else [tp]
    base = args[0] if len(args) == 1 else str
    if typing.get_origin(base) is tuple:
        inner = typing.get_args(base)
        base = inner[0] if inner else str
    return {int: click.INT, float: click.FLOAT}.get(base, click.STRING)


def _is_bool(tp: Any) -> bool:
    return tp is bool or (typing.get_origin(tp) is not None and set(typing.get_args(tp)) <= {bool, type(None)})


def _is_tuple(tp: Any) -> bool:
    args = typing.get_args(tp) if typing.get_origin(tp) is not None else ()
    return typing.get_origin(tp) is tuple or any(typing.get_origin(a) is tuple for a in args)


def click_param(f: FieldInfo, *, argument_required: bool = True) -> click.Parameter:
    """The click parameter of one spec field (every option defaults to None = "not given": the spec's default)."""
    if f.meta.argument:
        nargs = -1 if _is_tuple(f.type) else 1
        metavar = f.meta.metavar if argument_required or not f.meta.metavar else f"[{f.meta.metavar}]"
        return click.Argument([f.name], required=argument_required, nargs=nargs, metavar=metavar)
    decls = [*f.flag_names]
    if _is_bool(f.type):
        if "/" not in decls[0] and f.default is True:
            decls[0] = f"{decls[0]}/--no-{decls[0][2:]}"
        flag = {} if "/" in decls[0] else {"is_flag": True}
        return SpecOption([*decls, f.name], spec_field=f, default=None, help=f.meta.help, **flag)
    multiple = _is_tuple(f.type) and not f.meta.separator
    return SpecOption([*decls, f.name], spec_field=f, type=_click_type(f.type), multiple=multiple,
                      default=None, required=f.required, metavar=f.meta.metavar, help=f.meta.help)


def spec_options(spec_cls: type[Spec], *, exclude: Iterable[str] = (), argument_required: bool = True
                 ) -> Callable[[Callable], Callable]:
    """Decorator adding one click parameter per CLI field of ``spec_cls`` (minus ``exclude``), in field order."""
    skip = set(exclude)

    def deco(fn: Callable) -> Callable:
        fields = [f for f in spec_cls.field_infos() if f.meta.cli and f.name not in skip]
        for f in reversed(fields):
            param = click_param(f, argument_required=argument_required)
            fn.__click_params__ = [*getattr(fn, "__click_params__", []), param]  # type: ignore[attr-defined]
        return fn

    return deco


def given(kwargs: dict[str, Any], spec_cls: type[Spec] | None = None) -> dict[str, Any]:
    """The options the user set (None and empty tuples mean: the spec's default); with ``spec_cls``, only its
    fields (popped from ``kwargs``)."""
    names = list(kwargs) if spec_cls is None else [k for k in spec_cls.keys() if k in kwargs]
    picked = {k: kwargs.pop(k) if spec_cls is not None else kwargs[k] for k in names}
    return {k: v for k, v in picked.items() if v is not None and v != ()}


def spec_command(spec_cls: type[Spec] | None, api: str, *, cli_only: Iterable[str] = (),
                 api_only: Iterable[str] = (), exclude: Iterable[str] = ()) -> Callable[[click.Command], click.Command]:
    """Record on a click command which spec it is built from (minus ``exclude``d fields), which API it calls
    (``"module:function"``), and its CLI-only (output) and API-only (runtime) parameters. The test proving CLI
    option = API argument = recipe key for every command reads these; a command without it fails that test."""

    def deco(cmd: click.Command) -> click.Command:
        setattr(cmd, _API_ATTR, {"spec": spec_cls, "api": api, "cli_only": tuple(cli_only),
                                 "api_only": tuple(api_only), "exclude": tuple(exclude)})
        return cmd

    return deco


