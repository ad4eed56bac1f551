"""The verification data written beside an artifact (``<artifact>.verify.npz``) for on-device parity.

``export`` writes the held-out inputs it verified the artifact on, the Keras reference outputs paired with the
artifact's outputs, and the host runtime's outputs; ``bench --verify`` replays the inputs on the device and
compares. Arrays are stored by position (``input_0``, ``reference_0``, ``host_0``, ...) with the artifact's tensor
names in ``input_names`` / ``output_names`` and the outputs' signature keys (TFLite: the Keras output names; "" where
there is none) in ``output_keys`` (unicode arrays: the file loads with ``allow_pickle=False``).
"""
from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ._io import sha256_file
from .errors import InvalidArgument

VERIFY_SUFFIX = ".verify.npz"


def write(path: str | os.PathLike, *, inputs: Sequence[np.ndarray], reference: Sequence[np.ndarray],
          host: Sequence[np.ndarray] | None = None, labels: np.ndarray | None = None,
          input_names: Sequence[str], output_names: Sequence[str], output_keys: Sequence[str | None] | None = None,
          host_runtime: str | None = None, precision: str | None = None,
          output_lsb: float | None = None) -> dict[str, Any]:
    """Write the file; returns its manifest entry (file name, sha256, samples, tensor names, precision)."""
    path = Path(path)
    if len(inputs) != len(input_names) or len(reference) != len(output_names):
        raise ValueError("verify data: one name per input and per reference output")
    keys = [k or "" for k in output_keys] if output_keys is not None else None
    if keys is not None and len(keys) != len(output_names):
        raise ValueError("verify data: one key per output")
    arrays: dict[str, np.ndarray] = {"input_names": np.array(list(input_names), dtype=str),
                                     "output_names": np.array(list(output_names), dtype=str)}
    if keys is not None:
        arrays["output_keys"] = np.array(keys, dtype=str)
    for i, x in enumerate(inputs):
        arrays[f"input_{i}"] = np.asarray(x, np.float32)
    for k, r in enumerate(reference):
        arrays[f"reference_{k}"] = np.asarray(r, np.float32)
    for k, h in enumerate(host or ()):
        arrays[f"host_{k}"] = np.asarray(h, np.float32)
    if labels is not None:
        arrays["labels"] = np.asarray(labels).astype(np.int64)
    with open(path, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    h = sha256_file(path)
    return {"file": path.name, "sha256": h, "samples": int(len(inputs[0])), "inputs": list(input_names),
            "outputs": list(output_names), "output_keys": keys, "host_runtime": host_runtime, "precision": precision,
            "output_lsb": output_lsb}


@dataclass
class VerifyData:
    """Loaded verification data: float inputs and reference outputs in the artifact's tensor order."""

    path: Path
    input_names: list[str]
    output_names: list[str]
    inputs: list[np.ndarray]
    reference: list[np.ndarray]
    host: list[np.ndarray] | None
    labels: np.ndarray | None
    output_keys: list[str | None] | None = None  # signature keys (None: the file has none, or predates them)

    @property
    def output_labels(self) -> list[str]:
        """What to call each output: its signature key where it has one, else its tensor name."""
        keys = self.output_keys or [None] * len(self.output_names)
        return [k or n for k, n in zip(keys, self.output_names)]

    @property
    def samples(self) -> int:
        return int(len(self.inputs[0]))


def read(path: str | os.PathLike) -> VerifyData:
    """Load a ``.verify.npz`` (as written by :func:`write`); a damaged or foreign file is an InvalidArgument."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            files = set(z.files)
            in_names = [str(n) for n in z["input_names"]]
            out_names = [str(n) for n in z["output_names"]]
            inputs = [z[f"input_{i}"] for i in range(len(in_names))]
            reference = [z[f"reference_{k}"] for k in range(len(out_names))]
            host = [z[f"host_{k}"] for k in range(len(out_names))] if "host_0" in files else None
            labels = z["labels"] if "labels" in files else None
            keys = [str(k) or None for k in z["output_keys"]] if "output_keys" in files else None
            if keys is not None and len(keys) != len(out_names):
                raise ValueError(f"{len(keys)} output keys for {len(out_names)} outputs")
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise InvalidArgument(f"cannot read the verification data {path}: {exc}",
                              hint="re-export the artifact with edgekit export (it writes <artifact>.verify.npz)") \
            from exc
    return VerifyData(path, in_names, out_names, inputs, reference, host, labels, keys)
