"""The exporter base class and the EXPORTERS registry (one converter per file format of
:data:`edgekit.specs.formats.FORMATS`).

Exporters receive the validated, frozen :class:`edgekit.specs.ExportSpec` (or the export options of a compress
run); ``spec.qat`` says the model is quantization-aware."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..registry import Registry
from ..specs.export import ExportOptions, ExportSpec
# the format/precision table lives at the specs level (no TensorFlow); its names are re-exported here
from ..specs.formats import (FORMATS, PRECISIONS, Format, Precision, calibration_methods, format_of,  # noqa: F401
                             io_types, precision_tokens, suffixes)


class Exporter:
    """One file format. ``check`` rejects options the format cannot honour; ``convert`` writes ``dest``.

    ``convert(model, spec, calib_xs, dest, progress)`` gets the calibration inputs (one float32 array per model
    input, in the model's input order, any rank; None for uncalibrated precisions) and returns format-specific facts
    for the manifest.
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
        """The format's own rules: its row of the format table checks them."""
        FORMATS.get(self.name).check(spec)

    def convert(self, model, spec: ExportSpec, calib_xs, dest: Path, progress) -> dict[str, Any]:  # pragma: no cover
        raise NotImplementedError

    def filename(self, model_name: str, spec: ExportSpec) -> str:
        """``{model}_{precision}[_{io}-io][_per-tensor][_{method}][_{n}-float]{suffix}``: names that say what is
        inside (``n-float``: that many layers kept in float)."""
        parts = [model_name, spec.precision.name]
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
    """Register a format's converter; a format without a row in :data:`edgekit.specs.formats.FORMATS` gets one from
    the class's attributes (suffix, runtime, precisions, I/O types, per-tensor precisions, calibration methods, QAT
    support), which everything else reads. A new format is one module calling this. Precisions may be given by an
    alias of :data:`PRECISIONS` (``none``, ``fp16``): the row holds the names they map to (``float32``, ``float16``).
    """
    canon = PRECISIONS.resolve
    cls.precisions = tuple(canon(p) for p in cls.precisions)
    cls.io_types = {canon(p): tuple(ios) for p, ios in cls.io_types.items()}
    cls.per_tensor = tuple(canon(p) for p in cls.per_tensor)
    if cls.name not in FORMATS:
        FORMATS.add(cls.name, Format(cls.name, cls.suffix, cls.runtime, precisions=cls.precisions,
                                     io_types=dict(cls.io_types), per_tensor=cls.per_tensor, qat=cls.qat,
                                     calibration_methods=tuple(cls.calibration_methods)), aliases=aliases)
    EXPORTERS.add(cls.name, cls(), aliases=aliases, suffix=cls.suffix, runtime=cls.runtime,
                  precisions=cls.precisions, io_types=dict(cls.io_types), per_tensor=cls.per_tensor,
                  calibration_methods=cls.calibration_methods, qat=cls.qat)
    return cls
