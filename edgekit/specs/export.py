"""ExportOptions (what every export takes, also as compress options and the ``export`` stage) and ExportSpec (the
``export`` command/API: a model plus those options)."""
from __future__ import annotations

import os
from typing import Any, Mapping

from .._spec import Spec, derived, option, spec
from .._units import MAX_THREADS, THREADS_HINT
from ..errors import did_you_mean
from . import _choices
from .doctor import LadderOptions, check_export_ladder
from .formats import FORMATS, PRECISIONS
from .model import ModelSpec

#: calibration samples when none are given (export, compress and recipes alike)
DEFAULT_CALIB_SAMPLES = 300
DEFAULT_VERIFY_SAMPLES = 100
DEFAULT_OPSET = 17
#: the model facts ``metadata`` sets (TFLite Model Metadata and ONNX metadata_props)
METADATA_KEYS = ("name", "description", "version", "author", "license")


@spec
class ExportOptions(Spec):
    """Format, precision, calibration and verification of one export call (shared by every format of the call)."""

    quantize: str = option("float32", short="-q", choices=_choices.PRECISIONS,
                           help="Precision: float32, float16, dynamic (int8 weights), int8, int16x8 (aliases: "
                                "none = float32, fp16 = float16).")
    formats: tuple[str, ...] = option(("tflite",), flag="--format", separator=",", choices=_choices.EXPORTERS,
                                      metavar="FORMATS", help="Comma-separated file formats.")
    calib_data: Any = option(None, help="Calibration data: image folder, .npy/.npz, fashion-mnist, digits (from "
                                        "Python also a Dataset or arrays).")
    calib_samples: int | None = option(None, help=f"Calibration samples (default {DEFAULT_CALIB_SAMPLES}).")
    io: str = option("float", choices=_choices.IO_TYPES,
                     help="I/O type of integer models (int16 for int16x8).")
    per_tensor: bool = option(False, help="Per-tensor instead of per-channel weight scales.")
    out: str = option("artifacts", help="Output folder.")
    verify: bool = option(True, help="Fail when the artifact does not match Keras; --no-verify records the failure "
                                     "and keeps the artifact.")
    verify_data: Any = option(None, help="Held-out verification data (default: held-out calibration data).")
    verify_samples: int | None = option(None, expect="positive",
                                        help=f"Verification samples (default {DEFAULT_VERIFY_SAMPLES}).", gt=0)
    opset: int | None = option(None, help=f"ONNX opset (default {DEFAULT_OPSET}; with --format onnx).")
    threads: int | None = option(None, gt=0, le=MAX_THREADS, hint=THREADS_HINT,
                                 help="Interpreter threads for verification.")
    float_layers: tuple[str, ...] = option((), separator=",", metavar="LAYERS", expect="Keras layer names",
                                           hint="e.g. --float-layers conv_pw_5,conv_dw_6 (names from `edgekit "
                                                "doctor`)",
                                           help="int8: comma-separated Keras layers kept in float (names from "
                                                "`edgekit doctor`).")
    calibration_method: str = option("minmax", choices=_choices.CALIBRATION_METHODS,
                                     help="int8 calibration: minmax; onnx also entropy, percentile.")
    batch: int | None = option(None, gt=0, help="Batch dimension fixed in .tflite files (default 1: what app "
                                                "libraries and GPU/NPU delegates want).")
    app_metadata: bool = option(True, flag="--app-metadata/--no-metadata",
                                help="Write app metadata into the artifacts (TFLite Model Metadata: labels, image "
                                     "normalization, color space; ONNX metadata_props); --no-metadata leaves it out.")
    labels: Any = option(None, metavar="FILE", help="Class names of the classifier output, one per line (default: "
                                                    "the data's class names; from Python also a list).")
    metadata: tuple[str, ...] | dict = option((), metavar="KEY=VALUE", expect="KEY=VALUE items or a mapping",
                                              hint=f"keys: {', '.join(METADATA_KEYS)}",
                                              help=f"Model facts for the app metadata ({', '.join(METADATA_KEYS)}); "
                                                   "repeatable.")
    #: the model is quantization-aware (found from the model when it is loaded; ``with_derived(qat=True)``)
    qat: bool = derived(False)

    @property
    def precision(self):
        """The :class:`edgekit.specs.formats.Precision` of ``quantize``."""
        return PRECISIONS.get(self.quantize)

    def validate(self) -> None:
        if self.quantize is not None:
            self.check_export()

    def check_export(self) -> None:
        """The rules across export options (and the formats' own: precision, io, per-tensor, QAT)."""
        if len(set(self.float_layers)) != len(self.float_layers):  # order kept, duplicates dropped
            object.__setattr__(self, "float_layers", tuple(dict.fromkeys(self.float_layers)))
        prec = self.precision
        if not self.formats:
            raise self.fail("no export format given", hint=f"use one or more of: {', '.join(FORMATS.list())}")
        if self.calib_data is not None and not prec.calibrated:
            raise self.fail(f"calib_data does not apply to quantize={prec.name!r} (nothing is calibrated)",
                            hint="use quantize int8 or int16x8, or drop --calib-data (use --verify-data for "
                                 "verification samples)")
        if self.calib_samples is not None and self.calib_samples <= 0:
            raise self.fail(f"calib_samples={self.calib_samples} must be positive",
                            hint=f"give --calib-samples a positive number (default {DEFAULT_CALIB_SAMPLES})")
        if self.calib_samples is not None and not prec.calibrated:
            raise self.fail(f"calib_samples={self.calib_samples} does not apply here",
                            hint="a positive --calib-samples goes with --quantize int8/int16x8")
        if self.opset is not None and "onnx" not in self.formats:
            raise self.fail("opset applies to the onnx format only", hint="add --format onnx or drop --opset")
        if self.batch is not None and "tflite" not in self.formats:
            raise self.fail("batch applies to the tflite format only (ONNX files keep a free batch dimension)",
                            hint="add --format tflite or drop --batch")
        self.metadata_facts  # the KEY=VALUE items are checked here
        if not self.app_metadata and (self.labels is not None or self.metadata):
            raise self.fail(f"{'labels' if self.labels is not None else 'metadata'} go into the app metadata, which "
                            "app_metadata=False (--no-metadata) leaves out", hint="drop one of them")
        if self.labels is not None and not isinstance(self.labels, (str, os.PathLike)) and (
                not isinstance(self.labels, (list, tuple)) or not all(isinstance(v, str) for v in self.labels)):
            raise self.fail(f"labels must be a label file or a list of class names; received {self.labels!r:.80}",
                            hint="--labels FILE with one class name per line")
        for fmt in self.formats:
            FORMATS.get(fmt).check(self)

    @property
    def metadata_facts(self) -> dict[str, str]:
        """``metadata`` as ``{key: value}`` (keys from METADATA_KEYS)."""
        items = list(self.metadata.items()) if isinstance(self.metadata, Mapping) else []
        if not isinstance(self.metadata, Mapping):
            for item in self.metadata:
                key, eq, value = str(item).partition("=")
                if not eq or not key.strip():
                    raise self.fail(f"metadata item {item!r} is not KEY=VALUE",
                                    hint=f"e.g. --metadata author='Jane Doe'; keys: {', '.join(METADATA_KEYS)}")
                items.append((key.strip(), value))
        facts = {}
        for key, value in items:
            if key not in METADATA_KEYS:
                close = did_you_mean(str(key), METADATA_KEYS)
                raise self.fail(f"unknown metadata key {key!r}{f' ({close})' if close else ''}",
                                hint=f"keys: {', '.join(METADATA_KEYS)}")
            if not isinstance(value, str):
                raise self.fail(f"metadata {key} must be text; received {value!r:.80}",
                                hint=f"e.g. {key}: '1.0' (quoted in YAML)")
            facts[key] = value
        return facts

    @property
    def calib_count(self) -> int:
        return self.calib_samples or DEFAULT_CALIB_SAMPLES

    @property
    def opset_or_default(self) -> int:
        return self.opset or DEFAULT_OPSET


@spec
class ExportSpec(LadderOptions, ExportOptions, ModelSpec):
    """``edgekit.export(model, ...)``: a model and how to export it (``max_drop``: the int8 doctor's ladder picks
    how, within that accuracy budget)."""

    preprocess: str | None = option(None, choices=_choices.PREPROCESS_MODES,
                                    help="Input preprocessing for user models (zoo models know theirs).")
    seed: int = option(0, help="Seed for sample selection.")
    strict_data: bool = option(False, help="An unreadable image in the data is an error (default: skipped, counted "
                                           "and named in a warning).")

    def validate(self) -> None:
        self.check_ladder()  # the budget's own rules first: --max-drop with a float precision is a budget error
        check_export_ladder(self)
        super().validate()
