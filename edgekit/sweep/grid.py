"""Grid parsing and expansion: ``--grid alpha=0.25,0.5 --grid resolution=32,64 --grid model=mobilenet_v1,...``
(or a YAML ``grid:`` mapping) -> one :class:`Combo` per model to train.

A grid key is any zoo option (``alpha``, ``resolution`` or ``rho``, ``depth_multiplier``, ``dropout``, ...) or
``model`` (families). A key applies to the families that take it: with ``--grid model=mobilenet_v1,efficientnet_b0
--grid alpha=0.5,1.0`` EfficientNet-B0 (no alpha) is swept once per value of the other keys. A key that no family
of the sweep takes is an error, as are empty lists and repeated values. Values are read like YAML scalars
(``0.5`` -> float, ``32`` -> int, ``true`` -> bool). Checking the values themselves (alpha in (0, 1.5],
resolution >= the family's minimum ...) is the zoo's job: the sweep builds every model before it trains any.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from ..errors import InvalidArgument, did_you_mean
from .. import models as zoo

#: zoo options that are not grid keys: they do not change what is measured, or a sweep cannot use them
NOT_GRID = ("include_top", "weights")
#: the most models one sweep trains (each is built, trained and exported: 200 is already days of work); larger
#: grids are refused before anything is built. A key's value list is bounded too (parsing stays cheap).
MAX_MODELS = 200
MAX_VALUES = 10_000


@dataclass(frozen=True)
class Combo:
    """One model the sweep trains: a zoo family, its full create() options, and this combo's grid values."""

    model: str
    options: tuple[tuple[str, Any], ...]       # every create() option (fixed + grid), sorted
    grid: tuple[tuple[str, Any], ...]          # the grid's values for this combo, in grid order (with model)
    skipped: tuple[str, ...] = field(default=(), compare=False)   # grid keys this family does not take

    @property
    def option_dict(self) -> dict[str, Any]:
        return dict(self.options)

    @property
    def grid_dict(self) -> dict[str, Any]:
        return dict(self.grid)


def _scalar(text: str) -> Any:
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return text if isinstance(value, (list, dict)) or value is None else value


def norm_key(key: str) -> str:
    return str(key).strip().replace("-", "_").lower()


def parse_grid(items: Iterable[str] | Mapping[str, Any] | None) -> dict[str, tuple]:
    """``["alpha=0.25,0.5", "resolution=32"]`` or ``{"alpha": [0.25, 0.5]}`` -> ``{"alpha": (0.25, 0.5), ...}``."""
    if not items:
        return {}
    grid: dict[str, tuple] = {}
    if isinstance(items, Mapping):
        pairs = []
        for k, v in items.items():
            if isinstance(v, str) and "," in v:
                v = [_scalar(s.strip()) for s in v.split(",")]
            pairs.append((k, list(v) if isinstance(v, (list, tuple)) else [v]))
    else:
        pairs = []
        for item in items:
            text = str(item)
            if "=" not in text:
                raise InvalidArgument(f"--grid {text!r} is not KEY=V1,V2,...",
                                      hint="e.g. --grid alpha=0.25,0.5,1.0 --grid resolution=32,48,64")
            key, _, values = text.partition("=")
            pairs.append((key, [_scalar(v.strip()) for v in values.split(",") if v.strip()]))
    for key, values in pairs:
        k = norm_key(key)
        if not k:
            raise InvalidArgument("a --grid entry has no key", hint="e.g. --grid alpha=0.25,0.5")
        if k in grid:
            raise InvalidArgument(f"grid key {k!r} is given twice", hint=f"list every value once: --grid {k}=A,B,C")
        if not values or any(v is None or v == "" for v in values):
            raise InvalidArgument(f"grid key {k!r} has an empty value list" if not values else
                                  f"grid key {k!r} has an empty value", hint=f"e.g. --grid {k}=V1,V2")
        if len(values) > MAX_VALUES:
            raise InvalidArgument(f"grid key {k!r} lists {len(values):,} values; a sweep trains at most {MAX_MODELS} "
                                  "models", hint="sweep a coarse grid first, then a finer one around the best point")
        seen: set = set()
        for v in values:
            try:
                mark = (type(v), v)
                hash(mark)
            except TypeError:  # an unhashable value (a YAML mapping): compared by its text
                mark = (type(v), repr(v))
            if mark in seen:
                raise InvalidArgument(f"grid key {k!r} lists {v!r} twice", hint="list every value once")
            seen.add(mark)
        grid[k] = tuple(values)
    return grid


def expand(models: Sequence[str], grid: Mapping[str, tuple], fixed: Mapping[str, Any]) -> list[Combo]:
    """The models to train: every family x the product of the grid keys it takes, with ``fixed`` options.

    ``models`` are zoo names (``grid["model"]`` when the grid sweeps families). Raises InvalidArgument for an empty
    grid, a key no family takes (did-you-mean), a key both fixed and swept, rho together with resolution, and
    model files (a sweep builds zoo models).
    """

    if not grid or not any(grid.values()):
        raise InvalidArgument("the grid is empty: nothing to sweep",
                              hint="give at least one --grid KEY=V1,V2 (e.g. --grid alpha=0.25,0.5,1.0)")
    families = list(grid.get("model", ())) or list(models)
    if not families:
        raise InvalidArgument("no model to sweep", hint="give MODEL (e.g. mobilenet_v1) or --grid model=A,B")
    if "model" in grid and models and any(m for m in models):
        raise InvalidArgument("MODEL is given and the grid sweeps model= too",
                              hint="drop MODEL, or drop --grid model=...")
    names = []
    for fam in families:
        if not isinstance(fam, str) or zoo.is_model_file(fam):
            raise InvalidArgument(f"sweep builds zoo models; {fam!r} is not a zoo name",
                                  hint="see `edgekit models`; for one model file use edgekit export + bench")
        name = zoo.MODELS.resolve(fam)   # unknown names: UnknownNameError with a did-you-mean
        if name in names:
            raise InvalidArgument(f"model {fam!r} is listed twice (as {name})", hint="list every model once")
        names.append(name)
    accepted = {n: set(zoo.info(n).options) - set(NOT_GRID) for n in names}
    union = set().union(*accepted.values())
    unused = sorted(k for k, v in fixed.items() if v is not None and k not in union | {"weights"})
    if unused:
        raise InvalidArgument(f"no model of this sweep takes {', '.join(unused)}",
                              hint=f"they take: {', '.join(sorted(union))}")
    keys = [k for k in grid if k != "model"]
    for k in keys:
        if k in NOT_GRID:
            raise InvalidArgument(f"{k} cannot be a grid key", hint=f"give it once, as --{k.replace('_', '-')}")
        if k not in union:
            close = did_you_mean(k, sorted(union), n=2)
            raise InvalidArgument(f"unknown grid key {k!r}: no model of this sweep takes it",
                                  hint=(f"{close} " if close else "")
                                  + f"they take: {', '.join(sorted(union | {'model'}))}")
        if fixed.get(k) is not None:
            raise InvalidArgument(f"{k} is both fixed (--{k.replace('_', '-')}) and in the grid",
                                  hint=f"drop one of them")
    if "rho" in grid and "resolution" in grid:
        raise InvalidArgument("the grid has both rho and resolution", hint="sweep one of them")
    for a, b in (("rho", "resolution"), ("resolution", "rho")):
        if a in grid and fixed.get(b) is not None:
            raise InvalidArgument(f"the grid sweeps {a} and --{b} is fixed", hint=f"drop --{b}")
    sizes = {name: math.prod(len(grid[k]) for k in keys if k in accepted[name]) for name in names}
    total = sum(sizes.values())
    if total > MAX_MODELS:  # counted, not built: a 1000 x 1000 grid was expanded and built silently
        shape = " x ".join(f"{len(grid[k])} {k}" for k in grid)
        raise InvalidArgument(f"the grid has {total:,} models to train ({shape}); a sweep trains at most "
                              f"{MAX_MODELS}", hint="sweep fewer values per key: a coarse grid first, then a finer one "
                                                    "around the best point")
    combos = []
    for name in names:
        mine = [k for k in keys if k in accepted[name]]
        skipped = tuple(k for k in keys if k not in accepted[name])
        base = {k: v for k, v in fixed.items() if v is not None and k in accepted[name] | {"weights"}}
        for values in itertools.product(*(grid[k] for k in mine)):
            combo = dict(zip(mine, values))
            options = {**base, **combo}
            shown = ((("model", name),) if "model" in grid else ()) + tuple(combo.items())
            combos.append(Combo(name, tuple(sorted(options.items())), shown, skipped))
    return combos

