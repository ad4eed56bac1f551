"""The sweep's plan: every check that can fail is made here, before anything trains.

Order: cheap checks first (precisions, formats, grid keys, devices' names, the output folder, the recipe, the
data sources), then every model of the grid is built and profiled (this is where the zoo rejects alpha=2.0 or
resolution 8), the data is probed at every input shape, and last every device is reached and probed.

Training is shared (see :data:`SHARING_DOC`): the precisions of a model always share its training; with
``share_training="resolution"`` the models that differ only in resolution share one training at the smallest
resolution, and every other resolution starts from those weights and is fine-tuned.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConnectError, DataError, InvalidArgument, RuntimeMissing
from . import grid as grid_mod
from .grid import Combo
from .spec import SweepSpec
from .store import file_fingerprint, key_of
from .. import models as zoo
from .._io import check_output_path, ensure_writable_dir
from ..compression import Pipeline
from ..data import DATASETS, open_source
from ..devices import check, parse_device
from ..exporters import PRECISIONS, calibration as cal
from ..profiling import profile
from ..recipes import META_KEYS, load_recipe
from ..specs import CompressSpec, ExportOptions

SHARING_DOC = {
    "resolution": "precisions of a model share one training; models differing only in resolution share one "
                  "training ({epochs} epoch(s) at the smallest resolution), every other resolution starts from "
                  "those weights and is fine-tuned for {finetune_epochs} epoch(s) at lr {finetune_lr:g} "
                  "(conv weights do not depend on the input size; progressive resizing)",
    "none": "precisions of a model share one training; every model is trained independently for {epochs} epoch(s)",
}
#: options that do not change which weights a model has (its resolution)
_RESOLUTION_KEYS = ("resolution", "rho")


@dataclass
class Unit:
    """One model the sweep trains (or fine-tunes) and exports at every precision."""

    combo: Combo
    name: str                                  # canonical model name (+ grid values when names collide)
    resolution: int
    input_shape: tuple[int, int, int]
    mult_adds: int
    params: int
    preprocess: str
    weight_shapes: tuple = ()
    base: "Unit | None" = None                 # fine-tuned from this unit's weights
    key: str = ""
    how: str = ""
    note: str | None = None

    @property
    def model(self) -> str:
        return self.combo.model

    @property
    def group(self) -> tuple:
        return (self.combo.model, tuple((k, v) for k, v in self.combo.options if k not in _RESOLUTION_KEYS))

    def create_options(self) -> dict[str, Any]:
        """create() options without weights (the trainer decides where the weights come from)."""
        return {k: v for k, v in self.combo.options if k != "weights"}


@dataclass
class Point:
    unit: Unit
    quantize: str          # the precision (quantize= value, canonical name: float32, int8, ...)
    precision: str         # the same name (what rows and the point id say)
    format: str

    @property
    def id(self) -> str:
        return f"{self.unit.name}/{self.precision}/{self.format}"


@dataclass
class Plan:
    spec: SweepSpec
    units: list[Unit]
    points: list[Point]
    devices: list[Any]                         # DeviceSpec
    emulated: set[str]
    on_host: set[str]                          # devices sharing this machine's CPUs (measured alone)
    test_source: Any
    calib_source: Any
    classes: int | None
    stage_keys: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    sharing: str = ""
    test_samples: int = 0                      # test samples every export scores (held in memory)

    def export_key(self, unit: Unit, quantize: str) -> str:
        s = self.spec
        return key_of({"unit": unit.key, "quantize": quantize, "formats": s.formats, "io": s.io,
                       "per_tensor": s.per_tensor, "opset": s.opset, "calib": _fp(self.calib_source),
                       "calib_samples": s.calib_samples, "test": _fp(self.test_source), "test_limit": s.test_limit,
                       "seed": s.seed})

    def bench_key(self, export_key: str, device: Any, fmt: str) -> str:
        s = self.spec
        return key_of({"export": export_key, "device": device.name, "format": fmt, "runs": s.runs,
                       "warmup": s.warmup, "threads": s.threads, "max_seconds": s.max_seconds,
                       "delegate": s.delegate, "python": s.python, "runtime": s.runtime,
                       "benchmark_binary": s.benchmark_binary,
                       # a latency measured without a parity check is not reused when one is asked for
                       **({"parity": s.parity_samples} if s.device_parity else {})})


def _fp(source: Any) -> Any:
    return file_fingerprint(source) if isinstance(source, str) else repr(type(source))


def on_this_machine(device) -> bool:
    """True for devices that share this machine's CPUs: local, and SSH/adb endpoints on a loopback address
    (e.g. an emulator or a qemu guest). Their measurements run while nothing else of the sweep does."""
    if device.transport == "local":
        return True
    host = device.host if device.transport == "ssh" else (device.serial or "")
    if device.transport == "adb" and host.startswith("emulator-"):
        return True
    host = (host or "").rsplit(":", 1)[0] if device.transport == "adb" else (host or "")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# ---------------------------------------------------------------------------------------------------------- checks
def _precisions(spec: SweepSpec) -> list[tuple[str, str]]:
    out = []
    for q in spec.quantize:
        p = PRECISIONS.get(str(q))          # UnknownNameError with a did-you-mean
        if p.name in [o[0] for o in out]:
            raise InvalidArgument(f"precision {q!r} is listed twice (as {p.name})", hint="list every precision once")
        out.append((p.name, p.name))
    for f in spec.formats:
        for name, _ in out:  # built = checked by the format's rules (precision, io, per-tensor)
            ExportOptions(quantize=name, formats=(str(f),), io=spec.io, per_tensor=bool(spec.per_tensor))
    return out


def _devices(spec: SweepSpec) -> list[Any]:
    devs = [parse_device(d) for d in spec.devices]
    names = [d.name for d in devs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InvalidArgument(f"device(s) given twice: {', '.join(dup)}", hint="give every device once")
    return devs


def _builtin(source: Any):
    return DATASETS.entry(source) if isinstance(source, str) and source in DATASETS else None


def _test_source(spec: SweepSpec) -> Any:
    if spec.test_data is not None:
        return spec.test_data
    entry = _builtin(spec.data)
    if entry is not None and "test" in entry.meta.get("splits", ()):
        return entry.name
    raise InvalidArgument("no labelled test data: a sweep measures every point's accuracy (a sweep without "
                          "accuracy is `edgekit bench`)",
                          hint="give --test-data (an image folder with one sub-folder per class, or an .npz with x "
                               "and y), or use a built-in dataset with a test split as --data")


def _classes(spec: SweepSpec) -> int | None:
    if spec.classes is not None:
        return spec.classes
    entry = _builtin(spec.data)
    if entry is not None:
        return int(entry.meta["classes"])
    raise InvalidArgument("--classes is needed: the number of classes of --data is known only for built-in "
                          "datasets", hint="give --classes N (the number of labels in --data)")


#: recipe keys the sweep takes from a recipe: its compression stages and their options
RECIPE_STAGE_KEYS = ("stages", "prune", "prune_schedule", "prune_structure", "prune_policy", "prune_epochs",
                     "prune_layers", "prune_skip", "cluster", "cluster_init", "cluster_per_channel", "cluster_epochs",
                     "qat", "qat_epochs", "distill_from", "teacher_epochs", "teacher_options", "temperature",
                     "distill_alpha", "distill_epochs", "epochs", "lr")


def _recipe(spec: SweepSpec, notes: list[str]) -> dict[str, Any]:
    """The recipe's compression stages and their options, applied to every point after its training. The recipe's
    other keys (model, model options, data, baseline training, export) are the sweep's own options here: they are
    not used, and a note lists them."""
    if spec.recipe is None:
        return {}

    recipe = load_recipe(spec.recipe)
    keys = {k: v for k, v in recipe.items() if k in RECIPE_STAGE_KEYS and v is not None}
    if not any(keys.get(k) not in (None, False, 0) for k in ("stages", "prune", "cluster", "qat", "distill_from")):
        raise InvalidArgument(f"recipe {spec.recipe!r} has no compression stage to add to the points",
                              hint="a sweep recipe needs prune, cluster, qat, distill_from or stages")
    stages = keys.get("stages") or []
    if keys.get("qat") or any("qat" in (s if isinstance(s, (str, dict)) else s[0]) for s in stages):
        bad = [q for q in spec.quantize if q != "int8"]
        if bad:
            raise InvalidArgument(f"recipe {spec.recipe!r} has quantization-aware training: its models export as "
                                  f"int8 only, not {', '.join(map(str, bad))}", hint="use --quantize int8")
    unused = sorted(k for k in recipe if k not in keys and k not in META_KEYS)
    if unused:
        notes.append(f"recipe {spec.recipe}: only its compression stages apply to the points; {', '.join(unused)} "
                     f"come from the sweep's own options")
    return keys


def recipe_stages(spec: SweepSpec, keys: dict[str, Any]) -> tuple:
    """The recipe's compression stages as ``(name, parameters)`` entries (``compress(stages=...)``), validated:
    parameters, order, and QAT followed by the sweep's int8 export."""

    qat = keys.get("qat") or any("qat" in (s if isinstance(s, (str, dict)) else s[0]) for s in keys.get("stages") or ())
    cs = CompressSpec.from_dict({"model": "-", "data": "-", **keys, **({"quantize": "int8"} if qat else {})},
                                where=f"recipe {spec.recipe}")
    return tuple(cs.stage_entries())


# ---------------------------------------------------------------------------------------------------------- plan
def make_plan(spec: SweepSpec, progress=None, check=None) -> Plan:
    """Check everything and lay out the units, points and keys. Raises before any training. ``check(spec,
    devices)`` reaches and probes the devices (default: from this machine; a Ray sweep probes each from its node)."""

    precisions = _precisions(spec)
    classes = _classes(spec)
    fixed = {**spec.fixed_options(), "classes": classes}
    models = [spec.model] if spec.model else []
    combos = grid_mod.expand(models, spec.grid, fixed)
    devices = _devices(spec)
    ensure_writable_dir(spec.out, create=False)
    for name in ("results.json", "results.csv", "sweep.json"):  # not refused hours later, after the training
        check_output_path(Path(spec.out) / name, f"the sweep's {name}")
    notes: list[str] = []
    stage_keys = _recipe(spec, notes)
    test_source = _test_source(spec)
    if spec.epochs == 0 and str(spec.weights or "none").lower() in ("none", "random", ""):
        raise InvalidArgument("epochs 0 with random weights: every point would be untrained",
                              hint="give --epochs N, or --weights PATH/imagenet to fine-tune (or only evaluate) "
                                   "trained weights")
    units = _build_units(spec, combos, progress, stage_keys)
    _probe_data(spec, units, test_source)
    test_samples = _check_test_memory(spec, units, test_source, precisions)
    plan = Plan(spec, units, [Point(u, q, label, f) for u in units for q, label in precisions for f in spec.formats],
                devices, {d.name for d, given in zip(devices, spec.devices)
                          if str(given) in spec.emulated or getattr(d, "emulated", False)},
                {d.name for d in devices if on_this_machine(d)}, test_source,
                spec.calib_data if spec.calib_data is not None else spec.data, classes, stage_keys, notes)
    plan.test_samples = test_samples
    _share_and_key(plan)
    plan.sharing = SHARING_DOC[spec.share_training].format(epochs=spec.epochs,
                                                           finetune_epochs=spec.finetune_epochs_value,
                                                           finetune_lr=spec.finetune_lr_value)
    if spec.classes is None:
        plan.notes.append(f"classes={classes} (the number of classes of {spec.data})")
    for c in {c.model: c for c in combos if c.skipped}.values():
        plan.notes.append(f"{c.model} does not take {', '.join(c.skipped)}: swept over the other keys only")
    (check or _check_devices)(spec, devices)
    return plan


def _build_units(spec: SweepSpec, combos: list[Combo], progress, stage_keys: dict[str, Any]) -> list[Unit]:
    """Build and profile every model with its weights: the zoo checks every value of the grid (and whether the
    weights fit) here, and the recipe's stages check the model (layer selection, ...)."""
    import gc

    units = []
    for i, c in enumerate(combos):
        if progress:
            progress("checking the grid (building every model)", i, len(combos))
        options = dict(c.options)
        where = ", ".join(f"{k}={v!r}" for k, v in c.grid)
        try:
            model = zoo.create(c.model, **options)
        except InvalidArgument as exc:
            raise type(exc)(f"grid point {where}: {exc.message}",
                            hint=exc.hint or "change or drop that value in the grid (--grid KEY=...)") from exc
        if stage_keys:
            try:
                Pipeline(recipe_stages(spec, stage_keys)).validate(model)
            except InvalidArgument as exc:
                raise type(exc)(f"recipe {spec.recipe} on {model.name}: {exc.message}", hint=exc.hint) from exc
        rep = profile(model)
        shape = tuple(int(d) for d in model.input_shape[1:])
        units.append(Unit(c, model.name, shape[0], shape, int(rep.total_mult_adds), int(rep.total_params),
                          zoo.preprocess_mode(c.model), tuple(tuple(w.shape) for w in model.weights)))
        del model, rep
        gc.collect()
    if progress:
        progress("checking the grid (building every model)", len(combos), len(combos))
    seen: dict[tuple, Unit] = {}
    for u in units:
        ident = (u.model, u.resolution, tuple((k, v) for k, v in u.combo.options if k not in _RESOLUTION_KEYS))
        if ident in seen:
            raise InvalidArgument(f"grid points {dict(seen[ident].combo.grid)} and {dict(u.combo.grid)} build the same "
                                  f"model ({u.name})", hint="drop one of the values")
        seen[ident] = u
    names = [u.name for u in units]
    for u in units:
        if names.count(u.name) > 1:   # e.g. dropout is not part of the canonical name
            u.name += "[" + ",".join(f"{k}={v}" for k, v in u.combo.grid if k != "model") + "]"
    return units


def _probe_data(spec: SweepSpec, units: list[Unit], test_source: Any) -> None:
    """Load a few samples of every source at every input shape: missing files, unlabelled test data and
    fixed-shape arrays that cannot feed another resolution fail here."""
    from ..data import load, same_class_order

    shapes = {(u.input_shape, u.preprocess) for u in units}
    for shape, mode in sorted(shapes):
        loaded = []
        for what, source, split in (("--data", spec.data, "train"), ("--test-data", test_source, "test")):
            try:
                ds = load(source, input_shape=shape, preprocess_mode=mode, split=split, limit=4, seed=spec.seed)
            except DataError as exc:
                raise DataError(f"{what} {source}: {exc.message}",
                                hint=exc.hint or "image sources (folders, built-in datasets) are resized to every "
                                                 "resolution; arrays (.npz) must already have the model's shape")
            if ds.y is None:
                raise DataError(f"{what} {ds.source} has no labels: the sweep needs labelled data",
                                hint="use a folder with one sub-folder per class, or an .npz with x and y")
            loaded.append(ds)
        same_class_order(*loaded)   # label k must name the same class in the training and the test data


def _check_test_memory(spec: SweepSpec, units: list[Unit], test_source: Any, precisions) -> int:
    """How many test samples every export scores (--test-limit, else the whole test data). Training streams its data,
    but export holds these (float32 at the model's input size) in memory with the calibration samples: checked here
    for the largest input with export's own estimate, before anything trains (10,000 Fashion-MNIST test images at
    224x224x1 are 1.9 GiB, twice that while they are prepared)."""
    import math

    big = max(units, key=lambda u: math.prod(u.input_shape))
    n = spec.test_limit
    if n is None:
        n = len(open_source(test_source, input_shape=big.input_shape, preprocess_mode=big.preprocess, split="test"))
    n_cal = spec.calib_samples if any(q in ("int8", "int16x8") for q, _ in precisions) else 0
    inputs = [cal.InputSpec("input", tuple(big.input_shape))]
    try:
        cal.check_memory(inputs, n_cal, n)
    except InvalidArgument as exc:
        avail = cal._available_memory() or 0
        fits = int(cal.MEMORY_SHARE * avail // (2 * inputs[0].sample_bytes)) - n_cal
        raise InvalidArgument(f"{big.name}: every artifact is scored on {n} test samples held in memory: "
                              f"{exc.message}",
                              hint=(f"give --test-limit {fits} or fewer (test samples scored per artifact), or "
                                    if fits >= 100 else "") + f"sweep resolutions below {big.resolution} px "
                                                              "(--grid resolution=... or --resolution)") from exc
    return n


def _share_and_key(plan: Plan) -> None:
    """Decide which unit trains and which is fine-tuned from which, then give each its key (what it depends on)."""
    s = plan.spec
    groups: dict[tuple, list[Unit]] = {}
    for u in plan.units:
        groups.setdefault(u.group, []).append(u)
    train = {"data": _fp(s.data), "val_data": _fp(s.val_data) if s.val_data is not None else None,
             "batch_size": s.batch_size, "optimizer": s.optimizer, "val_fraction": s.val_fraction, "limit": s.limit,
             "seed": s.seed, "bn_momentum": s.bn_momentum, "precise_bn": s.precise_bn, "preprocess": s.preprocess,
             "recipe": plan.stage_keys,
             "weights": _fp(s.weights) if s.weights else None}
    for members in groups.values():
        members.sort(key=lambda u: u.resolution)
        base = members[0]
        for u in members:
            if s.share_training == "resolution" and u is not base:
                if u.weight_shapes == base.weight_shapes:
                    u.base = base
                else:
                    u.note = (f"weights of {u.model} depend on the input size: trained independently, not "
                              f"fine-tuned from {base.resolution} px")
    for u in sorted(plan.units, key=lambda u: u.base is not None):   # bases get their keys first
        common = {"model": u.model, "options": dict(u.combo.options), **train}
        if u.base is None:
            u.key = key_of({**common, "epochs": s.epochs, "lr": s.lr})
            u.how = (f"trained {s.epochs} epoch(s) at {u.resolution} px" if s.epochs else
                     f"weights {s.weights}, not trained")
        else:
            u.key = key_of({**common, "from": u.base.key, "epochs": s.finetune_epochs_value,
                            "lr": s.finetune_lr_value})
            u.how = (f"fine-tuned {s.finetune_epochs_value} epoch(s) at {u.resolution} px from the {u.base.resolution} px "
                     f"model")
    order = {id(u): i for i, u in enumerate(plan.units)}
    plan.units.sort(key=lambda u: (order[id(u.base or u)], u.base is not None, u.resolution))
    plan.points.sort(key=lambda p: plan.units.index(p.unit))


def _check_devices(spec: SweepSpec, devices: list[Any]) -> None:
    """Reach and probe every device before training: a device that cannot run the artifacts fails now."""

    for d in devices:
        rep = check(d, python=spec.python, benchmark_binary=spec.benchmark_binary, key_file=spec.key_file,
                    known_hosts=spec.known_hosts, accept_new_host_key=spec.accept_new_host_key,
                    connect_timeout=spec.connect_timeout)
        if not rep.reachable:
            raise ConnectError(f"device {d.name} cannot be reached before the sweep starts: {rep.error}",
                               hint=(rep.fixes[0] if rep.fixes else "check the device") + f"; or drop --device {d.name}")
        missing = [f for f in spec.formats if f not in rep.formats]
        if missing:
            raise RuntimeMissing(f"device {d.name} cannot run {', '.join(missing)} artifacts"
                                 + (f": {rep.error}" if rep.error else ""),
                                 hint="; ".join(rep.fixes) or f"install a runtime for {', '.join(missing)} there")
