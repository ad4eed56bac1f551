"""SweepSpec: every argument of :func:`edgekit.sweep.sweep` = an ``edgekit sweep`` option = a key of a
``*.sweep.yaml`` file (``edgekit sweep --config export/NAME.sweep.yaml``).

Static checks (types, bounds, names) happen when the spec is built; what needs the zoo, the data or the devices is
checked by the planner before any training.
"""
from __future__ import annotations

import dataclasses
import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..errors import InvalidArgument

SHARE_TRAINING = ("resolution", "none")
METRICS = ("p50", "p90")
#: fixed zoo options (ModelSpec's fields but the model itself)
MODEL_OPTIONS = ("alpha", "rho", "resolution", "depth_multiplier", "dropout", "classes", "input_channels", "weights")


@dataclass(frozen=True)
class SweepSpec:
    """What to sweep, how to train and export each point, where to measure it and how to decide."""

    # what
    model: str | None = None                 # zoo name (None when the grid sweeps model=)
    grid: Mapping[str, tuple] = field(default_factory=dict)
    quantize: tuple[str, ...] = ("none", "int8")
    formats: tuple[str, ...] = ("tflite",)
    # fixed zoo options
    alpha: float | None = None
    rho: float | None = None
    resolution: int | None = None
    depth_multiplier: int | None = None
    dropout: float | None = None
    classes: int | None = None               # None: the number of classes in --data
    input_channels: int | None = None
    weights: str | None = None
    # training (edgekit train's options)
    data: Any = None
    epochs: int = 5
    batch_size: int = 64
    lr: float = 1e-3
    optimizer: str = "adam"
    val_fraction: float = 0.1
    val_data: Any = None
    limit: int | None = None
    seed: int = 0
    bn_momentum: float | None = 0.9
    preprocess: str | None = None
    share_training: str = "resolution"
    finetune_epochs: int = 1
    finetune_lr: float | None = None         # None: lr / 10
    recipe: str | None = None
    # accuracy and export
    test_data: Any = None                    # None: the test split of a built-in --data
    test_limit: int | None = None            # None: every test sample
    calib_data: Any = None                   # None: --data (its training split)
    calib_samples: int = 300
    io: str = "float"
    per_tensor: bool = False
    opset: int | None = None
    verify: bool = True
    # devices
    devices: tuple[str, ...] = ("local",)
    emulated: tuple[str, ...] = ()
    runs: int = 50
    warmup: int = 5
    threads: int | None = None
    max_seconds: float = 150.0
    delegate: str | None = None
    timeout: float | None = None
    python: str | None = None
    runtime: str | None = None               # interpreter on the device: ai-edge-litert, tflite-runtime, onnxruntime
    benchmark_binary: str | None = None
    key_file: str | None = None
    known_hosts: str | None = None
    accept_new_host_key: bool = False
    connect_timeout: float | None = None
    # decision and output
    budget_ms: float | None = None
    metric: str = "p50"
    require_budget: bool = False
    out: str | None = None

    def __post_init__(self) -> None:
        def fail(msg: str, hint: str | None = None) -> InvalidArgument:
            return InvalidArgument(msg, hint=hint)

        from .grid import parse_grid

        object.__setattr__(self, "grid", parse_grid(self.grid))
        for name in ("quantize", "formats", "devices", "emulated"):
            value = getattr(self, name)
            if isinstance(value, str):
                value = tuple(v.strip() for v in value.split(",") if v.strip())
            object.__setattr__(self, name, tuple(value or ()))
        if not self.quantize:
            raise fail("no precision to sweep", hint="e.g. --quantize none,int8")
        if not self.formats:
            raise fail("no export format", hint="e.g. --format tflite")
        if not self.devices:
            raise fail("no device given", hint="e.g. --device local")
        if self.out is None:
            raise fail("--out is required: the sweep writes every result there (and resumes from it)",
                       hint="e.g. --out runs/sweep1")
        if self.data is None:
            raise fail("--data is required: every point is trained or fine-tuned and its accuracy measured",
                       hint="e.g. --data fashion-mnist")
        for name, low in (("epochs", 0), ("finetune_epochs", 0), ("batch_size", 1), ("runs", 1), ("warmup", 0),
                          ("calib_samples", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise fail(f"{name} must be an integer >= {low}; received {value!r}")
        for name in ("limit", "test_limit", "threads"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise fail(f"{name} must be an integer >= 1; received {value!r}")
        for name in ("lr", "finetune_lr", "budget_ms", "max_seconds", "timeout", "connect_timeout"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
                raise fail(f"{name} must be a number > 0; received {value!r}")
        if not 0 <= self.val_fraction < 1:
            raise fail(f"val_fraction must be in [0, 1); received {self.val_fraction!r}")
        if self.share_training not in SHARE_TRAINING:
            raise fail(f"unknown share_training {self.share_training!r}", hint=f"use one of {', '.join(SHARE_TRAINING)}")
        if self.metric not in METRICS:
            raise fail(f"unknown metric {self.metric!r}", hint="use p50 or p90")
        if self.require_budget and self.budget_ms is None:
            raise fail("--require-budget needs --budget-ms", hint="e.g. --budget-ms 15 --require-budget")
        unknown = sorted(set(self.emulated) - set(self.devices))
        if unknown:
            raise fail(f"--emulated {', '.join(unknown)} is not one of the --device values",
                       hint=f"devices: {', '.join(self.devices)}")

    # -- views ---------------------------------------------------------------------------------------------------------
    def fixed_options(self) -> dict[str, Any]:
        """The fixed zoo options that were given (None = the family default)."""
        return {k: getattr(self, k) for k in MODEL_OPTIONS if getattr(self, k) is not None}

    def replace(self, **changes: Any) -> "SweepSpec":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        from .._jsonable import to_jsonable

        return to_jsonable({f.name: getattr(self, f.name) for f in dataclasses.fields(self)})

    @property
    def finetune_lr_value(self) -> float:
        return self.finetune_lr if self.finetune_lr is not None else self.lr / 10.0


def spec_keys() -> list[str]:
    return [f.name for f in dataclasses.fields(SweepSpec)]


def load_config(path: str | os.PathLike) -> dict[str, Any]:
    """Read a ``*.sweep.yaml``: a mapping whose keys are SweepSpec fields (``device`` and ``format`` are accepted
    for ``devices``/``formats``; ``grid`` is a mapping of key -> list). Unknown keys get a did-you-mean."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise InvalidArgument(f"sweep config {str(p)!r} does not exist", hint="sweep configs live in export/*.sweep.yaml")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise InvalidArgument(f"sweep config {str(p)!r} is not valid YAML{where}: "
                              f"{getattr(exc, 'problem', None) or str(exc).splitlines()[0]}",
                              hint="fix the YAML syntax at that position") from exc
    if not isinstance(data, dict):
        raise InvalidArgument(f"sweep config {str(p)!r} must be a mapping of keys to values",
                              hint="write one `key: value` per line")
    aliases = {"device": "devices", "format": "formats"}
    out: dict[str, Any] = {}
    known = spec_keys()
    for key, value in data.items():
        k = aliases.get(str(key).replace("-", "_"), str(key).replace("-", "_"))
        if k in ("name", "description"):
            continue
        if k not in known:
            close = difflib.get_close_matches(k, known, n=2, cutoff=0.5)
            raise InvalidArgument(f"sweep config {str(p)!r}: unknown key {key!r}",
                                  hint=f"did you mean {' or '.join(map(repr, close))}?" if close
                                  else f"known keys: {', '.join(known)}")
        if k == "grid" and not isinstance(value, dict):
            raise InvalidArgument(f"sweep config {str(p)!r}: grid must be a mapping of key -> list of values",
                                  hint="e.g. grid: {alpha: [0.25, 0.5], resolution: [32, 64]}")
        out[k] = value
    return out
