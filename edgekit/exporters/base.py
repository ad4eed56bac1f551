"""Precisions, the exporter base class and the EXPORTERS registry (one entry per file format).

Exporters receive the validated, frozen :class:`edgekit.specs.ExportSpec` (or the export options of a compress
run); ``spec.qat`` says the model is quantization-aware."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InvalidArgument
from ..registry import Registry
from ..specs.export import ExportOptions, ExportSpec


@dataclass(frozen=True)
class Precision:
    """A ``quantize=`` value: ``label`` goes into artifact names; ``calibrated`` ones need representative data."""

    name: str
    label: str
    calibrated: bool
    description: str


#: quantize= values (aliases accepted); unknown ones get a did-you-mean
PRECISIONS: Registry[Precision] = Registry("precision")
for _p, _aliases in [
    (Precision("none", "float32", False, "float32 weights and activations"), ("float32", "fp32", "float")),
    (Precision("fp16", "float16", False, "float16 weights, float32 compute"), ("float16", "half")),
    (Precision("dynamic", "dynamic", False, "int8 weights, activations quantized on the fly"), ("dynamic-range",)),
    (Precision("int8", "int8", True, "full integer: int8 weights and activations, calibrated"), ("full-int8",)),
    (Precision("int16x8", "int16x8", True, "int16 activations, int8 weights, calibrated"), ("int16",)),
]:
    PRECISIONS.add(_p.name, _p, aliases=_aliases)

IO_TYPES = ("float", "int8", "uint8", "int16")
#: calibration methods (how activation ranges are set from the calibration samples); minmax is every exporter's
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")


class Exporter:
    """One file format. ``check`` rejects options the format cannot honour; ``convert`` writes ``dest``.

    ``convert(model, spec, calib_x, dest, progress)`` gets the calibration inputs (float32 NHWC, or None for
    uncalibrated precisions) and returns format-specific facts for the manifest.
    """

    name = "?"
    suffix = "?"
    runtime = "?"
    precisions: tuple[str, ...] = ()
    #: precision -> allowed io values
    io_types: dict[str, tuple[str, ...]] = {}
    #: precisions where --per-tensor applies
    per_tensor: tuple[str, ...] = ()
    qat: bool = False
    #: calibration methods the format implements (``calibration_method``)
    calibration_methods: tuple[str, ...] = ("minmax",)

    def check(self, spec: ExportOptions) -> None:
        if spec.quantize not in self.precisions:
            raise InvalidArgument(f"format {self.name!r} does not support quantize={spec.quantize!r}",
                                  hint=f"{self.name} supports: {', '.join(self.precisions)}")
        allowed_io = self.io_types.get(spec.quantize, ("float",))
        if spec.io not in allowed_io:
            raise InvalidArgument(f"io={spec.io!r} does not apply to {self.name} quantize={spec.quantize!r}",
                                  hint=f"use io in ({', '.join(allowed_io)}) for that combination, or export the "
                                       f"formats separately")
        if spec.per_tensor and spec.quantize not in self.per_tensor:
            raise InvalidArgument(f"per_tensor does not apply to {self.name} quantize={spec.quantize!r}",
                                  hint=f"per-tensor weights exist for quantize in ({', '.join(self.per_tensor)})")
        if spec.qat and not self.qat:
            raise InvalidArgument(f"format {self.name!r} cannot export a quantization-aware (QAT) model",
                                  hint="export QAT models with format tflite and quantize int8")
        if spec.qat and spec.quantize != "int8":
            raise InvalidArgument(f"a quantization-aware (QAT) model exports as int8; received quantize={spec.quantize!r}",
                                  hint="use --quantize int8, or strip QAT and export the float model")
        if spec.float_layers and (spec.quantize != "int8" or spec.qat):
            raise InvalidArgument(f"float_layers (layers kept in float) apply to post-training int8; received "
                                  f"quantize={spec.quantize!r}{' of a QAT model' if spec.qat else ''}",
                                  hint="use --quantize int8 with --float-layers, or drop --float-layers")
        if spec.calibration_method not in CALIBRATION_METHODS:
            raise InvalidArgument(f"unknown calibration_method {spec.calibration_method!r}",
                                  hint=f"use one of {', '.join(CALIBRATION_METHODS)}")
        if spec.calibration_method != "minmax":
            if not spec.precision.calibrated or spec.qat:
                raise InvalidArgument(f"calibration_method={spec.calibration_method!r} applies to calibrated "
                                      f"precisions (int8, int16x8); received quantize={spec.quantize!r}",
                                      hint="drop --calibration-method, or use --quantize int8")
            if spec.calibration_method not in self.calibration_methods:
                raise InvalidArgument(f"format {self.name!r} has no {spec.calibration_method!r} calibration",
                                      hint=f"{self.name} calibrates with: {', '.join(self.calibration_methods)}; "
                                           "export that format separately")

    def convert(self, model, spec: ExportSpec, calib_x, dest: Path, progress) -> dict[str, Any]:  # pragma: no cover
        raise NotImplementedError

    def filename(self, model_name: str, spec: ExportSpec) -> str:
        """``{model}_{precision}[_{io}-io][_per-tensor][_{method}][_{n}-float]{suffix}``: names that say what is
        inside (``n-float``: that many layers kept in float)."""
        parts = [model_name, spec.precision.label]
        if spec.io != "float":
            parts.append(f"{spec.io}-io")
        if spec.per_tensor:
            parts.append("per-tensor")
        if spec.calibration_method != "minmax":
            parts.append(spec.calibration_method)
        if spec.float_layers:
            parts.append(f"{len(spec.float_layers)}-float")
        return "_".join(parts) + self.suffix


#: file format -> Exporter instance; meta: suffix, runtime, precisions
EXPORTERS: Registry[Exporter] = Registry("export format")


def register_exporter(cls: type[Exporter], aliases: tuple[str, ...] = ()) -> type[Exporter]:
    EXPORTERS.add(cls.name, cls(), aliases=aliases, suffix=cls.suffix, runtime=cls.runtime,
                  precisions=cls.precisions)
    return cls
