"""Update packages: exact restore (sha256) of .tflite and .onnx, weights coded where they are small, deltas in
tensor space, and every damaged/wrong input refused with nothing written. Models are built directly (flatbuffer /
onnx.helper): no conversion, seconds. On devices: bench sends the package (with edgekit's unpacker), the runner
restores it, checks its sha256 and measures the result; rows report the bytes copied (locally, and on devlab's
arm64 rootfs over SSH under qemu: slow)."""
from __future__ import annotations

import ast
import gzip
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgekit.cli import main
from edgekit.devices import bench
from edgekit.errors import InvalidArgument, ModelLoadError
from edgekit.packaging import FORMAT_MODULE, header_of, package, unpack
from edgekit.packaging import format as fmt


def _sha(p: Path) -> str:
    return hashlib.sha256(Path(p).read_bytes()).hexdigest()


def clustered_int8(rng, shape, axis, clusters=16, sparsity=0.5):
    """Per-channel int8 weights with ``clusters`` values per channel and a fraction of zeros (prune + cluster)."""
    w = np.zeros(shape, dtype=np.int8)
    moved = np.moveaxis(w, axis, 0)
    for c in range(moved.shape[0]):
        book = rng.choice(np.arange(-127, 128), clusters, replace=False).astype(np.int8)
        vals = book[rng.integers(0, clusters, moved[c].shape)]
        vals[rng.random(moved[c].shape) < sparsity] = 0
        moved[c] = vals
    return w


def weights(seed=0, head_seed=None):
    rng = np.random.default_rng(seed)
    w = {"conv": clustered_int8(rng, (64, 3, 3, 32), 0), "dw": clustered_int8(rng, (1, 3, 3, 64), 3),
         "bias": rng.integers(-5000, 5000, 64).astype(np.int32)}
    head = np.random.default_rng(seed if head_seed is None else head_seed)
    w["fc"] = clustered_int8(head, (10, 32), 0, clusters=255, sparsity=0.0)
    w["fc_float"] = head.standard_normal((10, 32)).astype(np.float32)
    return w


def make_tflite(path: Path, w: dict, bias_scales: str | None = None) -> Path:
    """A .tflite flatbuffer whose tensors hold ``w`` (per-channel int8 quantization on the int8 ones). With
    ``bias_scales`` ("product" or "other") a CONV_2D reads input -> conv -> bias, the bias quantized per channel
    with scales = input scale x kernel scales (as the converter writes them), or with other scales."""
    import flatbuffers

    from edgekit import _tflite

    s = _tflite.schema()
    m = s.ModelT()
    m.version, m.description = 3, "edgekit test"
    m.buffers = [s.BufferT()]
    tensors = []
    for name, arr in w.items():
        b = s.BufferT()
        b.data = np.frombuffer(arr.tobytes(), dtype=np.uint8)
        m.buffers.append(b)
        t = s.TensorT()
        t.shape, t.name, t.buffer = list(arr.shape), name, len(m.buffers) - 1
        t.type = {np.int8: s.TensorType.INT8, np.int32: s.TensorType.INT32,
                  np.float32: s.TensorType.FLOAT32}[arr.dtype.type]
        if arr.dtype == np.int8:
            axis = 3 if name.endswith("dw") else 0
            q = s.QuantizationParametersT()
            q.scale = list(np.linspace(0.01, 0.02, arr.shape[axis]).astype(np.float32))
            q.zeroPoint = [0] * arr.shape[axis]
            q.quantizedDimension = axis
            t.quantization = q
        tensors.append(t)
    inp = s.TensorT()
    inp.shape, inp.name, inp.buffer, inp.type = [1, 8, 8, 32], "input", 0, s.TensorType.INT8
    q = s.QuantizationParametersT()
    q.scale, q.zeroPoint = [0.0371], [3]
    inp.quantization = q
    tensors.append(inp)
    ops, codes = [], []
    if bias_scales:
        names = [n.removeprefix("quant_") for n in w]
        conv, bias = tensors[names.index("conv")], tensors[names.index("bias")]
        q = s.QuantizationParametersT()
        prod = np.float32(0.0371) * np.asarray(conv.quantization.scale, dtype=np.float32)
        q.scale = list(prod if bias_scales == "product" else prod * np.float32(1.001))
        q.zeroPoint = [0] * len(q.scale)
        bias.quantization = q
        outp = s.TensorT()
        outp.shape, outp.name, outp.buffer, outp.type = [1, 6, 6, 64], "out", 0, s.TensorType.INT8
        tensors.append(outp)
        oc = s.OperatorCodeT()
        oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = s.BuiltinOperator.CONV_2D, s.BuiltinOperator.CONV_2D, 1
        codes.append(oc)
        op = s.OperatorT()
        op.opcodeIndex, op.inputs, op.outputs = 0, [len(tensors) - 2, names.index("conv"), names.index("bias")], \
            [len(tensors) - 1]
        ops.append(op)
    m.operatorCodes = codes
    sg = s.SubGraphT()
    sg.tensors, sg.inputs, sg.outputs, sg.operators, sg.name = tensors, [len(tensors) - 1], [0], ops, "main"
    m.subgraphs = [sg]
    b = flatbuffers.Builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    path.write_bytes(bytes(b.Output()))
    return path


def make_onnx(path: Path, w: dict) -> Path:
    import onnx
    from onnx import helper, numpy_helper

    inits = [numpy_helper.from_array(a, n) for n, a in w.items()]
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 32])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 10])
    node = helper.make_node("Gemm", ["x", "fc_float"], ["y"], transB=1)
    graph = helper.make_graph([node], "g", [x], [y], initializer=inits)
    onnx.save(helper.make_model(graph), str(path))
    return path


MAKERS = {"tflite": make_tflite, "onnx": make_onnx}


@pytest.fixture(params=sorted(MAKERS))
def kind(request):
    return request.param


def test_full_package_restores_exactly_and_is_smaller_than_gzip(tmp_path, kind):
    art = MAKERS[kind](tmp_path / f"m.{kind}", weights())
    res = package(art)
    assert res.path == str(art) + ".ekpkg" and res.kind == "full" and res.sha256 == _sha(art)
    assert Path(res.path).stat().st_size == res.package_bytes
    assert res.package_bytes < 0.8 * len(gzip.compress(art.read_bytes(), 9))  # 4-bit indices, half zeros
    assert any(k.startswith("codebook") for k in res.codings), res.codings
    back = unpack(res.path, out=tmp_path / "back")
    assert back.sha256 == res.sha256 and (tmp_path / "back").read_bytes() == art.read_bytes()
    assert header_of(res.path)["artifact"] == {"name": art.name, "format": kind, "bytes": art.stat().st_size,
                                               "sha256": res.sha256}


def test_per_channel_codebooks_code_per_channel_clusters(tmp_path):
    """int8 per-channel quantization turns 16 float clusters into 16 different int8 values per channel: the
    codebook must be per channel (the quantized axis) to see them."""
    art = make_tflite(tmp_path / "m.tflite", weights())
    res = package(art)
    assert "codebook/channel" in res.codings or "codebook/channel+mask" in res.codings, res.codings


@pytest.mark.parametrize("scales", ["product", "other"])
def test_bias_scales_are_derived_from_input_and_kernel_scales(tmp_path, scales):
    """A bias's per-channel scales are the input's scale x the kernel's: derived, not stored (exactly; when the
    file holds other values they are stored)."""
    art = make_tflite(tmp_path / "m.tflite", weights(), bias_scales=scales)
    res = package(art, out=tmp_path / "p.ekpkg")
    derived = res.codings.get("input scale x kernel scales", 0)
    assert derived == (1 if scales == "product" else 0), res.codings
    assert fmt.restore((tmp_path / "p.ekpkg").read_bytes()) == art.read_bytes()


@pytest.mark.parametrize("codec", ["lzma", "zlib", "bz2"])
def test_every_codec_restores_exactly(tmp_path, codec):
    art = make_tflite(tmp_path / "m.tflite", weights())
    res = package(art, codec=codec, out=tmp_path / "p.ekpkg")
    assert set(res.codecs) <= {codec, "raw"}
    assert fmt.restore((tmp_path / "p.ekpkg").read_bytes()) == art.read_bytes()


def test_delta_of_the_same_model_is_tiny_and_exact(tmp_path, kind):
    art = MAKERS[kind](tmp_path / f"v1.{kind}", weights())
    again = MAKERS[kind](tmp_path / f"v2.{kind}", weights())  # re-exported: the same bytes
    res = package(again, base=art, out=tmp_path / "d.ekpkg")
    assert res.kind == "delta" and res.changed_segments == 0 and res.package_bytes < 1500
    assert set(res.codings) == {"same as base"}
    out = unpack(tmp_path / "d.ekpkg", base=art, out=tmp_path / "r")
    assert out.sha256 == _sha(again)


def test_delta_of_a_retrained_classifier_holds_only_the_head(tmp_path, kind):
    v1 = MAKERS[kind](tmp_path / f"v1.{kind}", weights())
    v2 = MAKERS[kind](tmp_path / f"v2.{kind}", weights(head_seed=7))  # only fc / fc_float changed
    full = package(v2, out=tmp_path / "full.ekpkg")
    res = package(v2, base=v1, out=tmp_path / "d.ekpkg")
    assert res.changed_segments == 2 and res.codings["same as base"] == res.segments - 2
    assert res.package_bytes < full.package_bytes / 3
    unpack(tmp_path / "d.ekpkg", base=v1, out=tmp_path / "r")
    assert (tmp_path / "r").read_bytes() == v2.read_bytes()


def test_delta_of_a_cluster_preserving_fine_tune_sends_changed_indices(tmp_path):
    """A cluster-preserving fine-tune (CQAT) moves every centroid (so every nonzero int8 value changes) and moves a
    few weights to another cluster: the delta is the base's indices, the changed ones and the new codebooks."""
    w1 = weights()
    w1["conv"] = np.clip(w1["conv"], -100, 100)
    rng = np.random.default_rng(3)
    flat = w1["conv"].reshape(64, -1).copy()
    for c in range(64):
        nz = np.flatnonzero(flat[c])
        pick = rng.choice(nz, max(1, len(nz) // 20), replace=False)
        flat[c, pick] = rng.choice(np.unique(flat[c][flat[c] != 0]), len(pick))  # another centroid of the channel
    flat = flat + np.sign(flat).astype(np.int8)  # every centroid moves, in order; zeros stay
    w2 = dict(w1, conv=flat.reshape(w1["conv"].shape))
    v1, v2 = make_tflite(tmp_path / "v1.tflite", w1), make_tflite(tmp_path / "v2.tflite", w2)
    full = package(v2, out=tmp_path / "full.ekpkg")
    res = package(v2, base=v1, out=tmp_path / "d.ekpkg")
    assert res.changed_segments == 1 and any("changed indices" in k for k in res.codings), res.codings
    assert res.package_bytes < full.package_bytes / 2
    assert fmt.restore((tmp_path / "d.ekpkg").read_bytes(), v1.read_bytes()) == v2.read_bytes()


def test_delta_matches_renamed_and_reordered_tensors_by_the_operator_reading_them(tmp_path):
    """QAT renames every layer and a converter may lay buffers out in another order: tensors are matched by the
    operator input that reads them, so a small change stays a small delta."""
    w1 = weights()
    v1 = make_tflite(tmp_path / "v1.tflite", w1, bias_scales="product")
    conv = w1["conv"].copy()
    conv.reshape(-1)[:5] = 7
    w2 = {"bias": w1["bias"], "fc": w1["fc"], "dw": w1["dw"], "fc_float": w1["fc_float"], "conv": conv}
    renamed = {f"quant_{k}": v for k, v in w2.items()}
    v2 = make_tflite(tmp_path / "v2.tflite", renamed, bias_scales="product")
    res = package(v2, base=v1, out=tmp_path / "d.ekpkg")
    assert any(k.startswith("patch") for k in res.codings), res.codings
    assert res.package_bytes < package(v2, out=tmp_path / "f.ekpkg").package_bytes / 3
    assert fmt.restore((tmp_path / "d.ekpkg").read_bytes(), v1.read_bytes()) == v2.read_bytes()


def test_delta_patch_of_a_few_changed_weights(tmp_path):
    """Unclustered weights of which a few changed: the changed positions and their values."""
    w1 = weights()
    w2 = dict(w1, fc_float=w1["fc_float"].copy())
    w2["fc_float"][3, 5] += 1
    v1, v2 = make_tflite(tmp_path / "v1.tflite", w1), make_tflite(tmp_path / "v2.tflite", w2)
    res = package(v2, base=v1, out=tmp_path / "d.ekpkg")
    assert res.changed_segments == 1 and res.changed_elements == 1
    assert any(k.startswith("patch") for k in res.codings), res.codings
    assert fmt.restore((tmp_path / "d.ekpkg").read_bytes(), v1.read_bytes()) == v2.read_bytes()


def _cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _damaged(tmp_path):
    art = make_tflite(tmp_path / "v1.tflite", weights())
    v2 = make_tflite(tmp_path / "v2.tflite", weights(head_seed=7))
    pkg = Path(package(v2, base=art, out=tmp_path / "d.ekpkg").path)
    data = pkg.read_bytes()
    cases = {"truncated": data[:len(data) - 10], "cut in the header": data[:20],
             "a body byte flipped": data[:-5] + bytes([data[-5] ^ 1]) + data[-4:],
             "not a package": art.read_bytes(), "empty": b""}
    hdr = data.index(b'"sha256"')  # the header's artifact sha256, altered
    cases["header sha256 altered"] = data[:hdr + 10] + (b"0" if data[hdr + 10:hdr + 11] != b"0" else b"1") \
        + data[hdr + 11:]
    return art, v2, pkg, cases


def test_every_damaged_package_is_refused_and_nothing_is_written(tmp_path):
    art, _, _, cases = _damaged(tmp_path)
    before = _sha(art)
    for what, data in cases.items():
        bad = tmp_path / "bad.ekpkg"
        bad.write_bytes(data)
        with pytest.raises((InvalidArgument, ModelLoadError)) as ei:
            unpack(bad, base=art, out=art)  # restoring over the deployed file itself
        assert ei.value.hint, what
        r = _cli("unpack", bad, "--base", art, "--out", tmp_path / "new.tflite")
        assert r.exit_code == 2 and "error:" in r.output and "hint:" in r.output, (what, r.output)
        assert not (tmp_path / "new.tflite").exists(), what
        assert _sha(art) == before, what
        assert not [p for p in tmp_path.iterdir() if ".part" in p.name], what


def test_wrong_or_missing_base_is_refused(tmp_path):
    art, v2, pkg, _ = _damaged(tmp_path)
    other = make_tflite(tmp_path / "other.tflite", weights(seed=5))
    before = _sha(other)
    r = _cli("unpack", pkg, "--base", other, "--out", other)
    assert r.exit_code == 2 and "not the one" in r.output and "hint:" in r.output, r.output
    assert _sha(other) == before
    r = _cli("unpack", pkg, "--out", tmp_path / "x.tflite")
    assert r.exit_code == 2 and "--base" in r.output and not (tmp_path / "x.tflite").exists(), r.output
    r = _cli("unpack", pkg, "--base", art, "--out", art)  # the real base: updated in place
    assert r.exit_code == 0, r.output
    assert art.read_bytes() == v2.read_bytes()


def test_package_refuses_bad_inputs(tmp_path):
    art = make_tflite(tmp_path / "m.tflite", weights())
    (tmp_path / "m.txt").write_text("x")
    for args, word in [((tmp_path / "m.txt",), ".tflite or .onnx"), ((tmp_path / "nope.tflite",), "does not exist"),
                       ((art, "--out", art), "overwrite"),
                       ((art, "--base", tmp_path / "m.txt"), "not a .tflite")]:
        r = _cli("package", *args)
        assert r.exit_code == 2 and word in r.output and "hint:" in r.output, r.output
    (tmp_path / "junk.tflite").write_bytes(b"\x00" * 64)
    r = _cli("package", tmp_path / "junk.tflite")
    assert r.exit_code == 2 and "TFLite" in r.output, r.output


def test_the_restore_module_is_self_contained_and_runs_alone(tmp_path):
    """format.py is copied to devices: it imports only the standard library and numpy, and restores from its
    own command line."""
    tree = ast.parse(FORMAT_MODULE.read_text())
    mods = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    mods |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert mods <= set(sys.stdlib_module_names) | {"numpy"}, mods
    art = make_tflite(tmp_path / "m.tflite", weights())
    pkg = package(art).path
    lone = tmp_path / "lone"
    lone.mkdir()
    (lone / "format.py").write_text(FORMAT_MODULE.read_text())
    done = subprocess.run([sys.executable, "-I", str(lone / "format.py"), pkg, str(tmp_path / "r.tflite")],
                          capture_output=True, text=True, cwd=lone)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "r.tflite").read_bytes() == art.read_bytes()


# ------------------------------------------------------------------------------------------------ on devices
@pytest.fixture()
def tiny(devlab, tmp_path):
    art = tmp_path / "tiny.tflite"
    shutil.copy(devlab / "tiny.tflite", art)
    return art


def test_bench_restores_a_package_locally(tiny, tmp_path):
    pkg = package(tiny, out=tmp_path / "tiny.tflite.ekpkg")
    (row,) = bench([pkg.path], "local", runs=3, warmup=1)
    assert row.ok, row.error
    assert row.sha256 == pkg.sha256 and row.format == "tflite" and row.model == "tiny"
    assert row.package["restored_sha256"] == pkg.sha256 and row.package["bytes"] == pkg.package_bytes
    assert row.bytes_transferred == 0  # local: nothing is copied


def test_bench_restores_an_onnx_package_locally(tmp_path):
    art = make_onnx(tmp_path / "m.onnx", weights())
    pkg = package(art)
    (row,) = bench([pkg.path], "local", runs=3, warmup=1)
    assert row.ok, row.error
    assert row.format == "onnx" and row.runtime == "onnxruntime" and row.package["restored_sha256"] == pkg.sha256


def test_bench_refuses_a_delta_without_its_base_before_connecting(tiny, tmp_path):
    other = make_tflite(tmp_path / "other.tflite", weights())
    delta = package(tiny, base=tiny, out=tmp_path / "d.ekpkg")
    with pytest.raises(InvalidArgument, match="delta package"):
        bench([delta.path], "ssh://nobody@192.0.2.1:1", runs=1)
    with pytest.raises(InvalidArgument, match="another base"):
        bench([delta.path], "ssh://nobody@192.0.2.1:1", runs=1, base=other)
    (row,) = bench([delta.path], "local", runs=2, warmup=0, base=tiny)
    assert row.ok and row.package["kind"] == "delta" and row.package["restored_sha256"] == delta.sha256


@pytest.fixture(scope="module")
def aarch64_pi(devlab, tmp_path_factory):
    """An 'aarch64 Pi' over SSH: a loopback sshd whose device Python is devlab's aarch64 CPython under qemu
    (arm64-sysroot.sh: tflite-runtime 2.14 + numpy 1.26, ai-edge-litert + numpy 2), as test_runner_aarch64 uses."""
    sys.path.insert(0, str(Path(__file__).parent))
    try:
        from test_devices_ssh import sshd as sshd_fixture
        from test_runner_aarch64 import a64 as a64_fixture
    finally:
        sys.path.pop(0)
    a64 = a64_fixture.__wrapped__(devlab)
    gen = sshd_fixture.__wrapped__(devlab, tmp_path_factory)
    info = next(gen)
    try:
        yield {"url": f"ssh://{info['SSHD_USER']}@{info['SSHD_HOST']}:{info['SSHD_PORT']}",
               "key": dict(key_file=info["SSHD_KEY"], known_hosts=info["SSHD_KNOWN_HOSTS"]),
               "python": {f: str(a64 / "bin" / f"python-{f}") for f in ("tflite", "litert")}}
    finally:
        next(gen, None)


@pytest.mark.device
@pytest.mark.slow
@pytest.mark.parametrize("flavour", ["tflite", "litert"])
def test_package_restores_exactly_on_aarch64_over_ssh(aarch64_pi, tiny, tmp_path, flavour):
    """The aarch64 board (its own Python and numpy 1.x / 2.x) restores byte-identical artifacts: bench of a full
    and of a delta package, and format.py alone on a package with per-channel codebooks, zero masks, derived
    scales and a codebook delta."""
    pi, py = aarch64_pi, aarch64_pi["python"][flavour]
    full = package(tiny, out=tmp_path / "tiny.tflite.ekpkg")
    (row,) = bench([full.path], pi["url"], python=py, runs=3, warmup=1, threads=1, **pi["key"])
    assert row.ok, row.error
    assert row.machine == "aarch64" and row.package["restored_sha256"] == full.sha256
    from edgekit.devices import RUNNER

    sizes = {p.name: p.stat().st_size for p in (Path(full.path), FORMAT_MODULE, RUNNER, tiny)}
    # what was not in the device's content-addressed cache yet is sent, and counted (an earlier run may have sent
    # the same bytes already)
    assert row.bytes_transferred == sum(sizes[n] for n in row.transfers), row.transfers
    again = tmp_path / "again.tflite"
    shutil.copy(tiny, again)
    delta = package(again, base=tiny, out=tmp_path / "d.ekpkg")
    (row,) = bench([delta.path], pi["url"], python=py, runs=2, warmup=0, threads=1, base=tiny, **pi["key"])
    assert row.ok and row.package["kind"] == "delta" and row.package["restored_sha256"] == delta.sha256
    sizes["d.ekpkg"] = delta.package_bytes
    assert row.bytes_transferred == sum(sizes[n] for n in row.transfers), row.transfers

    from edgekit.devices.profiles import parse_device
    from edgekit.devices.transports import ConnectOptions, create

    w1 = weights()
    w2 = dict(w1, conv=np.clip(w1["conv"], -100, 100) + np.sign(w1["conv"]).astype(np.int8))  # centroids move
    v1 = make_tflite(tmp_path / "v1.tflite", dict(w1, conv=np.clip(w1["conv"], -100, 100)), bias_scales="product")
    v2 = make_tflite(tmp_path / "v2.tflite", w2, bias_scales="product")
    pkgs = [(package(v2, out=tmp_path / "full2.ekpkg"), None), (package(v2, base=v1, out=tmp_path / "d2.ekpkg"), v1)]
    codings = set(pkgs[0][0].codings) | set(pkgs[1][0].codings)
    assert {"input scale x kernel scales", "codebook/channel+mask"} <= codings and any("changed indices" in c
                                                                                       for c in codings), codings
    t = create(parse_device(pi["url"]), ConnectOptions(**pi["key"]))
    t.connect()
    try:
        for pkg, base in pkgs:
            argv = [py, t.put(FORMAT_MODULE), t.put(pkg.path), t.run_file("restored.tflite")]
            if base is not None:
                argv += ["--base", t.put(base)]
            done = t.run(argv, timeout=600)
            assert done.returncode == 0, done.stdout + done.stderr
            assert json.loads(done.stdout.strip().splitlines()[-1])["sha256"] == fmt.sha256(v2.read_bytes())
    finally:
        t.close()
