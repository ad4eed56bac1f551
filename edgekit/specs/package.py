"""PackageSpec (``edgekit.package``: an update package of an artifact, or a delta against the deployed one) and
UnpackSpec (``edgekit.unpack``: restore it, exact and sha256-checked)."""
from __future__ import annotations

from .._spec import Spec, option, spec

CODECS = ("auto", "lzma", "zlib", "bz2")


@spec
class PackageSpec(Spec):
    """``edgekit.package(artifact, base=..., out=...)``."""

    artifact: str = option(help="The .tflite/.onnx to ship.", argument=True, metavar="ARTIFACT")
    base: str | None = option(None, help="The artifact deployed on the device: the package then holds only what "
                                         "changed (tensor by tensor) and restores only against that file.")
    out: str | None = option(None, help="The package file (default: ARTIFACT.ekpkg, or ARTIFACT.delta.ekpkg with "
                                        "--base).")
    codec: str = option("auto", choices=CODECS, help="Entropy coder of the package's streams (auto: the smallest "
                                                     "of lzma, zlib and bz2 per stream; all in Python's standard "
                                                     "library).")


@spec
class UnpackSpec(Spec):
    """``edgekit.unpack(package, base=..., out=...)``."""

    package: str = option(help="A package written by edgekit package.", argument=True, metavar="PACKAGE")
    base: str | None = option(None, help="The deployed artifact a delta package was made against.")
    out: str | None = option(None, help="The restored artifact (default: the name the package records, beside "
                                        "the package). May be the --base file itself (replaced only once the "
                                        "restore is checked).")
