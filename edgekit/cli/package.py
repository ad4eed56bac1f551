"""``edgekit package`` / ``edgekit unpack``: update packages (full, or deltas against the deployed artifact)."""
from __future__ import annotations

from typing import Any

import click
from rich.markup import escape

from ..packaging import package, unpack
from ..specs import PackageSpec, UnpackSpec
from ._options import given, spec_command, spec_options
from ._output import emit, json_option, out


def _kib(n: int | None) -> str:
    return "-" if n is None else f"{n / 1024:.1f} KiB"


def render_package(r) -> None:
    out.print(f"wrote {escape(r.path)}: [bold]{r.package_bytes:,} B[/] ({r.kind}) for {escape(r.artifact)} "
              f"({r.artifact_bytes:,} B; gzip -9 {r.artifact_gzip_bytes:,} B, {r.ratio_vs_gzip:g}x smaller)",
              highlight=False, soft_wrap=True)
    out.print(f"  weights {_kib(r.weight_bytes)} -> {_kib(r.coded_weight_bytes)} in {r.segments} segments "
              f"({', '.join(f'{k}: {v}' for k, v in sorted(r.codings.items()))}); rest of the file "
              f"{_kib(r.skeleton_bytes)} -> {_kib(r.coded_skeleton_bytes)}; table {r.table_bytes:,} B",
              highlight=False, soft_wrap=True)
    if r.kind == "delta":
        out.print(f"  against {escape(str(r.base))}: {r.changed_segments} of {r.segments} segments changed "
                  f"({r.changed_elements:,} elements)", highlight=False, soft_wrap=True)
    out.print(f"  restores to sha256 {r.sha256} (checked before writing)", highlight=False, soft_wrap=True)


def render_unpack(r) -> None:
    out.print(f"restored {escape(r.path)} ({r.bytes:,} B, sha256 {r.sha256}, checked) from {escape(r.package)} "
              f"({r.package_bytes:,} B, {r.kind})", highlight=False, soft_wrap=True)


@spec_command(PackageSpec, "edgekit.packaging:package", cli_only=("as_json",))
@click.command("package")
@spec_options(PackageSpec)
@json_option
def package_cmd(as_json: bool, **kwargs: Any) -> None:
    """Write an update package of ARTIFACT (.tflite/.onnx), or with --base a delta against the deployed file.

    \b
    edgekit package artifacts/deep/model_int8.tflite                       # -> model_int8.tflite.ekpkg
    edgekit package v2.tflite --base v1.tflite --out v1-to-v2.ekpkg         # only what changed
    edgekit unpack v1-to-v2.ekpkg --base v1.tflite --out v2.tflite          # byte-identical v2.tflite
    edgekit bench model_int8.tflite.ekpkg -d rpi4                           # restore + check + bench on the device

    Weights are coded where they are small: per-channel codebook indices when a tensor has few distinct values
    (clustering), zero masks (pruning), byte planes otherwise, entropy-coded with Python's own lzma/zlib/bz2. A
    delta holds, per tensor, nothing (unchanged), the changed elements (mask + values) or the new tensor. Restoring
    needs only Python + numpy (edgekit/packaging/format.py, shipped with the runner) and checks the sha256.
    """
    emit(package(spec=PackageSpec.from_dict(given(kwargs))), as_json, render_package)


@spec_command(UnpackSpec, "edgekit.packaging:unpack", cli_only=("as_json",))
@click.command("unpack")
@spec_options(UnpackSpec)
@json_option
def unpack_cmd(as_json: bool, **kwargs: Any) -> None:
    """Restore the artifact in PACKAGE (with --base for a delta): byte-identical, sha256 checked.

    \b
    edgekit unpack model_int8.tflite.ekpkg --out model_int8.tflite
    edgekit unpack v1-to-v2.ekpkg --base v1.tflite --out v1.tflite          # update the deployed file in place

    A damaged, truncated or altered package, or a wrong or missing base: error, exit 2, nothing written, the base
    untouched.
    """
    emit(unpack(spec=UnpackSpec.from_dict(given(kwargs))), as_json, render_unpack)


def register(main: click.Group) -> None:
    main.add_command(package_cmd)
    main.add_command(unpack_cmd)
