"""SweepSpec: every argument of :func:`edgekit.sweep.run` = an ``edgekit sweep`` option = a key of a
``*.sweep.yaml`` file (``edgekit sweep --config export/NAME.sweep.yaml``), on edgekit's typed-spec mechanism.

Types, bounds and names are checked when the spec is built; what needs the zoo, the data or the devices is checked
by the planner (:mod:`edgekit.sweep.plan`), also before any training.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .._io import check_input_path, load_yaml_file
from .._spec import Spec, option, spec
from ..errors import InvalidArgument
from ..specs import _choices
from ..specs.bench import ConnectSpec
from ..specs.train import DEFAULT_BN_MOMENTUM, DEFAULT_PRECISE_BN
from .grid import parse_grid

SHARE_TRAINING = ("resolution", "none")
METRICS = ("p50", "p90")
#: where the trainings, exports and measurements run: this process (threads), or tasks on a Ray cluster
EXECUTORS = ("local", "ray")
#: fixed zoo options of every point (edgekit.models.create arguments)
MODEL_OPTIONS = ("alpha", "rho", "resolution", "depth_multiplier", "dropout", "classes", "input_channels", "weights")


@spec
class SweepOptions(Spec):
    """What to sweep, how every point is trained and exported, and where it is measured."""

    # -- what ----------------------------------------------------------------------------------------------------------
    model: str | None = option(None, argument=True, metavar="MODEL",
                               help="Zoo name (leave it out when the grid sweeps model=).")
    grid: tuple[str, ...] | dict = option((), metavar="KEY=V1,V2,...",
                                          help="Swept values of a zoo option (alpha, resolution or rho, "
                                               "depth_multiplier, dropout, ...) or model=A,B (families); repeatable. "
                                               "In a config: a mapping key -> list.")
    quantize: tuple[str, ...] = option(("float32", "int8"), separator=",", choices=_choices.PRECISIONS,
                                       metavar="PRECISIONS",
                                       help="Comma-separated precisions: float32, float16, dynamic, int8, int16x8 "
                                            "(aliases: none = float32, fp16 = float16).")
    formats: tuple[str, ...] = option(("tflite",), flag="--format", separator=",", choices=_choices.EXPORTERS,
                                      metavar="FORMATS", help="Comma-separated export formats.")
    # -- fixed zoo options -----------------------------------------------------------------------------------------
    alpha: float | None = option(None, help="Fixed width multiplier (when not swept).")
    rho: float | None = option(None, help="Fixed resolution multiplier (when not swept).")
    resolution: int | None = option(None, help="Fixed input resolution (when not swept).")
    depth_multiplier: int | None = option(None, help="Fixed depthwise channel multiplier (MobileNet v1).")
    dropout: float | None = option(None, help="Dropout before the classifier.")
    classes: int | None = option(None, gt=0, help="Output classes (default: the classes of a built-in --data).")
    input_channels: int | None = option(None, gt=0, help="Input channels (1 for grayscale).")
    weights: str | None = option(None, help="imagenet, none, or a weights/model file every point starts from.")
    # -- training (edgekit train's options) ------------------------------------------------------------------------
    data: Any = option(help="Training data: fashion-mnist, digits, an image folder (one sub-folder per class) or an "
                            ".npz with x and y.")
    epochs: int = option(5, ge=0, help="Training epochs of every trained point.")
    batch_size: int = option(64, gt=0, help="Batch size.")
    lr: float = option(1e-3, gt=0, help="Learning rate.")
    optimizer: str = option("adam", choices=_choices.OPTIMIZERS, help="Optimizer.")
    val_fraction: float = option(0.1, ge=0, lt=1, help="Held-out validation fraction of --data.")
    val_data: Any = option(None, help="Separate validation data instead of --val-fraction.")
    limit: int | None = option(None, gt=0, help="Use a seeded random subset of this many training samples.")
    seed: int = option(0, help="Seed for splits, shuffling, initialisation and sample selection.")
    bn_momentum: float | None = option(DEFAULT_BN_MOMENTUM, ge=0, lt=1, help="BatchNorm momentum set before "
                                                                            "training.")
    precise_bn: int = option(DEFAULT_PRECISE_BN, ge=0,
                             help="Recompute the BatchNorm statistics on this many training samples after every epoch "
                                  "(0: keep the running averages; see edgekit train --help).")
    preprocess: str | None = option(None, choices=_choices.PREPROCESS_MODES,
                                    help="Input preprocessing for user data (zoo models know theirs).")
    share_training: str = option("resolution", choices=SHARE_TRAINING,
                                 help="resolution: models differing only in resolution train once at the smallest "
                                      "one and are fine-tuned at the others; none: every model trains on its own. "
                                      "Precisions always share their model's training.")
    finetune_epochs: int | None = option(None, ge=1, help="Fine-tuning epochs at each other resolution (default: "
                                                          "half of --epochs, at least 1).")
    finetune_lr: float | None = option(None, gt=0, help="Fine-tuning learning rate (default: --lr).")
    recipe: str | None = option(None, help="A compression recipe (export/*.yaml) whose stages (prune, cluster, qat, "
                                           "distill) every point gets after its training.")
    # -- accuracy and export ---------------------------------------------------------------------------------------
    test_data: Any = option(None, help="Labelled test data (default: the test split of a built-in --data).")
    test_limit: int | None = option(None, gt=0, help="Test samples scored per artifact (default: all).")
    calib_data: Any = option(None, help="Calibration data of int8/int16x8 (default: --data).")
    calib_samples: int = option(300, gt=0, help="Calibration samples.")
    io: str = option("float", choices=_choices.IO_TYPES, help="I/O type of integer models.")
    per_tensor: bool = option(False, help="Per-tensor instead of per-channel weight scales.")
    opset: int | None = option(None, gt=0, help="ONNX opset (with --format onnx).")
    verify: bool = option(True, help="A point whose artifact fails verification against Keras is a failed row "
                                     "(--no-verify: measured anyway).")
    # -- devices ---------------------------------------------------------------------------------------------------
    devices: tuple[Any, ...] = option(("local",), flag="--device", short="-d",
                                      help="local, ssh://user@host[:port], adb://SERIAL or a profile name "
                                           "(repeatable; devices run in parallel, one measurement at a time each).")
    emulated: tuple[str, ...] = option((), help="A --device whose latencies are emulated (e.g. qemu): labelled so in "
                                                "the table and plots (repeatable).")
    runs: int = option(50, ge=1, help="Timed runs per measurement.")
    warmup: int = option(5, ge=0, help="Warm-up runs.")
    threads: int | None = option(None, gt=0, help="Interpreter threads on the device (default: the profile's).")
    max_seconds: float = option(150.0, gt=0, help="Time cap per measurement phase.")
    delegate: str | None = option(None, help="auto (XNNPACK), xnnpack, none, or PATH.so (external delegate).")
    timeout: float | None = option(None, gt=0, help="Seconds per measurement (default: 2 x max-seconds + 120).")
    runtime: str | None = option(None, help="Interpreter on the device: ai-edge-litert, tflite-runtime, onnxruntime "
                                            "(default: the profile's runtime:, else the first importable).")
    device_parity: bool = option(True, help="Replay --parity-samples test inputs of every artifact on every device "
                                            "and compare its outputs with Keras' (bench --verify): a row whose "
                                            "device computes something else is parity_failed, left out of the "
                                            "fronts, latency models and picks (--no-device-parity: latency only).")
    parity_samples: int = option(32, gt=0, help="Test samples replayed per artifact and device by --device-parity.")


@spec
class SweepSpec(ConnectSpec, SweepOptions):
    """``edgekit.sweep.run(model, ...)``: the sweep's options, the device connection overrides, and how it decides."""

    budget_ms: float | None = option(None, gt=0, help="Latency budget: the most accurate point within it, per device.")
    metric: str = option("p50", choices=METRICS, help="Latency statistic the front, budget and fits use.")
    require_budget: bool = option(False, help="Fail (exit 1) when a device has no point within --budget-ms.")
    out: str = option(help="Folder for everything the sweep writes; rerunning the same sweep resumes from it.")
    # -- where it runs (results and resume do not depend on it) ---------------------------------------------------
    executor: str = option("local", choices=EXECUTORS,
                           help="local: this machine (training and export one at a time); ray: every training, "
                                "export and measurement is a task on a Ray cluster (pip install 'edgekit[ray]'), "
                                "artifacts come back under --out here.")
    ray_address: str | None = option(None, help="The Ray cluster (HOST:PORT of `ray start --head`, or auto) with "
                                                "--executor ray; default: RAY_ADDRESS, else a one-machine Ray "
                                                "started for the sweep.")
    ray_cpus: int = option(1, gt=0, help="CPUs every training and export declares on Ray (a node runs as many at "
                                         "once as it has CPUs for).")

    def validate(self) -> None:
        object.__setattr__(self, "grid", parse_grid(self.grid))
        if self.require_budget and self.budget_ms is None:
            raise self.fail("--require-budget needs --budget-ms", hint="e.g. --budget-ms 15 --require-budget")
        unknown = sorted(set(self.emulated) - {str(d) for d in self.devices})
        if unknown:
            raise self.fail(f"--emulated {', '.join(unknown)} is not one of the --device values",
                            hint=f"devices: {', '.join(map(str, self.devices))}")
        if not self.devices:
            raise self.fail("no device given", hint="e.g. --device local")
        if self.executor != "ray" and self.ray_address is not None:
            raise self.fail("--ray-address is for --executor ray", hint="add --executor ray, or drop --ray-address")

    # -- views ---------------------------------------------------------------------------------------------------------
    def fixed_options(self) -> dict[str, Any]:
        """The fixed zoo options that were given (None = the family default)."""
        return {k: getattr(self, k) for k in MODEL_OPTIONS if getattr(self, k) is not None}

    @property
    def finetune_lr_value(self) -> float:
        """The fine-tuning learning rate: the training's own (measured: lr / 10 for one epoch left 48 px models
        ~9 points below their 32 px base on Fashion-MNIST; the full lr for two epochs matched training from
        scratch)."""
        return self.finetune_lr if self.finetune_lr is not None else self.lr

    @property
    def finetune_epochs_value(self) -> int:
        return self.finetune_epochs if self.finetune_epochs is not None else max(1, self.epochs // 2)


def load_config(path: str | os.PathLike) -> dict[str, Any]:
    """Read a ``*.sweep.yaml``: a mapping whose keys are SweepSpec fields (``name``/``description`` are free text;
    ``device``/``format`` are accepted for ``devices``/``formats``). Keys and values are checked by SweepSpec."""
    import yaml

    p = check_input_path(path, "sweep config", dirs=False)
    if not p.is_file():
        raise InvalidArgument(f"sweep config {str(p)!r} does not exist",
                              hint="sweep configs live in export/*.sweep.yaml")
    try:
        data = load_yaml_file(p, "sweep config")
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
    out = {}
    for key, value in data.items():
        k = str(key).replace("-", "_")
        if k in ("name", "description"):
            continue
        k = aliases.get(k, k)
        if k == "grid" and not isinstance(value, dict):
            raise InvalidArgument(f"sweep config {str(p)!r}: grid must be a mapping of key -> list of values",
                                  hint="e.g. grid: {alpha: [0.25, 0.5], resolution: [32, 64]}")
        out[k] = value
    return out


def from_config(path: str | os.PathLike, overrides: dict[str, Any] | None = None) -> SweepSpec:
    """A SweepSpec from a config file; ``overrides`` (e.g. CLI options) win, a grid override merges key by key."""

    values = load_config(path)
    overrides = dict(overrides or {})
    if "grid" in overrides:
        values["grid"] = {**parse_grid(values.get("grid")), **parse_grid(overrides.pop("grid"))}
    return SweepSpec.from_dict({**values, **overrides}, where=str(path))
