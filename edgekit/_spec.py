"""Typed specs: one frozen dataclass per operation is at once its Python keyword arguments, its CLI options and its
recipe keys.

A spec field is declared with :func:`option` (help text, CLI flag, choices from a registry, bounds, ...). A spec is
validated once, when it is built: unknown keys get a did-you-mean, every value is type-checked naming its key,
registry choices are resolved (aliases accepted, canonical name stored), bounds and the spec's own ``validate``
rules are checked. ``to_dict``/``from_dict`` round-trip through JSON/YAML; :func:`takes_spec` turns a function of a
spec into the keyword API; ``edgekit.cli._options.spec_options`` turns a spec class into click options.

Adding a field to a spec class therefore adds the Python argument, the CLI option and the recipe key at once.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import inspect
import os
import types
import typing
from dataclasses import MISSING, dataclass
from typing import Any, Callable, ClassVar, Iterable, Mapping, Sequence, TypeVar

from .errors import InvalidArgument, UnknownNameError, did_you_mean

S = TypeVar("S", bound="Spec")
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


class Spec:
    """Base of every spec: a frozen, keyword-only dataclass validated when built.

    Subclasses are declared with ``@spec`` (= ``dataclass(frozen=True, kw_only=True)``), fields with
    :func:`option`, and may override :meth:`validate` for rules across fields. ``error`` is the exception class
    raised for a bad value; ``label`` prefixes messages (e.g. ``"prune: sparsity must be in (0, 1)"``).
    """

    error: ClassVar[type[InvalidArgument]] = InvalidArgument
    label: ClassVar[str | None] = None

    def __post_init__(self) -> None:
        for f in self.field_infos():
            value = getattr(self, f.name)
            new = self.check_field(f, value)
            if new is not value:
                object.__setattr__(self, f.name, new)
        self.validate()

    # -- hooks ------------------------------------------------------------------------------------------------------
    def validate(self) -> None:
        """Rules across fields; raise ``self.fail(...)``. Runs after every field was checked and coerced."""

    # -- introspection ------------------------------------------------------------------------------------------
    @classmethod
    def field_infos(cls) -> list[FieldInfo]:
        return _field_infos(cls)

    @classmethod
    def field(cls, name: str) -> FieldInfo:
        for f in cls.field_infos():
            if f.name == name:
                return f
        raise KeyError(name)

    @classmethod
    def keys(cls) -> list[str]:
        """Every argument of the spec (the Python API's keyword arguments)."""
        return [f.name for f in cls.field_infos()]

    @classmethod
    def cli_keys(cls) -> list[str]:
        return [f.name for f in cls.field_infos() if f.meta.cli]

    @classmethod
    def recipe_keys(cls) -> list[str]:
        return [f.name for f in cls.field_infos() if f.meta.recipe]

    # -- construction -------------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls: type[S], data: Mapping[str, Any], *, where: str | None = None) -> S:
        """Build from a mapping (a recipe, JSON): unknown keys get a did-you-mean, missing required keys are named,
        values are type-checked. ``where`` (e.g. the recipe file) prefixes error messages."""
        if not isinstance(data, Mapping):
            raise cls.error(f"{where or cls._name()}: expected a mapping of keys to values; received "
                            f"{type(data).__name__} {data!r}"[:300], hint="write one `key: value` per line")
        known = cls.keys()
        for key in data:
            if key not in known:
                close = did_you_mean(str(key), known)
                raise cls.error(f"{where or cls._name()}: unknown key {key!r}",
                                hint=close or f"known keys: {', '.join(known)}")
        for f in cls.field_infos():
            if f.required and data.get(f.name) is None:
                raise cls.error(f"{where or cls._name()}: missing required key {f.name!r}",
                                hint=f.meta.help or None)
        if where is None:
            return cls(**data)  # type: ignore[call-arg]
        try:
            return cls(**data)  # type: ignore[call-arg]
        except UnknownNameError as exc:  # keep the type (callers read .kind/.known); name where it came from
            exc.message = f"{where}: {exc.message}"
            exc.args = (exc.message,)
            raise
        except InvalidArgument as exc:
            raise type(exc)(f"{where}: {exc.message}", hint=exc.hint) from exc

    @classmethod
    def build(cls: type[S], spec: S | Mapping[str, Any] | None = None, /, **values: Any) -> S:
        """A spec from a spec object and/or keyword values (``values`` override the spec's)."""
        if spec is None:
            return cls.from_dict(values)
        if isinstance(spec, Mapping):
            return cls.from_dict({**spec, **values})
        if not isinstance(spec, cls):
            raise InvalidArgument(f"spec must be a {cls.__name__}; received {type(spec).__name__}")
        return spec.replace(**values) if values else spec

    def replace(self: S, **changes: Any) -> S:
        """A copy with ``changes`` (validated again; unknown keys get a did-you-mean)."""
        if not changes:
            return self
        data = {f.name: getattr(self, f.name) for f in self.field_infos()}
        new = type(self).from_dict({**data, **changes})
        for f in dataclasses.fields(self):
            if not f.init:
                object.__setattr__(new, f.name, getattr(self, f.name))
        return new

    def with_derived(self: S, **values: Any) -> S:
        """A copy with library-computed (``derived``) fields set, validated again."""
        new = copy.copy(self)
        for k, v in values.items():
            object.__setattr__(new, k, v)
        new.validate()
        return new

    # -- output -------------------------------------------------------------------------------------------------
    def to_dict(self, *, given_only: bool = False) -> dict[str, Any]:
        """JSON-ready mapping of every argument (``given_only``: only those that differ from their default).
        Objects that are not plain data (a keras.Model, a Dataset, a callable) become a short description."""
        out = {}
        for f in self.field_infos():
            value = getattr(self, f.name)
            if given_only and not f.required and _same(value, f.default):
                continue
            out[f.name] = _plain(value)
        return out

    def kwargs(self) -> dict[str, Any]:
        """Every argument as its value: ``fn(**spec.kwargs())`` for an API that takes the fields as keywords."""
        return {f.name: getattr(self, f.name) for f in self.field_infos()}

    def given(self) -> dict[str, Any]:
        """The arguments that differ from their defaults, as values (not described)."""
        return {f.name: getattr(self, f.name) for f in self.field_infos()
                if f.required or not _same(getattr(self, f.name), f.default)}

    # -- errors ---------------------------------------------------------------------------------------------------
    def fail(self, message: str, hint: str | None = None) -> InvalidArgument:
        """The error to raise for ``message`` (prefixed with the spec's label)."""
        return self._fail(message, hint)

    @classmethod
    def _fail(cls, message: str, hint: str | None = None) -> InvalidArgument:
        return cls.error(f"{cls.label}: {message}" if cls.label else message, hint=hint)

    @classmethod
    def _name(cls) -> str:
        return cls.label or cls.__name__

    # -- checking one value ---------------------------------------------------------------------------------------
    @classmethod
    def check_field(cls, f: FieldInfo, value: Any) -> Any:
        """``value`` checked and coerced for field ``f`` (type, registry choices, bounds); raises ``cls.error``."""
        if value is MISSING:
            raise cls._fail(f"missing required argument {f.name!r}")
        try:
            value = coerce(value, f.type, f.meta.separator)
        except _Mismatch:
            raise cls._fail(f"{f.name} must be {expectation(f)}; received {_short(value)}",
                            hint=f.meta.hint or _type_hint(f)) from None
        if value is None:
            return value
        reg = f.meta.registry()
        if reg is not None:
            items = value if isinstance(value, tuple) else (value,)
            resolved = tuple(reg.resolve(str(v)) for v in items)  # UnknownNameError with did-you-mean
            return resolved if isinstance(value, tuple) else resolved[0]
        names = f.meta.choice_names()
        if names is not None:
            for v in value if isinstance(value, tuple) else (value,):
                if str(v) not in names:
                    close = did_you_mean(str(v), names)
                    raise cls._fail(f"unknown {f.name} {v!r}", hint=close or f"use one of {', '.join(names)}")
        if not _in_bounds(value, f.meta):
            raise cls._fail(f"{f.name} must be {f.meta.expect or _bounds_text(f.meta)}; received {_short(value)}",
                            hint=f.meta.hint)
        return value


def spec(cls: type[S]) -> type[S]:
    """Class decorator for specs: a frozen, keyword-only dataclass."""
    return dataclass(frozen=True, kw_only=True)(cls)


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
    if isinstance(value, Spec):
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


# -- the keyword API -------------------------------------------------------------------------------------------------
def takes_spec(spec_cls: type[Spec], *, positional: Sequence[str] = ()) -> Callable[[Callable], Callable]:
    """Decorator: ``fn(spec, **runtime)`` becomes ``fn(*positional, spec=None, **fields, **runtime)``.

    The public function takes every spec field as a keyword argument (``positional`` ones also by position) and
    also a ready ``spec=`` object (keyword values then override its fields). ``runtime`` are ``fn``'s own
    keyword-only parameters (e.g. ``progress``, ``callbacks``): not spec fields, never recipe keys. The signature
    seen by ``help()``/``inspect`` lists them all.
    """

    def deco(fn: Callable) -> Callable:
        own = [p for p in inspect.signature(fn).parameters.values() if p.name != "spec"]
        runtime = {p.name for p in own}
        fields = spec_cls.field_infos()
        clash = runtime & {f.name for f in fields}
        if clash:
            raise TypeError(f"{fn.__name__}: runtime parameters {clash} clash with {spec_cls.__name__} fields")

        @functools.wraps(fn)
        def wrapper(*args: Any, spec: Any = None, **kwargs: Any) -> Any:
            if len(args) > len(positional):
                raise TypeError(f"{fn.__name__}() takes {len(positional)} positional argument(s); the others are "
                                f"keywords")
            rt = {k: kwargs.pop(k) for k in list(kwargs) if k in runtime}
            values = {**dict(zip(positional, args)), **kwargs}
            if spec is not None:
                values = {k: v for k, v in values.items() if not (k in positional and v is None)}
            return fn(spec_cls.build(spec, **values), **rt)

        params = [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None,
                                    annotation=spec_cls.field(name).type) for name in positional]
        for f in fields:
            if f.name not in positional:
                params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY,
                                                default=inspect.Parameter.empty if f.required else f.default,
                                                annotation=f.type))
        params.append(inspect.Parameter("spec", inspect.Parameter.KEYWORD_ONLY, default=None,
                                        annotation=spec_cls | None))
        params += [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own]
        wrapper.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            params, return_annotation=inspect.signature(fn).return_annotation)
        wrapper.spec_class = spec_cls  # type: ignore[attr-defined]
        wrapper.runtime_parameters = tuple(sorted(runtime))  # type: ignore[attr-defined]
        return wrapper

    return deco
