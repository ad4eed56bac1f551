"""Model-ready arrays from ``.npy``/``.npz`` files: any rank, one array per model input, never unpickled.

``.npy`` files are memory-mapped (a large file is not read into memory to take a few samples). In ``.npz`` files
the inputs are found by key: the model's input names, else ``x0``, ``x1``, ... for several inputs, else ``x``
(or ``images``, ``inputs``, ``x_test``, ``x_train``); labels under ``y`` (or ``labels``, ``y_test``, ``y_train``).
"""
from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np

from .._io import check_input_path, check_zip_members
from ..errors import DataError

X_KEYS = ("x", "images", "inputs", "x_test", "x_train")
Y_KEYS = ("y", "labels", "y_test", "y_train")
_REWRITE = "write it again with np.save(path, x) or np.savez(path, x=x, y=y)"


def check_array_file(path: str | Path, what: str = "array file") -> dict[str, tuple]:
    """Read every array of a ``.npy``/``.npz`` the way :func:`read_arrays` does (never unpickling) and return their
    shapes by key (``x`` for a .npy); a missing, empty, truncated or corrupt file, an object array or an empty
    array is a DataError with a hint. ``bench --input``/``--verify-data`` check their files with it on the host."""
    path = Path(path)
    where = repr(str(path))
    _check_size(path, where)
    if path.suffix.lower() == ".npy":
        arrays = {"x": _load_npy(path, where)}
    else:
        with _open_npz(path, where) as archive:
            arrays = {k: _member(archive, k, where) for k in archive.keys()}
        if not arrays:
            raise DataError(f"{what} {where} holds no arrays", hint="np.savez(path, x=inputs, y=labels)")
    for key, a in arrays.items():
        if a.size == 0 and a.dtype.kind not in "US":
            raise DataError(f"array {key!r} in {what} {where} is empty (shape {list(a.shape)})",
                            hint="save at least one sample: " + _REWRITE)
    return {k: tuple(a.shape) for k, a in arrays.items()}


def _check_size(path: Path, where: str) -> None:
    check_input_path(path, "array file", dirs=False, error=DataError)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise DataError(f"cannot read {where}: {exc.strerror or exc}", hint="check the path and its permissions") from exc
    if size == 0:
        raise DataError(f"{where} is empty (0 bytes)", hint=f"the file was not written completely; {_REWRITE}")


#: all arrays of an .npz, uncompressed (checked from the archive's directory before any is read)
NPZ_MAX_BYTES = 64 << 30


def _open_npz(path: Path, where: str):
    try:
        with zipfile.ZipFile(path) as z:
            check_zip_members(z, path, "array file", max_bytes=NPZ_MAX_BYTES, error=DataError)
        return np.load(path, allow_pickle=False)
    except DataError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        raise DataError(f"{where} is truncated or corrupt (not a readable .npz archive: {_detail(exc)})",
                        hint=_REWRITE) from exc


def read_arrays(path: Path, n_inputs: int, input_names: Sequence[str] | None = None):
    """(list of input arrays, labels or None) from ``path``; every failure is a DataError with a hint."""
    where = repr(str(path))
    _check_size(path, where)
    if path.suffix.lower() == ".npy":
        return [_load_npy(path, where)], None
    with _open_npz(path, where) as archive:
        keys = list(archive.keys())
        if not keys:
            raise DataError(f"{where} holds no arrays", hint="np.savez(path, x=inputs, y=labels)")
        xkeys = _input_keys(keys, n_inputs, input_names, where)
        ykey = next((k for k in Y_KEYS if k in keys), None)
        xs = [_member(archive, k, where) for k in xkeys]
        y = _member(archive, ykey, where) if ykey else None
    return xs, y


def _input_keys(keys: list[str], n: int, names: Sequence[str] | None, where: str) -> list[str]:
    if names and len(names) == n and all(nm in keys for nm in names):
        return list(names)
    if n > 1:
        for pattern in ("x{}", "x_{}"):
            cand = [pattern.format(i) for i in range(n)]
            if all(c in keys for c in cand):
                return cand
        have = [k for k in keys if k not in Y_KEYS]
        want = ", ".join(f"x{i}" for i in range(n)) + (f" (or {', '.join(names)})" if names else "")
        raise DataError(f"{where} holds {len(have)} input array(s) ({', '.join(have)}), the model has {n} inputs",
                        hint=f"save one array per model input under the keys {want}")
    key = next((k for k in X_KEYS if k in keys), None) or next((k for k in keys if k not in Y_KEYS), None)
    if key is None:
        raise DataError(f"{where} holds labels but no inputs ({', '.join(keys)})",
                        hint="save the inputs under the key x: np.savez(path, x=inputs, y=labels)")
    return [key]


def _member(archive, key: str, where: str) -> np.ndarray:
    try:
        return archive[key]
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
            raise _object_array(where, key) from None
        raise DataError(f"array {key!r} in {where} is truncated or corrupt: {_detail(exc)}", hint=_REWRITE) from exc
    except Exception as exc:  # noqa: BLE001 - zlib.error, BadZipFile (CRC), EOFError, OSError from a damaged member
        raise DataError(f"array {key!r} in {where} is truncated or corrupt: {_detail(exc)}", hint=_REWRITE) from exc


def _load_npy(path: Path, where: str) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
            raise _object_array(where, "x") from None
        raise DataError(f"{where} is truncated or corrupt: {_detail(exc)}", hint=_REWRITE) from exc
    except (EOFError, OSError) as exc:
        raise DataError(f"{where} is truncated or corrupt: {_detail(exc)}", hint=_REWRITE) from exc


def _object_array(where: str, key: str) -> DataError:
    return DataError(f"array {key!r} in {where} is an object (pickled) array; edgekit never unpickles data files "
                     "(loading one can run code)",
                     hint="save numeric arrays: np.savez(path, x=x.astype(np.float32), y=y.astype(np.int64))")


def _detail(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__
