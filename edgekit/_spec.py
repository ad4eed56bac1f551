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
from dataclasses import MISSING, dataclass
from typing import Any, Callable, ClassVar, Mapping, Sequence, TypeVar

from ._spec_fields import (FieldInfo, Meta, _bounds_text, _field_infos, _in_bounds, _Mismatch, _plain, _same, _short,
                           _type_hint, coerce, derived, expectation, option)
from .errors import InvalidArgument, UnknownNameError, did_you_mean

__all__ = ["Spec", "spec", "option", "derived", "takes_spec", "FieldInfo", "Meta", "MISSING", "coerce", "expectation"]

S = TypeVar("S", bound="Spec")


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
