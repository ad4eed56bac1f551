"""Calibration and verification samples: real data through :func:`edgekit.data.load`, synthetic only with a warning.

One call to :func:`plan` decides, for a whole export call (every format shares it), which samples calibrate and
which held-out samples verify: ``verify_data`` if given, else the part of the calibration source that was NOT
used to calibrate, else synthetic inputs (with a note). Samples hold one array per model input, of that input's
shape, any rank: image inputs ((H, W, C), C in 1/3/4) take image sources (built-in datasets, image folders) with
the model's preprocessing; every input takes model-ready arrays (.npy/.npz, numpy). A model with several inputs
takes an ``.npz`` with one array per input name (and optional ``y``/``labels``), or from Python a dict
``{input name: array}`` or ``(dict, labels)``.
"""
from __future__ import annotations

import os
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .._jsonable import JsonMixin
from .._units import human
from ..data import DATASETS, Dataset, load, preprocess as prep
from ..errors import DataError, EdgekitWarning, InvalidArgument

DEFAULT_CALIB_SAMPLES = 300
DEFAULT_VERIFY_SAMPLES = 100
#: fewer calibration samples than this get a warning (TF and onnxruntime suggest a few hundred)
MIN_CALIB_SAMPLES = 100
#: share of the available memory the samples may take (the model, converter and runtime need the rest)
MEMORY_SHARE = 0.5
_LABEL_KEYS = ("y", "labels")


@dataclass(frozen=True)
class InputSpec:
    """One model input: its name, fixed per-sample shape (any rank) and dtype."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"

    @property
    def image(self) -> bool:
        return len(self.shape) == 3 and self.shape[-1] in (1, 3, 4)

    @property
    def sample_bytes(self) -> int:
        return int(np.prod(self.shape)) * 4


def input_names(model) -> list[str]:
    """The names of a Keras model's inputs (model order): the converters name the files' inputs after them."""
    return [str(n) for n in getattr(model, "input_names", None) or [t.name.split(":")[0] for t in model.inputs]]


def input_specs(model) -> list[InputSpec]:
    """The inputs of a Keras model (model order) as :class:`InputSpec`; a free dimension is an InvalidArgument."""
    specs = []
    for name, t in zip(input_names(model), model.inputs):
        shape = tuple(t.shape[1:])
        if any(d is None for d in shape):
            raise InvalidArgument(
                f"input {name!r} of model {model.name!r} has free dimensions {tuple(shape)}; an export needs a fixed "
                "shape", hint="fix it with input_shape (CLI --input-shape) for a model file, or rebuild the model "
                              "with a fixed input size (zoo models: --resolution)")
        dtype = getattr(t.dtype, "name", None) or str(t.dtype)
        specs.append(InputSpec(str(name), tuple(int(d) for d in shape), np.dtype(dtype).name))
    return specs


@dataclass
class CalibrationInfo(JsonMixin):
    """Where the calibration ranges came from: ``kind`` is data, synthetic, qat (learned in training) or none.
    ``adapted`` records what was done to image data that did not have the model's input size or channels (a
    change of channels or a resize by more than 2x also warns)."""

    kind: str
    source: str | None = None
    count: int = 0
    preprocess: str | None = None
    seed: int = 0
    warnings: list[str] = field(default_factory=list)
    adapted: dict[str, Any] | None = None


@dataclass
class Samples:
    """Model-ready samples: ``xs`` one float32 array per model input (model input order), ``y`` labels or None."""

    xs: list[np.ndarray]
    y: np.ndarray | None
    source: str
    num_classes: int | None = None
    adapted: dict[str, Any] | None = None

    def __len__(self) -> int:
        return int(len(self.xs[0]))

    @property
    def x(self) -> np.ndarray:
        """The inputs of a single-input model."""
        return self.xs[0]

    def subset(self, index) -> "Samples":
        return Samples([x[index] for x in self.xs], None if self.y is None else self.y[index], self.source,
                       self.num_classes, self.adapted)

    def take(self, n: int | None, seed: int = 0) -> "Samples":
        """A seeded random subset of at most ``n`` samples (all of them, shuffled, when n is None)."""
        order = np.random.default_rng(seed).permutation(len(self))
        return self.subset(order if n is None else order[:n])


@dataclass
class SamplePlan:
    calib: Samples | None
    verify: Samples
    info: CalibrationInfo
    verify_source: str
    verify_note: str | None = None


def synthetic(inputs: Sequence[InputSpec], preprocess: str, n: int, seed: int = 0) -> Samples:
    """Random inputs in each input's real range: image inputs get uniform pixels (0..255) through the model's
    preprocessing, other float inputs uniform values in [-1, 1]. Generated in the final dtypes (no int64/float64
    intermediates: a 4096x4096x3 sample is 192 MiB in float32)."""

    rng = np.random.default_rng(seed)
    xs = []
    for spec in inputs:
        if np.dtype(spec.dtype).kind not in "f":
            raise DataError(f"input {spec.name!r} takes {spec.dtype} values: synthetic samples cannot stand in for "
                            "them", hint="give real samples with --calib-data / --verify-data (an .npz with one "
                                         "array per input name)")
        if spec.image:
            pixels = rng.integers(0, 256, size=(n, *spec.shape), dtype=np.uint8)
            xs.append(prep(pixels, preprocess if preprocess not in ("as-given", None) else "unit"))
        else:
            xs.append(rng.random((n, *spec.shape), dtype=np.float32) * np.float32(2) - np.float32(1))
    return Samples(xs, None, "synthetic")


def _available_memory() -> int | None:
    """Bytes of memory available to this process now (Linux MemAvailable; None when unknown)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(inputs: Sequence[InputSpec], n_calib: int, n_verify: int) -> None:
    """Refuse, before allocating anything, sample sets this machine cannot hold (e.g. 400 samples of 4096x4096x3
    are 75 GiB in float32, twice that while they are decoded and preprocessed)."""
    per = sum(s.sample_bytes for s in inputs)
    need = 2 * per * (n_calib + n_verify)  # the float32 samples, plus a transient copy while they are prepared
    avail = _available_memory()
    if avail is None or need <= MEMORY_SHARE * avail:
        return
    fits = int(MEMORY_SHARE * avail // (2 * per))
    shapes = ", ".join(str(s.shape) for s in inputs)
    raise InvalidArgument(
        f"{n_calib} calibration + {n_verify} verification samples of input {shapes} need about {human(need)} of "
        f"memory ({human(per)} per sample); this machine has {human(avail)} available",
        hint=f"at most {max(fits, 0)} samples fit: lower --calib-samples / --verify-samples, or the input size "
             "(e.g. --resolution)")


def _image_source(source) -> bool:
    """Built-in dataset names and image folders hold images (only image inputs can take them)."""
    if isinstance(source, Dataset):
        return bool(source.meta.get("builtin"))
    if not isinstance(source, (str, os.PathLike)):
        return False
    return str(source) in DATASETS or Path(str(source)).expanduser().is_dir()


def _adaptation(ds: Dataset, source, spec: InputSpec) -> dict[str, Any] | None:
    """What the loader did to fit images to the input: from the distinct (H, W, C) the source images had
    (``Dataset.meta["source_shapes"]``), or the built-in dataset's native size."""
    shapes = ds.meta.get("source_shapes")
    if shapes is None and isinstance(source, str) and source in DATASETS:
        shapes = [DATASETS.entry(source).meta.get("size")]
    want = [int(v) for v in spec.shape]
    shapes = [[int(v) for v in sh] for sh in (shapes or []) if sh is not None]
    odd = [sh for sh in shapes if sh != want]
    if not odd:
        return None
    resized = any(sh[:2] != want[:2] for sh in odd)
    chans = sorted({sh[2] for sh in odd if sh[2] != want[2]})
    how = None if not chans else ("replicated" if chans == [1] else "converted to grayscale" if want[2] == 1
                                  else "mapped")
    return {"input": spec.name, "from": odd[0] if len(odd) == 1 else odd[:10], "to": want, "resized": resized,
            "channels": how, "images_of_other_shapes": len(odd)}


def _shape_text(a: dict[str, Any]) -> str:
    src = a["from"]
    return "x".join(map(str, src)) if src and not isinstance(src[0], list) else "various sizes"


def _adapted_text(a: dict[str, Any], what: str, source: str) -> str:
    steps = (["resized"] if a["resized"] else []) + ([f"channels {a['channels']}"] if a["channels"] else [])
    return (f"{what} images from {source} are {_shape_text(a)} but input {a['input']!r} takes "
            f"{'x'.join(map(str, a['to']))}: {' and '.join(steps)}; ranges and accuracy measured on such images may "
            f"not match the model's real inputs (give images like the deployment's)")


def _worth_a_warning(a: dict[str, Any] | None) -> bool:
    """Changed channels, or a resize by more than 2x: images unlike the model's inputs. A small resize (Fashion-MNIST
    28x28 into a 32x32 model trained on it) is only recorded."""
    if not a:
        return False
    if a["channels"]:
        return True
    srcs = a["from"] if a["from"] and isinstance(a["from"][0], list) else [a["from"]]
    return any(max(t / s, s / t) > 2.0 for src in srcs for s, t in zip(src[:2], a["to"][:2]) if s and t)


def _load(source, inputs: Sequence[InputSpec], preprocess: str, split: str, limit: int | None,
          seed: int, strict: bool = False) -> Samples:
    if len(inputs) > 1:
        return _load_multi(source, inputs, limit, seed)
    spec = inputs[0]
    if not spec.image and _image_source(source):
        raise DataError(f"{source} holds images, but input {spec.name!r} takes {spec.shape} arrays",
                        hint="give model-ready arrays of that shape (.npy/.npz, or a numpy array from Python)")
    ds = load(source, input_shape=spec.shape, preprocess_mode=preprocess if spec.image else "unit", split=split,
              limit=limit, seed=seed, strict=strict)
    return Samples([ds.x], ds.y, ds.source, ds.num_classes, _adaptation(ds, source, spec) if spec.image else None)


def _load_multi(source, inputs: Sequence[InputSpec], limit: int | None, seed: int) -> Samples:
    names = [s.name for s in inputs]
    y = None
    if isinstance(source, tuple) and len(source) == 2 and isinstance(source[0], dict):
        arrays, y = dict(source[0]), source[1]
        label = "arrays"
    elif isinstance(source, dict):
        arrays, label = dict(source), "arrays"
    elif isinstance(source, (str, os.PathLike)) and Path(str(source)).suffix.lower() == ".npz":
        path = Path(str(source)).expanduser()
        if not path.is_file():
            raise DataError(f"data source {str(source)!r} does not exist")
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
            raise DataError(f"cannot read arrays from {str(path)!r}: {exc}",
                            hint="write it with numpy.savez(path, **{input_name: array, ..., 'y': labels})") from exc
        label = str(path)
    else:
        raise DataError(f"the model has {len(inputs)} inputs ({', '.join(names)}): cannot feed them from {source!r}",
                        hint="give an .npz with one array per input name (numpy.savez(path, " +
                             ", ".join(f"{n}=..." for n in names) + ")); from Python a dict {input name: array}")
    for key in _LABEL_KEYS:
        if key in arrays and key not in names:
            y = arrays.pop(key) if y is None else y
    missing, extra = [n for n in names if n not in arrays], sorted(set(arrays) - set(names))
    if missing or extra:
        raise DataError(f"{label} holds arrays {sorted(arrays)}; the model's inputs are {names}",
                        hint="one array per input name, plus optional y/labels")
    xs = [load(np.asarray(arrays[s.name]), input_shape=s.shape).x for s in inputs]
    if len({len(x) for x in xs}) != 1:
        raise DataError(f"{label}: the inputs hold different numbers of samples "
                        f"({', '.join(f'{n} {len(x)}' for n, x in zip(names, xs))})")
    if y is not None:
        y = np.asarray(y).astype(np.int64).reshape(-1)
        if len(y) != len(xs[0]):
            raise DataError(f"{label}: {len(xs[0])} samples but {len(y)} labels")
    shapes = ", ".join(f"{n} {tuple(x.shape)}" for n, x in zip(names, xs))
    s = Samples(xs, y, label if label != "arrays" else f"arrays ({shapes})",
                int(y.max()) + 1 if y is not None and len(y) else None)
    return s.take(limit, seed) if limit is not None and limit < len(s) else s


def plan(*, inputs: Sequence[InputSpec] | None = None, input_shape: Sequence[int] | None = None,
         preprocess: str, calibrated: bool, qat: bool, calib_data=None, calib_samples: int | None = None,
         verify_data=None, verify_samples: int | None = None, seed: int = 0, strict: bool = False) -> SamplePlan:
    """Load calibration and verification samples for one export call (``inputs``: the model's inputs;
    ``input_shape`` is shorthand for one input; ``strict``: an unreadable image is an error, not a skipped one)."""
    inputs = list(inputs) if inputs is not None else [InputSpec("input", tuple(int(v) for v in input_shape))]
    n_cal = calib_samples or DEFAULT_CALIB_SAMPLES
    n_ver = verify_samples or DEFAULT_VERIFY_SAMPLES
    needs_calib = calib_data is not None or (calibrated and not qat)
    check_memory(inputs, n_cal if needs_calib else 0, n_ver)
    info = CalibrationInfo("none")
    calib = verify = None
    verify_note = None
    if calib_data is not None:
        want = n_cal if verify_data is not None else n_cal + n_ver
        ds = _load(calib_data, inputs, preprocess, "train", want, seed, strict)
        if verify_data is None:
            ds = ds.take(None, seed)  # shuffled; the held-out tail never calibrates
            if len(ds) >= n_cal + n_ver:
                calib, verify = ds.subset(slice(0, n_cal)), ds.subset(slice(n_cal, n_cal + n_ver))
            elif len(ds) >= 2:
                k = max(1, min(n_ver, len(ds) // 5))
                calib, verify = ds.subset(slice(0, len(ds) - k)), ds.subset(slice(len(ds) - k, len(ds)))
                verify_note = f"only {k} held-out samples: the calibration source is small"
            else:
                calib = ds
        else:
            calib = ds
        info = CalibrationInfo("qat" if qat else "data", ds.source, len(calib), preprocess, seed,
                               adapted=ds.adapted)
        if _worth_a_warning(ds.adapted):
            msg = _adapted_text(ds.adapted, "calibration", ds.source)
            warnings.warn(msg, EdgekitWarning, stacklevel=3)
            info.warnings.append(msg)
    elif qat:
        info = CalibrationInfo("qat", "quantization ranges learned in training", 0, preprocess, seed)
    elif calibrated:
        calib = synthetic(inputs, preprocess, n_cal, seed)
        what = "SYNTHETIC random inputs" + (": int8 ranges will not match real images and" if inputs[0].image
                                            else ": int8 ranges will not match real inputs and")
        msg = (f"calibrating on {n_cal} {what} accuracy may drop badly; pass calib_data "
               "(--calib-data DIR|file.npz|fashion-mnist)")
        warnings.warn(msg, EdgekitWarning, stacklevel=3)
        info = CalibrationInfo("synthetic", "synthetic uniform pixels" if all(s.image for s in inputs) else
                               "synthetic uniform values (pixels for image inputs, [-1, 1] otherwise)",
                               n_cal, preprocess, seed, [msg])
    if calib is not None and info.kind == "data" and len(calib) < MIN_CALIB_SAMPLES:
        msg = (f"only {len(calib)} calibration samples (fewer than {MIN_CALIB_SAMPLES}): ranges may be "
               "unrepresentative; give more with --calib-samples or a larger source")
        warnings.warn(msg, EdgekitWarning, stacklevel=3)
        info.warnings.append(msg)
    if verify_data is not None:
        verify = _load(verify_data, inputs, preprocess, "test", n_ver, seed + 1, strict)
        vsource = f"{verify.source} ({len(verify)} samples)"
        if _worth_a_warning(verify.adapted):
            warnings.warn(_adapted_text(verify.adapted, "verification", verify.source), EdgekitWarning, stacklevel=3)
    elif verify is not None:
        vsource = f"held-out {verify.source} ({len(verify)} samples not used to calibrate)"
    else:
        verify = synthetic(inputs, preprocess, n_ver, seed + 1)
        vsource = f"synthetic ({n_ver} random inputs)"
        verify_note = verify_note or "verified on synthetic inputs; give --verify-data (or --calib-data) for real samples"
    if verify.adapted:
        a = verify.adapted
        vsource += f"; {_shape_text(a)} images adapted to {'x'.join(map(str, a['to']))}"
    return SamplePlan(calib, verify, info, vsource, verify_note)
