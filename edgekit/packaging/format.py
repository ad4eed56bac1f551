#!/usr/bin/env python3
"""edgekit update packages: read and restore (exact, sha256-checked). Self-contained on purpose.

This file is copied to devices beside the runner: it needs only Python >= 3.9, numpy and the standard library
(``lzma``, ``zlib``, ``bz2``, ``hashlib``, ``json``). It never imports edgekit.

A package is::

    MAGIC (8 bytes) | u32 little-endian header length | header (UTF-8 JSON) | body

The header (the manifest) names the format version, the artifact it restores to (name, format, bytes, sha256),
the base it needs (``None`` for a full package; else the deployed artifact's bytes and sha256) and the body's bytes
and sha256. The body is ``u32 table length | table (LZMA2-compressed JSON) | blobs``; the table lists the blobs
(codec, offset, length) and the artifact's pieces in file order: the ``skeleton`` (every byte that is not a
weight tensor, itself coded as-is or against the base's skeleton) and one entry per weight segment, coded in the
domain where it is small (per-slice codebook + indices, optional zero mask, byte planes) or, in a delta, as the
base's segment, or the base's segment with the changed elements replaced. Restoring writes every piece at its
offset and checks the sha256 of the result (and of the base) against the header.

    python format.py PACKAGE OUT [--base DEPLOYED]      # restore on a device without edgekit
"""
import bz2
import hashlib
import json
import lzma
import struct
import sys
import zlib

MAGIC = b"EKPKG\x00\x01\n"
FORMAT = "edgekit-package"
VERSION = 1
_LZMA_FILTERS = [{"id": lzma.FILTER_LZMA2, "dict_size": 1 << 23}]
_LZMA_DECODE = [{"id": lzma.FILTER_LZMA2, "dict_size": 1 << 23}]


class PackageError(Exception):
    """A package that cannot be restored: ``kind`` is bad_package | wrong_base | needs_base | unsupported."""

    def __init__(self, kind, message, hint=None):
        Exception.__init__(self, message)
        self.kind, self.message, self.hint = kind, message, hint


def sha256(data):
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------------------------- codecs (bytes)
def compress(data, codec, zdict=None):
    data = bytes(data)
    if codec == "raw":
        return data
    if codec == "lzma":
        filters = [dict(_LZMA_FILTERS[0], preset=9 | lzma.PRESET_EXTREME)]
        return lzma.compress(data, format=lzma.FORMAT_RAW, filters=filters)
    if codec == "zlib":
        if zdict:
            c = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, zdict)
        else:
            c = zlib.compressobj(9, zlib.DEFLATED, -15, 9)
        return c.compress(data) + c.flush()
    if codec == "bz2":
        return bz2.compress(data, 9)
    raise ValueError(f"unknown codec {codec!r}")


def decompress(data, codec, size, zdict=None):
    if codec == "raw":
        out = bytes(data)
    elif codec == "lzma":
        out = lzma.decompress(data, format=lzma.FORMAT_RAW, filters=_LZMA_DECODE)
    elif codec == "zlib":
        d = zlib.decompressobj(-15, zdict) if zdict else zlib.decompressobj(-15)
        out = d.decompress(data, size + 1) + d.flush()
    elif codec == "bz2":
        out = bz2.decompress(data)
    else:
        raise PackageError("unsupported", f"the package uses codec {codec!r}, which this unpacker lacks",
                           hint="update edgekit (and the runner on the device)")
    if len(out) != size:
        raise ValueError(f"a {codec} blob decoded to {len(out)} bytes, not {size}")
    return out


# --------------------------------------------------------------------------------------------------- reading
def read_header(data, name="package"):
    """(header dict, body bytes) of a package; raises :class:`PackageError` for anything that is not a whole,
    untampered edgekit package of a version this code reads."""
    if len(data) < 12 or data[:8] != MAGIC:
        if data[:5] == MAGIC[:5]:
            raise PackageError("unsupported", f"{name} is an edgekit package of another format revision",
                               hint="use the edgekit version that wrote it, or re-package the artifact")
        raise PackageError("bad_package", f"{name} is not an edgekit package (no {MAGIC[:5].decode()} header)",
                           hint="pass a file written by `edgekit package`")
    (n,) = struct.unpack("<I", data[8:12])
    if 12 + n > len(data):
        raise PackageError("bad_package", f"{name} is truncated ({len(data)} bytes; its header alone needs "
                                          f"{12 + n})", hint="copy or download the package again")
    try:
        header = json.loads(data[12:12 + n].decode("utf-8"))
        body = data[12 + n:]
        fmt, version, body_info = header["format"], int(header["version"]), header["body"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise PackageError("bad_package", f"{name} has a damaged header ({type(exc).__name__}: {exc})",
                           hint="copy or download the package again") from None
    if fmt != FORMAT:
        raise PackageError("bad_package", f"{name} is not an edgekit package (format {fmt!r})",
                           hint="pass a file written by `edgekit package`")
    if version > VERSION:
        raise PackageError("unsupported", f"{name} is package format {version}; this unpacker reads up to {VERSION}",
                           hint="update edgekit (and the runner on the device)")
    if len(body) != int(body_info["bytes"]):
        raise PackageError("bad_package", f"{name} is truncated or padded: its body is {len(body)} bytes, the "
                                          f"header says {body_info['bytes']}",
                           hint="copy or download the package again")
    if sha256(body) != body_info["sha256"]:
        raise PackageError("bad_package", f"{name} is damaged or was altered: its body's sha256 differs from the "
                                          "header's", hint="copy or download the package again")
    return header, body


def check_base(header, base, name="package"):
    """Refuse a missing or wrong base for a delta package (and a base given to a full one is ignored)."""
    need = header.get("base")
    if not need:
        return
    if base is None:
        raise PackageError("needs_base", f"{name} is a delta against {need.get('name') or 'a deployed artifact'} "
                                         f"(sha256 {need['sha256'][:12]}...): it needs that file",
                           hint="pass the deployed artifact with --base")
    got = sha256(base)
    if got != need["sha256"]:
        raise PackageError("wrong_base", f"the base given is not the one {name} was made against (sha256 {got[:12]}"
                                         f"... vs {need['sha256'][:12]}...)",
                           hint=f"pass the deployed artifact {need.get('name') or ''} it was made from (or install "
                                "a full package)".replace("  ", " "))


# --------------------------------------------------------------------------------------------------- values
def _np():
    import numpy as np
    return np


def _utype(w):
    return {1: "u1", 2: "<u2", 4: "<u4", 8: "<u8"}.get(w)


def _elements(raw, w):
    """bytes -> numpy array of unsigned ints of width ``w`` (bit-exact element compare; NaNs and -0.0 kept)."""
    np = _np()
    return np.frombuffer(raw, dtype=_utype(w))


def unshuffle(data, w):
    """Byte planes (all first bytes, then all second bytes, ...) -> elements of ``w`` bytes."""
    if w == 1:
        return bytes(data)
    np = _np()
    return np.frombuffer(data, dtype="u1").reshape(w, -1).T.tobytes()


def scaled(bits, raw):
    """float32(bits) * the float32 vector ``raw``, in float32 (IEEE, the same on every machine) -> bytes."""
    np = _np()
    a = np.frombuffer(struct.pack("<I", int(bits)), dtype="<f4")[0]
    return (a * np.frombuffer(raw, dtype="<f4")).astype("<f4").tobytes()


def _moved(shape, axis):
    return [shape[axis]] + [s for i, s in enumerate(shape) if i != axis]


def slice_indices(a, shape, axis):
    """Per-slice codebook indices of the elements ``a`` (rank in the slice's sorted distinct values), in the
    order of ``a`` with ``axis`` moved first (one slice per index of ``axis``; the whole tensor when None)."""
    np = _np()
    rows = a.reshape(1, -1) if axis is None else np.moveaxis(a.reshape(shape), axis, 0).reshape(shape[axis], -1)
    idx = np.empty(rows.shape, dtype=np.int64)
    for r, row in enumerate(rows):
        idx[r] = np.unique(row, return_inverse=True)[1].reshape(-1)
    return idx.reshape(-1)


def from_indices(spec, counts, book, idx, mask=None):
    """Elements from per-slice codebooks (``counts`` values each, concatenated in ``book``) and indices in moved
    order; ``mask``: elements set to zero bits."""
    np = _np()
    n = int(spec["n"])
    slices = len(counts)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    per = n // slices if slices else 0
    if idx.size != n or per * slices != n or int(counts.sum()) != book.size:
        raise ValueError("codebook indices do not match the segment")
    if slices and (idx.reshape(slices, per) >= counts[:, None]).any():
        raise ValueError("codebook index out of range")
    vals = book[np.repeat(starts, per) + idx]
    if mask is not None:
        vals[mask] = 0
    shape, axis = spec.get("shape"), spec.get("axis")
    if axis is not None:
        vals = np.moveaxis(vals.reshape(_moved(shape, axis)), 0, axis).reshape(-1)
    return vals


def decode_values(spec, blob):
    """Elements (numpy unsigned of width spec['w']) from a value spec; ``blob(i)`` gives blob i decoded."""
    np = _np()
    kind, w, n = spec["v"], int(spec["w"]), int(spec["n"])
    if kind == "raw":
        data = blob(spec["b"])
        data = unshuffle(data, w) if spec.get("sh") else data
        out = _elements(data, w)
    elif kind == "cb":
        counts = np.frombuffer(blob(spec["k"]), dtype="<u4").astype(np.int64)
        book = _elements(unshuffle(blob(spec["c"]), w), w)
        it = "u1" if int(spec["it"]) == 1 else "<u2"
        mask = None
        if "m" in spec:  # zero mask: the elements that are all-zero bits are not in the indices
            mask = np.unpackbits(np.frombuffer(blob(spec["m"]), dtype="u1"), count=n).astype(bool)
            idx = np.zeros(n, dtype=np.int64)
            idx[~mask] = np.frombuffer(blob(spec["i"]), dtype=it)
        else:
            idx = np.frombuffer(blob(spec["i"]), dtype=it).astype(np.int64)
        out = from_indices(spec, counts, book, idx, mask)
    else:
        raise PackageError("unsupported", f"unknown value coding {kind!r}", hint="update edgekit")
    if out.size != n:
        raise ValueError(f"a segment decoded to {out.size} elements, not {n}")
    return out


# --------------------------------------------------------------------------------------------------- restore
def _decode_body(header, body, base_skeleton):
    """The table and ``blob(ref)``: ref = [stream, offset, length] into a decompressed stream."""
    (n,) = struct.unpack("<I", body[:4])
    table = json.loads(decompress(body[4:4 + n], "lzma", int(header["body"]["table_bytes"])).decode("utf-8"))
    start = 4 + n
    streams = table["streams"]
    cache = {}

    def stream(i):
        if i not in cache:
            codec, off, length, size, zd = streams[i]
            chunk = body[start + off:start + off + length]
            if len(chunk) != length:
                raise ValueError("stream outside the body")
            cache[i] = decompress(chunk, codec, size, base_skeleton()[-32768:] if zd else None)
        return cache[i]

    def blob(ref):
        i, off, length = ref
        data = stream(i)[off:off + length]
        if len(data) != length:
            raise ValueError("blob outside its stream")
        return data

    return table, blob


def _skeleton_bytes(sk, blob, base_skeleton):
    if sk["e"] == "same":
        return base_skeleton()
    if sk["e"] == "blob":
        return blob(sk["b"])
    raise PackageError("unsupported", f"unknown skeleton coding {sk['e']!r}", hint="update edgekit")


def gaps(size, segments):
    """The (offset, length) runs of a file of ``size`` bytes outside ``segments`` [(offset, length), ...]."""
    out, pos = [], 0
    for off, length in sorted(segments):
        if off > pos:
            out.append((pos, off - pos))
        pos = max(pos, off + length)
    if pos < size:
        out.append((pos, size - pos))
    return out


def restore(data, base=None, name="package"):
    """The artifact's bytes from a package's bytes (and the deployed artifact's, for a delta); sha256-checked.

    Raises :class:`PackageError` for a damaged, truncated, tampered or unsupported package, a missing or wrong base.
    """
    header, body = read_header(data, name)
    check_base(header, base, name)
    np = _np()
    try:
        size = int(header["artifact"]["bytes"])
        memo = {}

        def base_skeleton():
            if "skel" not in memo:
                base_table = [tuple(x) for x in table.get("base_segments") or []]
                memo["skel"] = b"".join(base[o:o + n] for o, n in gaps(len(base), base_table))
            return memo["skel"]

        table, blob = _decode_body(header, body, base_skeleton)
        out = bytearray(size)
        skel = _skeleton_bytes(table["skeleton"], blob, base_skeleton)
        pos = 0
        segs = table["segments"]
        for off, length in gaps(size, [(s["o"], s["n"]) for s in segs]):
            out[off:off + length] = skel[pos:pos + length]
            pos += length
        if pos != len(skel):
            raise ValueError("the skeleton does not fill the artifact")
        for s in sorted(segs, key=lambda s: s["e"] == "mul"):  # products read segments restored before them
            off, length, e = int(s["o"]), int(s["n"]), s["e"]
            if e == "mul":
                src, n = int(s["src"][0]), int(s["src"][1])
                if any(x["e"] == "mul" and int(x["o"]) < src + n and src < int(x["o"]) + int(x["n"]) for x in segs):
                    raise ValueError("a product reads another product")
                piece = scaled(s["a"], bytes(out[src:src + n]))
            elif e == "same":
                bo = int(s["bo"])
                piece = base[bo:bo + length]
            elif e == "patch":
                bo, w = int(s["bo"]), int(s["w"])
                vals = _elements(base[bo:bo + length], w).copy()
                mask = np.unpackbits(np.frombuffer(blob(s["m"]), dtype="u1"), count=vals.size).astype(bool)
                vals[mask] = decode_values(s["vals"], blob)
                piece = vals.tobytes()
            elif e == "recode":  # the base's per-slice indices, some changed, through new codebooks
                bo, v = int(s["bo"]), s["vals"]
                w = int(v["w"])
                idx = slice_indices(_elements(base[bo:bo + length], w), v["shape"], v.get("axis"))
                mask = np.unpackbits(np.frombuffer(blob(s["m"]), dtype="u1"), count=idx.size).astype(bool)
                idx[mask] = np.frombuffer(blob(v["i"]), dtype="u1" if int(v["it"]) == 1 else "<u2")
                counts = np.frombuffer(blob(v["k"]), dtype="<u4").astype(np.int64)
                piece = from_indices(v, counts, _elements(unshuffle(blob(v["c"]), w), w), idx).tobytes()
            elif e == "code":
                piece = decode_values(s["vals"], blob).tobytes()
            else:
                raise PackageError("unsupported", f"unknown segment coding {e!r}", hint="update edgekit")
            if len(piece) != length:
                raise ValueError(f"segment at {off} decoded to {len(piece)} bytes, not {length}")
            out[off:off + length] = piece
    except PackageError:
        raise
    except (ValueError, KeyError, TypeError, IndexError, struct.error, lzma.LZMAError, zlib.error, OSError,
            EOFError) as exc:
        raise PackageError("bad_package", f"{name} cannot be decoded ({type(exc).__name__}: {exc})",
                           hint="copy or download the package again") from None
    out = bytes(out)
    if sha256(out) != header["artifact"]["sha256"]:
        raise PackageError("bad_package", f"{name} restored to a file whose sha256 differs from its manifest's",
                           hint="copy or download the package again (or the base differs in a way its sha256 "
                                "does not show)")
    return out


def main(argv=None):
    import argparse
    import os

    ap = argparse.ArgumentParser(description="Restore an edgekit update package (exact, sha256-checked).")
    ap.add_argument("package")
    ap.add_argument("out")
    ap.add_argument("--base", default=None, help="the deployed artifact a delta package was made against")
    args = ap.parse_args(argv)
    try:
        with open(args.package, "rb") as fh:
            data = fh.read()
        base = None
        if args.base:
            with open(args.base, "rb") as fh:
                base = fh.read()
        out = restore(data, base, os.path.basename(args.package))
    except PackageError as exc:
        print(json.dumps({"error": {"kind": exc.kind, "message": exc.message, "hint": exc.hint}}))
        return 2
    tmp = f"{args.out}.part-{os.getpid()}"
    with open(tmp, "wb") as fh:
        fh.write(out)
    os.replace(tmp, args.out)
    print(json.dumps({"restored": args.out, "bytes": len(out), "sha256": sha256(out)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
