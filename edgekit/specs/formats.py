"""The format/precision table: the precisions (PRECISIONS: the ``quantize=`` values, and the ``precision`` every result,
manifest, file name and table records: ONE vocabulary) and, per file format, what it writes and takes
(FORMATS: suffix, runtime, precisions, I/O types, per-tensor precisions, calibration methods, QAT support).

Plain data with no TensorFlow, at the specs level: specs check options against it, exporters convert by it, bench and
inspect read file names by it. A new format is a row here (or :func:`edgekit.exporters.base.register_exporter`,
which adds the row of an exporter class that has none)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InvalidArgument
from ..registry import Registry


@dataclass(frozen=True)
class Precision:
    """A precision: its ``name`` is the ``quantize=`` value and what results, manifests and artifact file names say;
    ``calibrated`` ones need representative data."""

    name: str
    calibrated: bool
    description: str


#: the precisions, by name. Aliases are accepted as ``quantize=`` values and resolved to the name they map to (the spec
#: stores the name): ``none``/``fp32``/``float`` -> float32 (``none`` was the canonical name before edgekit.export/3),
#: ``fp16``/``half`` -> float16; an unknown value gets a did-you-mean
PRECISIONS: Registry[Precision] = Registry("precision")
for _p, _aliases in [
    (Precision("float32", False, "float32 weights and activations"), ("none", "fp32", "float")),
    (Precision("float16", False, "float16 weights, float32 compute"), ("fp16", "half")),
    (Precision("dynamic", False, "int8 weights, activations quantized on the fly"), ("dynamic-range",)),
    (Precision("int8", True, "full integer: int8 weights and activations, calibrated"), ("full-int8",)),
    (Precision("int16x8", True, "int16 activations, int8 weights, calibrated"), ("int16",)),
]:
    PRECISIONS.add(_p.name, _p, aliases=_aliases)


@dataclass(frozen=True)
class Format:
    """One file format's row. ``check`` rejects options the format cannot honour."""

    name: str
    suffix: str
    runtime: str
    precisions: tuple[str, ...] = ()
    #: precision -> allowed io values
    io_types: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: precisions where --per-tensor applies
    per_tensor: tuple[str, ...] = ()
    qat: bool = False
    #: calibration methods the format implements (``calibration_method``)
    calibration_methods: tuple[str, ...] = ("minmax",)

    def check(self, spec) -> None:
        """``spec``: the :class:`edgekit.specs.ExportOptions` of a call that writes this format."""
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
        if spec.calibration_method != "minmax":
            if not spec.precision.calibrated or spec.qat:
                raise InvalidArgument(f"calibration_method={spec.calibration_method!r} applies to calibrated "
                                      f"precisions (int8, int16x8); received quantize={spec.quantize!r}",
                                      hint="drop --calibration-method, or use --quantize int8")
            if spec.calibration_method not in self.calibration_methods:
                raise InvalidArgument(f"format {self.name!r} has no {spec.calibration_method!r} calibration",
                                      hint=f"{self.name} calibrates with: {', '.join(self.calibration_methods)}; "
                                           "export that format separately")


#: file format -> its row (tflite first: the primary format)
FORMATS: Registry[Format] = Registry("export format")
FORMATS.add("tflite", Format("tflite", ".tflite", "litert", precisions=("float32", "float16", "dynamic", "int8", "int16x8"),
                             io_types={"int8": ("float", "int8", "uint8"), "int16x8": ("float", "int16")},
                             per_tensor=("int8", "int16x8"), qat=True), aliases=("tfl", "litert"))
FORMATS.add("onnx", Format("onnx", ".onnx", "onnxruntime", precisions=("float32", "float16", "dynamic", "int8"),
                           io_types={}, per_tensor=("int8",), qat=False,
                           calibration_methods=("minmax", "entropy", "percentile")))


def io_types() -> tuple[str, ...]:
    """Every ``io=`` value some format takes (``float`` first)."""
    found = ["float"]
    for e in FORMATS.entries(sort=False):
        found += [io for ios in e.obj.io_types.values() for io in ios if io not in found]
    return tuple(found)


def calibration_methods() -> tuple[str, ...]:
    """Every ``calibration_method=`` some format implements."""
    found: list[str] = []
    for e in FORMATS.entries(sort=False):
        found += [m for m in e.obj.calibration_methods if m not in found]
    return tuple(found)


def format_of(path: str | Path) -> str | None:
    """The format whose suffix ``path`` has (None when no format writes such files)."""
    suffix = Path(path).suffix.lower()
    return next((e.name for e in FORMATS.entries() if e.obj.suffix == suffix), None)


def suffixes() -> list[str]:
    """``.tflite``, ``.onnx``, ...: the file suffixes of the formats (in table order)."""
    return [e.obj.suffix for e in FORMATS.entries(sort=False)]


def precision_tokens() -> list[tuple[str, str]]:
    """``(token, precision name)`` read in artifact file names, most specific first: each precision's name and
    aliases, and the integer I/O types of calibrated precisions (``uint8`` -> ``int8``)."""
    tokens: list[tuple[str, str]] = []
    # float32 last (its tokens are the vaguest), int8 just before it ("dynamic_int8" names a dynamic-range model)
    order = sorted(reversed(list(PRECISIONS.entries())), key=lambda e: (e.name == "float32", e.name == "int8"))
    for e in order:
        for tok in (e.name, *e.aliases):
            if tok != "none" and tok not in [t for t, _ in tokens]:
                tokens.append((tok.replace("-", "_"), e.name))
    for ex in FORMATS.entries():
        for prec, ios in ex.obj.io_types.items():
            for io in ios:
                if io != "float" and io not in [t for t, _ in tokens]:
                    tokens.append((io, prec))
    return tokens
