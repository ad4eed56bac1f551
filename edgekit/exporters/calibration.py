"""Calibration and verification samples: real data through :func:`edgekit.data.load`, synthetic only with a warning.

One call to :func:`plan` decides, for a whole export call (every format shares it), which samples calibrate and
which held-out samples verify: ``verify_data`` if given, else the part of the calibration source that was NOT
used to calibrate, else synthetic inputs (with a note).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .._jsonable import JsonMixin
from ..data import Dataset, load
from ..errors import EdgekitWarning

DEFAULT_CALIB_SAMPLES = 300
DEFAULT_VERIFY_SAMPLES = 100
#: fewer calibration samples than this get a warning (TF and onnxruntime suggest a few hundred)
MIN_CALIB_SAMPLES = 100


@dataclass
class CalibrationInfo(JsonMixin):
    """Where the calibration ranges came from: ``kind`` is data, synthetic, qat (learned in training) or none."""

    kind: str
    source: str | None = None
    count: int = 0
    preprocess: str | None = None
    seed: int = 0
    warnings: list[str] = field(default_factory=list)


@dataclass
class SamplePlan:
    calib: Dataset | None
    verify: Dataset
    info: CalibrationInfo
    verify_source: str
    verify_note: str | None = None


def synthetic(input_shape: Sequence[int], preprocess: str, n: int, seed: int = 0) -> Dataset:
    """Uniform random pixels (0..255) through the model's preprocessing: inputs in the model's real range."""
    from ..data import preprocess as prep

    pixels = np.random.default_rng(seed).integers(0, 256, size=(n, *input_shape)).astype(np.uint8)
    return Dataset(prep(pixels, preprocess if preprocess != "as-given" else "unit"), None, "synthetic", None,
                   preprocess)


def plan(*, input_shape: Sequence[int], preprocess: str, calibrated: bool, qat: bool, calib_data=None,
         calib_samples: int | None = None, verify_data=None, verify_samples: int | None = None,
         seed: int = 0) -> SamplePlan:
    """Load calibration and verification samples for one export call."""
    n_cal = calib_samples or DEFAULT_CALIB_SAMPLES
    n_ver = verify_samples or DEFAULT_VERIFY_SAMPLES
    info = CalibrationInfo("none")
    calib = verify = None
    verify_note = None
    if calib_data is not None:
        want = n_cal if verify_data is not None else n_cal + n_ver
        ds = load(calib_data, input_shape=input_shape, preprocess_mode=preprocess, split="train", limit=want,
                  seed=seed)
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
        info = CalibrationInfo("qat" if qat else "data", ds.source, len(calib), preprocess, seed)
    elif qat:
        info = CalibrationInfo("qat", "quantization ranges learned in training", 0, preprocess, seed)
    elif calibrated:
        calib = synthetic(input_shape, preprocess, n_cal, seed)
        msg = (f"calibrating on {n_cal} SYNTHETIC random inputs: int8 ranges will not match real images and "
               "accuracy may drop badly; pass calib_data (--calib-data DIR|file.npz|fashion-mnist)")
        warnings.warn(msg, EdgekitWarning, stacklevel=3)
        info = CalibrationInfo("synthetic", "synthetic uniform pixels", n_cal, preprocess, seed, [msg])
    if calib is not None and info.kind == "data" and len(calib) < MIN_CALIB_SAMPLES:
        msg = (f"only {len(calib)} calibration samples (fewer than {MIN_CALIB_SAMPLES}): ranges may be "
               "unrepresentative; give more with --calib-samples or a larger source")
        warnings.warn(msg, EdgekitWarning, stacklevel=3)
        info.warnings.append(msg)
    if verify_data is not None:
        verify = load(verify_data, input_shape=input_shape, preprocess_mode=preprocess,
                      split="test", limit=n_ver, seed=seed + 1)
        vsource = f"{verify.source} ({len(verify)} samples)"
    elif verify is not None:
        vsource = f"held-out {verify.source} ({len(verify)} samples not used to calibrate)"
    else:
        verify = synthetic(input_shape, preprocess, n_ver, seed + 1)
        vsource = f"synthetic ({n_ver} random inputs)"
        verify_note = verify_note or "verified on synthetic inputs; give --verify-data (or --calib-data) for real samples"
    return SamplePlan(calib, verify, info, vsource, verify_note)
