"""One registry pattern for models, exporters, runtimes and device transports (timm's register/create/list)."""
from __future__ import annotations

import fnmatch
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Iterator, TypeVar

from .errors import UnknownNameError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """A registered object with its canonical name, aliases and free-form metadata."""

    name: str
    obj: T
    aliases: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)


class Registry(Generic[T]):
    """Name -> object table. ``get`` of an unknown name raises :class:`UnknownNameError` with a did-you-mean."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}
        self._aliases: dict[str, str] = {}

    def register(self, name: str | None = None, *, aliases: tuple[str, ...] | list[str] = (),
                 **meta: Any) -> Callable[[T], T]:
        """Decorator: register ``obj`` under ``name`` (default: its ``__name__``) and ``aliases``."""

        def deco(obj: T) -> T:
            self.add(name or getattr(obj, "__name__"), obj, aliases=aliases, **meta)
            return obj

        return deco

    def add(self, name: str, obj: T, *, aliases: tuple[str, ...] | list[str] = (), **meta: Any) -> Entry[T]:
        key = name.lower()
        if key in self._entries or key in self._aliases:
            warnings.warn(f"{self.kind} {name!r} registered twice; the later one wins", stacklevel=3)
        entry = Entry(key, obj, tuple(a.lower() for a in aliases), dict(meta))
        self._entries[key] = entry
        for alias in entry.aliases:
            self._aliases[alias] = key
        return entry

    def resolve(self, name: str) -> str:
        """Canonical name for ``name`` or an alias of it."""
        key = name.strip().lower()
        key = self._aliases.get(key, key)
        if key not in self._entries:
            raise UnknownNameError(self.kind, name, [*self._entries, *self._aliases])
        return key

    def entry(self, name: str) -> Entry[T]:
        return self._entries[self.resolve(name)]

    def get(self, name: str) -> T:
        return self.entry(name).obj

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = name.strip().lower()
        return key in self._entries or key in self._aliases

    def list(self, pattern: str | None = None, *, exclude: str | None = None) -> list[str]:
        """Sorted canonical names matching the fnmatch ``pattern`` (aliases match too), minus ``exclude``."""
        names = []
        for key, entry in self._entries.items():
            cands = (key, *entry.aliases)
            if pattern and not any(fnmatch.fnmatch(c, pattern.lower()) for c in cands):
                continue
            if exclude and any(fnmatch.fnmatch(c, exclude.lower()) for c in cands):
                continue
            names.append(key)
        return sorted(names)

    def entries(self, *, sort: bool = True) -> Iterator[Entry[T]]:
        """Every entry, by name (``sort=False``: in registration order)."""
        values = list(self._entries.values())
        return iter(sorted(values, key=lambda e: e.name) if sort else values)

    def __len__(self) -> int:
        return len(self._entries)
