"""LadderOptions (the int8 doctor's budget and eval data, also ``export --max-drop``) and DoctorSpec (the ``doctor``
command/API: a model, its calibration data and those options)."""
from __future__ import annotations

import math
from typing import Any

from .._spec import Spec, option, spec
from .._units import MAX_THREADS, THREADS_HINT
from ..errors import InvalidArgument
from . import _choices
from .model import ModelSpec

#: formats the doctor diagnoses
DOCTOR_FORMATS = ("tflite", "onnx")


def check_max_drop(value: Any) -> float | None:
    """``--max-drop`` as a number of accuracy points >= 0 (None: diagnosis only)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise InvalidArgument(f"max_drop must be a number of accuracy points; received {value!r}",
                              hint="e.g. --max-drop 1 (at most 1 point below the float model)")
    try:
        drop = float(value)
    except (TypeError, ValueError):
        raise InvalidArgument(f"max_drop must be a number of accuracy points; received {value!r}",
                              hint="e.g. --max-drop 1 (at most 1 point below the float model)") from None
    if not math.isfinite(drop) or drop < 0:
        raise InvalidArgument(f"max_drop must be a finite number of points >= 0; received {value!r}",
                              hint="e.g. --max-drop 1 (at most 1 point below the float model)")
    if drop >= 100:
        raise InvalidArgument(f"max_drop={drop:g} points allows any model (--max-drop is in accuracy points)",
                              hint="give the budget in accuracy points, e.g. --max-drop 1 for 1 %")
    return drop


@spec
class LadderOptions(Spec):
    """An accuracy budget and the data it is measured on: with ``max_drop``, the int8 ladder picks the cheapest
    quantization within it (see :mod:`edgekit.doctor`)."""

    max_drop: float | str | None = option(None, metavar="PTS",
                                          help="Accuracy budget in points below the float model: walk the int8 "
                                               "ladder to the first rung within it and write that artifact.")
    eval_data: Any = option(None, help="Held-out data the drop is measured on: a built-in dataset (its test split), "
                                       "an image folder with one sub-folder per class, an .npz with x (and y).")
    eval_samples: int | None = option(None, gt=0, expect="positive", help="Eval samples to use (default: all).")
    train_data: Any = option(None, help="Training data: adds the QAT fine-tuning rung (tflite).")
    keep_best: bool = option(False, help="Budget not met: still write the best rung found (the exit code stays 1).")

    def validate(self) -> None:
        self.check_ladder()
        super().validate()

    def check_ladder(self) -> None:
        """``max_drop`` as a number of points; the options that need it."""
        if self.max_drop is not None:
            object.__setattr__(self, "max_drop", check_max_drop(self.max_drop))
        elif self.train_data is not None or self.keep_best:
            raise self.fail(f"{'train_data' if self.train_data is not None else 'keep_best'} goes with max_drop "
                            "(the int8 ladder)", hint="add --max-drop PTS")

    @property
    def ladder(self) -> bool:
        """True when the ladder runs (a budget is given)."""
        return self.max_drop is not None


@spec
class DoctorSpec(LadderOptions, ModelSpec):
    """``edgekit.doctor.run(model, ...)``: why int8 hurts the model, and with ``max_drop`` the cheapest fix within it."""

    calib_data: Any = option(None, help="Calibration data: image folder, .npy/.npz, fashion-mnist, digits (from "
                                        "Python also a Dataset or arrays).")
    calib_samples: int | None = option(None, gt=0, expect="positive",
                                       help="Calibration samples of the first rung (default 300).")
    format: str = option("tflite", choices=_choices.EXPORTERS, metavar="FORMAT",
                         help="tflite or onnx (one format per run).")
    diagnose_samples: int = option(64, gt=0, expect="positive", help="Samples the per-layer diagnosis runs.")
    qat_epochs: int = option(2, ge=1, help="Epochs of the QAT rung (with --train-data).")
    io: str = option("float", choices=("float", "int8", "uint8"),
                     help="I/O type of the int8 artifact (onnx: float).")
    out: str = option("artifacts", help="Output folder of the chosen artifact.")
    preprocess: str | None = option(None, choices=_choices.PREPROCESS_MODES,
                                    help="Input preprocessing for user models (zoo models know theirs).")
    threads: int | None = option(None, gt=0, le=MAX_THREADS, hint=THREADS_HINT,
                                 help="Interpreter threads (evaluation and latency).")
    latency_runs: int = option(50, gt=0, help="Timed runs per rung for the local p50.")
    opset: int | None = option(None, help="ONNX opset (default 17; with --format onnx).")
    seed: int = option(0, help="Seed for sample selection.")

    def validate(self) -> None:
        super().validate()
        fmt = self.format  # a registry name (aliases resolved); "tflite,onnx" is an unknown name
        if fmt not in DOCTOR_FORMATS:
            raise self.fail(f"the doctor works on {', '.join(DOCTOR_FORMATS)}; received format {self.format!r}")
        if self.calib_data is None:
            raise self.fail("the doctor needs --calib-data (real samples to calibrate int8 on)",
                            hint="e.g. --calib-data fashion-mnist, an image folder or an .npy/.npz of inputs")
        if self.eval_data is None:
            raise self.fail("the doctor needs --eval-data (held-out samples to measure accuracy on)",
                            hint="e.g. --eval-data fashion-mnist (its test split), an image folder with one "
                                 "sub-folder per class, or an .npz with x and y")
        if self.opset is not None and fmt != "onnx":
            raise self.fail("opset applies to the onnx format only", hint="add --format onnx or drop --opset")
        if fmt == "onnx" and self.io != "float":
            raise self.fail(f"io={self.io!r} does not apply to onnx int8", hint="onnx takes --io float")


#: export options the ladder's export does not take (yet): it writes batch 1 and the default app metadata
_APP_KEYS = ("labels", "metadata", "batch", "app_metadata")


def check_export_ladder(s) -> None:
    """``export`` with ``max_drop``: the options the ladder chooses itself, or does not take, are refused."""
    given = [k for k in ("eval_data", "eval_samples", "train_data") if getattr(s, k) is not None]
    if not s.ladder:
        if given:
            raise s.fail(f"{', '.join(given)} go{'es' if len(given) == 1 else ''} with max_drop (the int8 ladder)",
                         hint="add --max-drop PTS, or use --verify-data/--verify-samples for verification")
        return
    prec = s.precision
    if prec.name != "int8":
        raise s.fail(f"--max-drop searches int8 quantizations; received --quantize {prec.name} ({prec.description})",
                     hint="use --quantize int8 with --max-drop (the ladder tries int16x8 itself), or drop --max-drop "
                          "for a float export")
    if len(s.formats) != 1:
        raise s.fail(f"--max-drop runs the ladder for one format; received {', '.join(s.formats)}",
                     hint="export each format on its own: --format tflite, then --format onnx")
    if s.eval_data is None:
        raise s.fail("--max-drop needs --eval-data (held-out samples the drop is measured on)",
                     hint="e.g. --eval-data fashion-mnist (its test split) or an .npz with x and y")
    refused = {"per_tensor": s.per_tensor, "float_layers": s.float_layers, "verify_data": s.verify_data,
               "verify_samples": s.verify_samples, "calibration_method": s.calibration_method != "minmax"}
    refused.update({"labels": s.labels is not None, "metadata": bool(s.metadata), "batch": s.batch is not None,
                    "app_metadata": not s.app_metadata})
    for key, value in refused.items():
        if value:
            why = ("measures on --eval-data" if key.startswith("verify") else
                   "exports with batch 1 and the default app metadata (the data's class names)" if key in _APP_KEYS
                   else "chooses it")
            raise s.fail(f"{key} does not go with max_drop: the ladder {why}",
                         hint=f"drop --{key.replace('_', '-')}, or drop --max-drop to export as given")
