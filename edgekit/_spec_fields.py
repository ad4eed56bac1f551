"""Spec fields: what a field means (:class:`Meta`, declared with :func:`option`), and how a value is checked
against a field's type and bounds (:func:`coerce`, :func:`expectation`). :mod:`edgekit._spec` builds on these."""
from __future__ import annotations

import dataclasses
import functools
import os
import types
import typing
from dataclasses import MISSING, dataclass
from typing import Any, Callable, Iterable, Mapping

_META = "edgekit"


@dataclass(frozen=True)
class Meta:
    """What a spec field means beyond its type and default (see :func:`option`)."""

    help: str = ""
    flag: str | None = None
    short: str | None = None
    choices: Any = None
    separator: str | None = None
    cli: bool = True
    recipe: bool = True
    argument: bool = False
    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    expect: str | None = None
    hint: str | None = None
    metavar: str | None = None
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def choice_names(self) -> list[str] | None:
        """The allowed values (canonical names of a registry, or the given sequence); None when free."""
        reg = self.registry()
        if reg is not None:
            return list(reg.list())
        if self.choices is None:
            return None
        values = self.choices() if callable(self.choices) else self.choices
        return [str(v) for v in values]

    def registry(self):
        values = self.choices() if callable(self.choices) else self.choices
        return values if hasattr(values, "resolve") and hasattr(values, "list") else None


def option(default: Any = MISSING, *, help: str = "", flag: str | None = None,  # noqa: A002 - click's word
           short: str | None = None, choices: Any = None, separator: str | None = None, cli: bool = True,
           recipe: bool = True, argument: bool = False, gt: float | None = None, ge: float | None = None,
           lt: float | None = None, le: float | None = None, expect: str | None = None, hint: str | None = None,
           metavar: str | None = None, **extra: Any) -> Any:
    """A spec field.

    ``default``: the API default (no default = required). ``help``: one line for ``--help`` and docs (choices and
    the default are appended automatically). ``flag``: the CLI declaration when not ``--field-name`` (e.g.
    ``"--format"``, ``"--include-top/--no-top"``); ``short``: e.g. ``"-q"``. ``choices``: a sequence, a
    :class:`~edgekit.registry.Registry`, or a zero-argument callable returning either (lazy: keeps imports light);
    registry values are resolved to their canonical name. ``separator``: a tuple field also takes ``"a,b"``
    (otherwise the CLI option is repeatable). ``cli=False``/``recipe=False``: Python-only (hooks, objects) or not a
    CLI option (structured values). ``argument``: a positional CLI argument. ``gt``/``ge``/``lt``/``le``: bounds.
    ``expect``: the wording of the expectation in errors (default from type and bounds); ``hint``: the fix shown
    with a bad value. ``extra``: free metadata read by other modules (e.g. which compression stage a flag feeds).
    """
    meta = Meta(help, flag, short, choices, separator, cli, recipe, argument, gt, ge, lt, le, expect, hint, metavar,
                dict(extra))
    if isinstance(default, (list, dict, set)):
        raise TypeError("spec defaults must be immutable (use a tuple)")
    return dataclasses.field(default=default, metadata={_META: meta})


def derived(default: Any = None) -> Any:
    """A field computed by the library (not an argument, option or recipe key), e.g. ExportSpec.qat."""
    return dataclasses.field(default=default, init=False, repr=False, compare=False,
                             metadata={_META: Meta(cli=False, recipe=False)})


@dataclass(frozen=True)
class FieldInfo:
    name: str
    type: Any
    default: Any
    meta: Meta

    @property
    def required(self) -> bool:
        return self.default is MISSING

    @property
    def flag_names(self) -> list[str]:
        decl = self.meta.flag or "--" + self.name.replace("_", "-")
        return [decl] + ([self.meta.short] if self.meta.short else [])


# -- types ---------------------------------------------------------------------------------------------------------
class _Mismatch(Exception):
    pass


def coerce(value: Any, tp: Any, separator: str | None = None) -> Any:
    """``value`` as type ``tp`` (int, float, bool, str, tuple[X, ...], dict, Callable, Any, unions, classes);
    raises _Mismatch. Accepted conversions: int -> float, os.PathLike -> str, list -> tuple, ``"a,b"`` -> tuple
    with ``separator``, a single item -> a 1-tuple."""
    if tp is Any or tp is object:
        return value
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise _Mismatch
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, separator)
            except _Mismatch:
                continue
        raise _Mismatch
    if value is None:
        raise _Mismatch
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _Mismatch
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _Mismatch
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise _Mismatch
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, os.PathLike):
            return os.fspath(value)
        raise _Mismatch
    if origin is tuple or tp is tuple:
        args = typing.get_args(tp)
        item = args[0] if args else Any
        if isinstance(value, (str, os.PathLike)) or not isinstance(value, Iterable) or isinstance(value, Mapping):
            if isinstance(value, str) and separator:
                value = [v.strip() for v in value.split(separator) if v.strip()]
            else:
                value = [value]
        return tuple(coerce(v, item) for v in value)
    if origin in (dict, Mapping) or tp in (dict, Mapping):
        if isinstance(value, Mapping):
            return dict(value)
        raise _Mismatch
    if origin is typing.get_origin(Callable) or tp is Callable:
        if callable(value):
            return value
        raise _Mismatch
    if isinstance(tp, type):
        if isinstance(value, tp):
            return value
        raise _Mismatch
    return value


_TYPE_WORDS = {int: "int", float: "a number", bool: "true or false", str: "a string", dict: "a mapping"}


def _type_word(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        words = [_type_word(a) for a in typing.get_args(tp) if a is not type(None)]
        return " or ".join(words)
    if origin is tuple or tp is tuple:
        args = typing.get_args(tp)
        inner = _type_word(args[0]) if args else "values"
        return f"a list of {inner.removeprefix('a ')}s" if inner.startswith("a ") else f"a list of {inner}"
    if origin in (dict, Mapping):
        return "a mapping"
    if origin is typing.get_origin(Callable) or tp is Callable:
        return "a callable"
    if tp in _TYPE_WORDS:
        return _TYPE_WORDS[tp]
    return getattr(tp, "__name__", str(tp))


def expectation(f: FieldInfo) -> str:
    """How an error words what ``f`` takes: ``int >= 0``, ``in (0, 1)``, ``true or false``, ..."""
    m = f.meta
    if m.expect:
        return m.expect
    word = _type_word(f.type)
    bounds = _bounds_text(m)
    if not bounds:
        return word
    if word == "a number":  # an interval already says "number"
        return bounds
    return f"{word} {bounds}"


def _bounds_text(m: Meta) -> str:
    low = m.gt if m.gt is not None else m.ge
    high = m.lt if m.lt is not None else m.le
    if low is not None and high is not None:
        return f"in {'(' if m.gt is not None else '['}{_num(low)}, {_num(high)}{')' if m.lt is not None else ']'}"
    if low is not None:
        return f"{'>' if m.gt is not None else '>='} {_num(low)}"
    if high is not None:
        return f"{'<' if m.lt is not None else '<='} {_num(high)}"
    return ""


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else str(v)


def _in_bounds(value: Any, m: Meta) -> bool:
    items = value if isinstance(value, tuple) else (value,)
    for v in items:
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            continue
        if (m.gt is not None and not v > m.gt) or (m.ge is not None and not v >= m.ge) or \
                (m.lt is not None and not v < m.lt) or (m.le is not None and not v <= m.le):
            return False
    return True


def _type_hint(f: FieldInfo) -> str:
    example = f.default if f.default not in (MISSING, None) else None
    if example is not None and not isinstance(example, (tuple, dict)):
        return f"write e.g. `{f.name}: {_yaml_scalar(example)}` (the default), or leave {f.name} out"
    want = expectation(f).replace("int", "a whole number", 1) if expectation(f).startswith("int") else expectation(f)
    return f"give {f.name} {want}, or leave it out for the default"


def _yaml_scalar(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b) and type(a) is type(b) or (a is None and b is None)
    except Exception:  # noqa: BLE001 - arrays and other objects without a plain ==
        return a is b


def _plain(value: Any) -> Any:
    """A JSON-ready form of a spec value."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and hasattr(value, "to_dict"):  # a nested spec
        return value.to_dict()
    name = getattr(value, "name", None) or getattr(value, "source", None) or getattr(value, "__name__", None)
    return f"<{type(value).__name__}{f' {name}' if isinstance(name, str) else ''}>"


@functools.lru_cache(maxsize=None)
def _field_infos(cls: type) -> list[FieldInfo]:
    hints = typing.get_type_hints(cls)
    infos = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        meta = f.metadata.get(_META) or Meta()
        default = f.default if f.default is not MISSING else (
            f.default_factory() if f.default_factory is not MISSING else MISSING)  # type: ignore[misc]
        infos.append(FieldInfo(f.name, hints.get(f.name, Any), default, meta))
    return infos
