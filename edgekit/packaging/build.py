"""Write update packages (full, or deltas in tensor space against the deployed artifact) and restore them on the
host with the same code the device uses (:mod:`edgekit.packaging.format`)."""
from __future__ import annotations

import gzip
import json
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._io import atomic_path, refuse_folder
from .._jsonable import JsonMixin
from ..errors import InvalidArgument, ModelLoadError
from . import format as fmt
from .segments import Segment, find

SUFFIX = ".ekpkg"
_BLOB_COST = 12  # table bytes per blob reference (JSON, before compression): keeps tiny streams from splitting


def artifact_format(path: Path) -> str:
    """``tflite`` or ``onnx`` from the suffix; anything else is refused with a hint."""
    kind = {".tflite": "tflite", ".onnx": "onnx"}.get(path.suffix.lower())
    if kind is None:
        raise InvalidArgument(f"cannot package {path.name}: it is not a .tflite or .onnx model",
                              hint="pass the .tflite/.onnx file that edgekit export wrote")
    return kind


def _read(path: str | Path, what: str) -> bytes:
    p = Path(path)
    if p.is_dir():
        raise InvalidArgument(f"{what} {str(p)!r} is a directory", hint="pass a file")
    if not p.is_file():
        raise InvalidArgument(f"{what} {str(p)!r} does not exist", hint="check the path")
    return p.read_bytes()


# ------------------------------------------------------------------------------------------------ coding
class _Streams:
    """The package's streams: blobs of one kind (indices, codebooks, masks, byte planes, ...) are concatenated
    into one stream, so that the entropy coder sees them together; each stream is stored with the smallest of the
    allowed codecs. ``cost`` estimates a candidate coding by compressing its blobs alone."""

    def __init__(self, codec: str):
        self.codecs = ("lzma", "zlib", "bz2") if codec == "auto" else (codec,)
        self.streams: dict[str, bytearray] = {}
        self.zdicts: dict[str, bytes] = {}
        self._cache: dict[bytes, int] = {}

    def best(self, data: bytes, zdict: bytes | None = None) -> tuple[str, bytes]:
        if zdict is not None:
            return "zlib", fmt.compress(data, "zlib", zdict)
        cands = [(c, fmt.compress(data, c)) for c in self.codecs] + [("raw", bytes(data))]
        return min(cands, key=lambda c: len(c[1]))

    def cost(self, datas) -> int:
        total = 0
        for d in datas:
            if d not in self._cache:
                self._cache[d] = min(len(fmt.compress(d, c)) for c in ("lzma", "zlib")) if len(d) > 8 else len(d)
            total += self._cache[d] + _BLOB_COST
        return total

    def add(self, data: bytes, stream: str, zdict: bytes | None = None) -> list:
        buf = self.streams.setdefault(stream, bytearray())
        if zdict is not None:
            self.zdicts[stream] = zdict
        ref = [stream, len(buf), len(data)]
        buf += data
        return ref

    def mark(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.streams.items()}

    def since(self, mark: dict[str, int]) -> dict[str, int]:
        """Bytes added to each stream since ``mark`` (uncompressed)."""
        return {k: len(v) - mark.get(k, 0) for k, v in self.streams.items()}

    def finish(self, table: dict) -> tuple[bytes, dict[str, int], dict[str, int]]:
        """Compress every stream; rewrite the table's refs [name, off, n] -> [index, off, n]. Returns the blob
        bytes, the compressed size per stream and the codec count."""
        names = sorted(self.streams)
        out, sizes, codecs, specs, off = [], {}, {}, [], 0
        for name in names:
            codec, comp = self.best(bytes(self.streams[name]), self.zdicts.get(name))
            specs.append([codec, off, len(comp), len(self.streams[name]), int(name in self.zdicts)])
            out.append(comp)
            off += len(comp)
            sizes[name] = len(comp)
            codecs[codec] = codecs.get(codec, 0) + 1
        index = {n: i for i, n in enumerate(names)}
        _rewrite(table, index)
        table["streams"] = specs
        return b"".join(out), sizes, codecs


def _rewrite(obj, index: dict[str, int]) -> None:
    if isinstance(obj, dict):
        for v in obj.values():
            _rewrite(v, index)
    elif isinstance(obj, list):
        if len(obj) == 3 and isinstance(obj[0], str) and obj[0] in index and all(isinstance(x, int) for x in obj[1:]):
            obj[0] = index[obj[0]]
        else:
            for v in obj:
                _rewrite(v, index)


def _shuffle(a: np.ndarray) -> bytes:
    w = a.dtype.itemsize
    return a.tobytes() if w == 1 else a.view("u1").reshape(-1, w).T.tobytes()


def _value_candidates(a: np.ndarray, shape: list[int], axis: int | None):
    """Ways to code the elements ``a`` (unsigned view): (label, spec, [(stream, blob bytes), ...]) where the spec's
    blob keys are filled in the order of the blobs."""
    w, n = a.dtype.itemsize, a.size
    yield "raw", {"v": "raw", "w": w, "n": n, "sh": int(w > 1)}, [("b", f"planes{w}", _shuffle(a))]
    axes = [None] + ([axis] if axis is not None and len(shape) > 1 and shape[axis] > 1 else [])
    for ax in axes:
        if ax is None:
            rows = a.reshape(1, -1)
        else:
            rows = np.moveaxis(a.reshape(shape), ax, 0).reshape(shape[ax], -1)
        books, counts, idx = [], [], np.empty(rows.shape, dtype=np.int64)
        for r, row in enumerate(rows):
            u, inv = np.unique(row, return_inverse=True)
            books.append(u)
            counts.append(len(u))
            idx[r] = inv.reshape(-1)
        k = max(counts) if counts else 0
        if k > 65536 or sum(counts) * 2 > n:  # the codebook alone would be half the tensor
            continue
        it = 1 if k <= 256 else 2
        idx = idx.reshape(-1).astype("u1" if it == 1 else "<u2")
        base = {"v": "cb", "w": w, "n": n, "it": it, "shape": list(shape), "axis": ax}
        blobs = [("k", "counts", np.asarray(counts, dtype="<u4").tobytes()),
                 ("c", f"book{w}", _shuffle(np.concatenate(books)))]
        label = "codebook" if ax is None else "codebook/channel"
        yield label, base, blobs + [("i", f"index{it}", idx.tobytes())]
        zero = rows.reshape(-1) == 0
        if zero.mean() > 0.2:
            yield label + "+mask", base, blobs + [("i", f"index{it}", idx[~zero].tobytes()),
                                                  ("m", "mask", np.packbits(zero).tobytes())]


def _encode_values(streams: _Streams, a: np.ndarray, shape: list[int], axis: int | None,
                   commit: bool = True) -> tuple[dict, str, int, list]:
    """The cheapest coding of ``a``: (spec, label, estimated bytes, blobs); its blobs are added if ``commit``."""
    best = None
    for label, spec, blobs in _value_candidates(a, shape, axis):
        cost = streams.cost([b for _, _, b in blobs])
        if best is None or cost < best[0]:
            best = (cost, label, spec, blobs)
    cost, label, spec, blobs = best
    spec = dict(spec)
    if commit:
        for key, stream, data in blobs:
            spec[key] = streams.add(data, stream)
    return spec, label, cost, blobs


def _recode_candidates(streams: _Streams, a: np.ndarray, old: np.ndarray, seg: Segment):
    """Deltas in the codebook domain: the base's per-slice cluster indices, the ones that changed, and the new
    codebooks (a cluster-preserving fine-tune moves the centroids, so every value changes but few indices do)."""
    w, n = a.dtype.itemsize, a.size
    axes = [None] + ([seg.axis] if seg.axis is not None and len(seg.shape) > 1 and seg.shape[seg.axis] > 1 else [])
    for ax in axes:
        rows = a.reshape(1, -1) if ax is None else np.moveaxis(a.reshape(seg.shape), ax, 0).reshape(seg.shape[ax], -1)
        books = [np.unique(r) for r in rows]
        counts = [len(b) for b in books]
        if max(counts) > 65536 or sum(counts) * 2 > n:
            continue
        idx = fmt.slice_indices(a, seg.shape, ax)
        changed = idx != fmt.slice_indices(old, seg.shape, ax)
        it = 1 if max(counts) <= 256 else 2
        spec = {"v": "cb", "w": w, "n": n, "it": it, "shape": list(seg.shape), "axis": ax}
        blobs = [("k", "counts", np.asarray(counts, dtype="<u4").tobytes()),
                 ("c", f"book{w}", _shuffle(np.concatenate(books))),
                 ("i", f"index{it}", idx[changed].astype("u1" if it == 1 else "<u2").tobytes())]
        mask = np.packbits(changed).tobytes()
        cost = streams.cost([b for _, _, b in blobs] + [mask])
        label = f"new codebook{'/channel' if ax is not None else ''} + changed indices"
        yield cost, label, spec, blobs, mask


def _elements(data: bytes, seg: Segment) -> np.ndarray:
    return np.frombuffer(data[seg.offset:seg.offset + seg.length], dtype=fmt._utype(seg.width))


def _match(seg: Segment, i: int, base_segs: list[Segment], by_key: dict, by_role: dict) -> Segment | None:
    """The base's counterpart of ``seg``: same name, dtype and shape; else read by the same operator input (names
    change between exports, e.g. QAT's); else the same position; always of the same byte size."""
    for cand in (by_key.get(seg.key), by_role.get(seg.role) if seg.role else None,
                 base_segs[i] if i < len(base_segs) else None):
        if cand is not None and cand.length == seg.length and cand.width == seg.width:
            return cand
    return None


def _product(data: bytes, product: tuple[int, int, int]) -> bytes:
    bits, off, n = product
    return fmt.scaled(bits, data[off:off + n])


def _skeleton(data: bytes, segs: list[Segment]) -> bytes:
    return b"".join(data[o:o + n] for o, n in fmt.gaps(len(data), [(s.offset, s.length) for s in segs]))


# ------------------------------------------------------------------------------------------------ results
@dataclass
class PackageResult(JsonMixin):
    """An update package written by :func:`package`. Sizes in bytes; ``ratio_vs_gzip`` = artifact gzip -9 bytes /
    package bytes."""

    path: str
    artifact: str
    format: str
    kind: str  # full | delta
    package_bytes: int
    artifact_bytes: int
    artifact_gzip_bytes: int
    ratio_vs_gzip: float
    sha256: str  # of the artifact the package restores to
    package_sha256: str
    base: str | None = None
    base_sha256: str | None = None
    segments: int = 0
    weight_bytes: int = 0  # bytes of the artifact that are weight segments
    coded_weight_bytes: int = 0  # their coded size (blobs)
    skeleton_bytes: int = 0  # the rest of the artifact
    coded_skeleton_bytes: int = 0
    codings: dict[str, int] = field(default_factory=dict)  # segments per coding
    changed_segments: int | None = None  # deltas: segments not identical to the base's
    changed_elements: int | None = None
    table_bytes: int = 0  # the compressed table of contents
    header_bytes: int = 0  # the manifest
    streams: dict[str, int] = field(default_factory=dict)  # compressed bytes per stream (indices, codebooks, ...)
    codecs: dict[str, int] = field(default_factory=dict)  # streams per entropy coder
    seconds: float = 0.0


@dataclass
class UnpackResult(JsonMixin):
    """An artifact restored by :func:`unpack` (byte-identical to the one packaged: sha256 checked)."""

    path: str
    package: str
    kind: str
    bytes: int
    sha256: str
    package_bytes: int
    base: str | None = None
    seconds: float = 0.0


def header_of(path: str | Path) -> dict[str, Any]:
    """A package's manifest (checked: magic, version, body length and sha256); edgekit errors for bad files."""
    p = Path(path)
    data = _read(p, "package")
    try:
        header, _ = fmt.read_header(data, p.name)
    except fmt.PackageError as exc:
        raise _translate(exc) from None
    return header


def _translate(exc: fmt.PackageError) -> InvalidArgument:
    return (ModelLoadError if exc.kind == "bad_package" else InvalidArgument)(exc.message, hint=exc.hint)


# ------------------------------------------------------------------------------------------------ API
def build(data: bytes, kind: str, *, name: str, base: bytes | None = None, base_name: str | None = None,
          codec: str = "auto") -> tuple[bytes, dict[str, Any]]:
    """The package bytes for artifact ``data`` (format ``kind``), a delta when ``base`` is given; plus stats."""
    segs = find(data, kind, name)
    streams = _Streams(codec)
    stats: dict[str, Any] = {"codings": {}, "changed_segments": None, "changed_elements": None}
    table: dict[str, Any] = {"segments": []}
    skel = _skeleton(data, segs)
    base_segs: list[Segment] = []
    if base is not None:
        base_segs = find(base, kind, base_name or "base")
        table["base_segments"] = [[s.offset, s.length] for s in base_segs]
        base_skel = _skeleton(base, base_segs)
        if skel == base_skel:
            table["skeleton"] = {"e": "same"}
        else:
            own, zd = streams.best(skel), streams.best(skel, base_skel[-32768:])
            table["skeleton"] = {"e": "blob", "b": streams.add(skel, "skeleton", base_skel[-32768:]
                                                                 if len(zd[1]) < len(own[1]) else None)}
        stats["changed_segments"] = stats["changed_elements"] = 0
    else:
        table["skeleton"] = {"e": "blob", "b": streams.add(skel, "skeleton")}
    by_key = {s.key: s for s in base_segs}
    by_role = {s.role: s for s in base_segs if s.role}
    for i, seg in enumerate(segs):
        a = _elements(data, seg)
        entry: dict[str, Any] = {"o": seg.offset, "n": seg.length}
        ref = _match(seg, i, base_segs, by_key, by_role) if base is not None else None
        if seg.product is not None and _product(data, seg.product) == data[seg.offset:seg.offset + seg.length]:
            entry.update(e="mul", a=seg.product[0], src=[seg.product[1], seg.product[2]])
            label = "input scale x kernel scales"
        elif ref is not None and base[ref.offset:ref.offset + ref.length] == data[seg.offset:seg.offset + seg.length]:
            entry.update(e="same", bo=ref.offset)
            label = "same as base"
        else:
            spec, label, cost, blobs = _encode_values(streams, a, seg.shape, seg.axis, commit=False)
            how, mask = "code", None
            if ref is not None and ref.length == seg.length and ref.width == seg.width:
                old = np.frombuffer(base[ref.offset:ref.offset + ref.length], dtype=a.dtype)
                changed = old != a
                stats["changed_elements"] += int(changed.sum())
                pmask = np.packbits(changed).tobytes()
                pspec, plabel, pcost, pblobs = _encode_values(streams, a[changed], [int(changed.sum())], None,
                                                              commit=False)
                pcost += streams.cost([pmask])
                if pcost < cost:
                    how, mask, spec, blobs, cost, label = "patch", pmask, pspec, pblobs, pcost, f"patch ({plabel})"
                for rcost, rlabel, rspec, rblobs, rmask in _recode_candidates(streams, a, old, seg):
                    if rcost < cost:
                        how, mask, spec, blobs, cost, label = "recode", rmask, rspec, rblobs, rcost, rlabel
            elif base is not None:
                stats["changed_elements"] += a.size
            spec = dict(spec)
            if how == "patch":
                entry.update(e="patch", bo=ref.offset, w=seg.width, m=streams.add(mask, "patchmask"))
            elif how == "recode":
                entry.update(e="recode", bo=ref.offset, m=streams.add(mask, "patchmask"))
            else:
                entry.update(e="code")
            for key, stream, blob in blobs:
                spec[key] = streams.add(blob, stream)
            entry["vals"] = spec
            if base is not None:
                stats["changed_segments"] += 1
        stats["codings"][label] = stats["codings"].get(label, 0) + 1
        table["segments"].append(entry)
    blob_bytes, sizes, codecs = streams.finish(table)
    tjson = json.dumps(table, separators=(",", ":")).encode()
    tcomp = fmt.compress(tjson, "lzma")
    body = struct.pack("<I", len(tcomp)) + tcomp + blob_bytes
    header = {"format": fmt.FORMAT, "version": fmt.VERSION, "kind": "delta" if base is not None else "full",
              "artifact": {"name": name, "format": kind, "bytes": len(data), "sha256": fmt.sha256(data)},
              "base": None if base is None else {"name": base_name, "bytes": len(base), "sha256": fmt.sha256(base)},
              "body": {"bytes": len(body), "sha256": fmt.sha256(body), "table_bytes": len(tjson)}}
    hjson = json.dumps(header, separators=(",", ":")).encode()
    pkg = fmt.MAGIC + struct.pack("<I", len(hjson)) + hjson + body
    stats.update(segments=len(segs), weight_bytes=sum(s.length for s in segs),
                 coded_weight_bytes=sum(v for k, v in sizes.items() if k != "skeleton"),
                 skeleton_bytes=len(skel), coded_skeleton_bytes=sizes.get("skeleton", 0), table_bytes=len(tcomp),
                 header_bytes=12 + len(hjson), streams=sizes, codecs=codecs)
    return pkg, stats


def package(artifact: str | Path, *, base: str | Path | None = None, out: str | Path | None = None,
            codec: str = "auto") -> PackageResult:
    """Write an update package of ``artifact`` (a delta against the deployed ``base`` when given)."""
    t0 = time.perf_counter()
    src = Path(artifact)
    data = _read(src, "artifact")
    kind = artifact_format(src)
    base_data = None
    if base is not None:
        base_data = _read(base, "base")
        if artifact_format(Path(base)) != kind:
            raise InvalidArgument(f"the base {Path(base).name} is not a .{kind} file like {src.name}",
                                  hint="pass the deployed artifact of the same format")
    dest = Path(out) if out else src.with_name(src.name + (".delta" if base is not None else "") + SUFFIX)
    refuse_folder(dest, "--out")
    if dest.resolve() in {src.resolve(), *([Path(base).resolve()] if base is not None else [])}:
        raise InvalidArgument(f"--out {dest} would overwrite the artifact or the base", hint="choose another path")
    pkg, stats = build(data, kind, name=src.name, base=base_data, base_name=Path(base).name if base else None,
                       codec=codec)
    fmt.restore(pkg, base_data, dest.name)  # never write a package that does not restore exactly
    with atomic_path(dest) as tmp:
        tmp.write_bytes(pkg)
    gz = len(gzip.compress(data, 9, mtime=0))
    return PackageResult(path=str(dest), artifact=str(src), format=kind,
                         kind="delta" if base is not None else "full", package_bytes=len(pkg),
                         artifact_bytes=len(data), artifact_gzip_bytes=gz, ratio_vs_gzip=round(gz / len(pkg), 3),
                         sha256=fmt.sha256(data), package_sha256=fmt.sha256(pkg),
                         base=str(base) if base is not None else None,
                         base_sha256=fmt.sha256(base_data) if base_data is not None else None,
                         seconds=round(time.perf_counter() - t0, 3), **stats)


def unpack(package: str | Path, *, base: str | Path | None = None, out: str | Path | None = None) -> UnpackResult:
    """Restore the artifact in ``package`` (byte-identical, sha256 checked); nothing is written unless it is."""
    t0 = time.perf_counter()
    p = Path(package)
    data = _read(p, "package")
    base_data = _read(base, "base") if base is not None else None
    try:
        header, _ = fmt.read_header(data, p.name)
        restored = fmt.restore(data, base_data, p.name)
    except fmt.PackageError as exc:
        raise _translate(exc) from None
    dest = Path(out) if out else p.with_name(Path(header["artifact"]["name"]).name)
    refuse_folder(dest, "--out")
    if dest.resolve() == p.resolve():
        raise InvalidArgument(f"--out {dest} would overwrite the package", hint="choose another path")
    with atomic_path(dest) as tmp:
        tmp.write_bytes(restored)
    return UnpackResult(path=str(dest), package=str(p), kind=header.get("kind", "full"), bytes=len(restored),
                        sha256=fmt.sha256(restored), package_bytes=len(data),
                        base=str(base) if base is not None else None, seconds=round(time.perf_counter() - t0, 3))
