"""Update packages: an artifact's weights coded where they are small (per-channel codebook indices, zero masks,
byte planes; entropy-coded with the standard library's lzma/zlib/bz2), deltas in tensor space against the deployed
artifact, exact restore (sha256-checked). :mod:`edgekit.packaging.format` restores them and is self-contained: it
is shipped to devices beside the runner.
"""
from __future__ import annotations

from pathlib import Path

from .._spec import takes_spec
from ..specs.package import PackageSpec, UnpackSpec
from . import build as _build
from .build import SUFFIX, PackageResult, UnpackResult, header_of

FORMAT_MODULE = Path(__file__).with_name("format.py")

#: the public names: what edgekit/__init__.py and the CLI use (the others are importable, not public API)
__all__ = ["package", "unpack", "PackageResult"]


@takes_spec(PackageSpec, positional=("artifact",))
def package(spec: PackageSpec) -> PackageResult:
    """Write an update package of ``artifact``: all of it, or (``base=``) only what changed against the deployed
    file, tensor by tensor. Restores byte-identically with :func:`unpack` or on the device (``edgekit bench
    FILE.ekpkg``)."""
    return _build.package(spec.artifact, base=spec.base, out=spec.out, codec=spec.codec)


@takes_spec(UnpackSpec, positional=("package",))
def unpack(spec: UnpackSpec) -> UnpackResult:
    """Restore the artifact in ``package`` (and ``base=`` for a delta): byte-identical, sha256 checked; nothing is
    written otherwise."""
    return _build.unpack(spec.package, base=spec.base, out=spec.out)
