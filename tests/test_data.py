"""edgekit.data without TensorFlow: bad inputs (issue 8), arrays of any rank and several inputs (issue 10), image
folders with corrupt files, built-in datasets."""
from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

from edgekit.data import Dataset, load
from edgekit.errors import DataError, InvalidArgument


def _png_header_only(path, width: int, height: int) -> None:
    """A PNG whose IHDR claims width x height RGB pixels, with almost no pixel data (a decompression bomb's header)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


def _png(path, value: int = 128, size=(20, 20)) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*size, 3), value, np.uint8)).save(path)


# -- issue 8: bad data files are a DataError (exit 2) with a hint, never an internal error -------------------------
def test_zero_byte_npy(tmp_path):
    f = tmp_path / "empty.npy"
    f.write_bytes(b"")
    with pytest.raises(DataError, match="empty") as info:
        load(f, input_shape=(8, 8, 1))
    assert info.value.hint and "np.save" in info.value.hint


def test_truncated_npz(tmp_path):
    f = tmp_path / "cut.npz"
    np.savez(f, x=np.zeros((16, 8, 8, 1), np.float32), y=np.zeros(16, np.int64))
    f.write_bytes(f.read_bytes()[:300])
    with pytest.raises(DataError, match="truncated or corrupt") as info:
        load(f, input_shape=(8, 8, 1))
    assert info.value.hint


def test_npz_member_cut_inside_its_data(tmp_path):
    """The zip directory survives but a member's bytes do not: still a DataError, not zlib/EOF errors."""
    f = tmp_path / "cut.npz"
    np.savez_compressed(f, x=np.random.default_rng(0).random((64, 8, 8, 1)).astype(np.float32))
    raw = bytearray(f.read_bytes())
    raw[200:260] = b"\0" * 60  # damage the compressed stream of x
    f.write_bytes(bytes(raw))
    with pytest.raises(DataError) as info:
        load(f, input_shape=(8, 8, 1))
    assert info.value.hint


def test_npz_with_an_object_array(tmp_path):
    f = tmp_path / "obj.npz"
    np.savez(f, x=np.array([np.zeros((8, 8, 1)), "text"], dtype=object))
    with pytest.raises(DataError, match="object") as info:
        load(f, input_shape=(8, 8, 1))
    assert "never unpickles" in info.value.message and "astype" in info.value.hint


def test_decompression_bomb_image(tmp_path):
    _png_header_only(tmp_path / "imgs" / "a" / "bomb.png", 60000, 60000)
    with pytest.raises(DataError, match="claims 3600 Mpx") as info:
        load(tmp_path / "imgs", input_shape=(32, 32, 3), strict=True)
    assert info.value.hint
    with pytest.raises(DataError, match="no readable image") as info:  # not strict: skipped, then nothing is left
        load(tmp_path / "imgs", input_shape=(32, 32, 3))
    assert "bomb.png" in info.value.message and info.value.hint


@pytest.mark.parametrize("x, words", [
    (np.zeros((0, 8, 8, 1), np.float32), "holds no samples"),
    (np.array([["a"] * 8] * 8), "dtype"),
])
def test_empty_or_wrong_dtype_arrays_have_hints(tmp_path, x, words):
    f = tmp_path / "x.npy"
    np.save(f, x)
    with pytest.raises(DataError, match=words) as info:
        load(f, input_shape=(8, 8, 1) if x.dtype.kind == "f" else (8,))
    assert info.value.hint


def test_missing_data_path_has_a_hint(tmp_path):
    with pytest.raises(DataError, match="does not exist") as info:
        load(tmp_path / "nope" / "calib", input_shape=(8, 8, 1))
    assert info.value.hint


def test_cli_bad_data_exits_2_with_hint(tmp_path):
    from click.testing import CliRunner

    from edgekit.cli import main

    f = tmp_path / "empty.npy"
    f.write_bytes(b"")
    r = CliRunner().invoke(main, ["export", "mobilenet_v1", "--alpha", "0.25", "--resolution", "32", "--classes", "10",
                                  "--weights", "none", "--quantize", "int8", "--calib-data", str(f), "--out",
                                  str(tmp_path / "out")])
    assert r.exit_code == 2, r.output
    assert "error:" in r.output and "hint:" in r.output and "internal error" not in r.output


# -- issue 10 item 3 (data side): arrays of any rank, several inputs ---------------------------------------------
def test_arrays_of_any_rank_load_as_given(tmp_path):
    audio = np.random.default_rng(0).standard_normal((12, 400, 1)).astype(np.float32)
    np.savez(tmp_path / "audio.npz", x=audio, y=np.arange(12) % 3)
    ds = load(tmp_path / "audio.npz", input_shape=(400, 1))
    assert ds.x.shape == (12, 400, 1) and ds.preprocess == "as-given" and list(ds.y) == list(np.arange(12) % 3)
    np.testing.assert_array_equal(ds.x, audio)  # no image preprocessing for non-image inputs
    flat = load(np.ones((5, 7), np.float64), input_shape=(7,))
    assert flat.x.dtype == np.float32 and flat.x.shape == (5, 7)
    with pytest.raises(DataError, match=r"the model needs \(N, 400, 1\)"):
        load(np.ones((5, 300, 1)), input_shape=(400, 1))


def test_several_inputs_from_npz_keys(tmp_path):
    rng = np.random.default_rng(0)
    a, b = rng.random((6, 16, 16, 3), np.float32), rng.random((6, 10), np.float32)
    np.savez(tmp_path / "by_name.npz", image=a, meta=b, y=np.arange(6))
    ds = load(tmp_path / "by_name.npz", input_shape=[(16, 16, 3), (10,)], input_names=["image", "meta"])
    assert isinstance(ds.x, list) and [v.shape for v in ds.x] == [(6, 16, 16, 3), (6, 10)]
    np.testing.assert_array_equal(ds.inputs[1], b)
    np.savez(tmp_path / "by_index.npz", x0=a, x1=b)
    ds = load(tmp_path / "by_index.npz", input_shape=[(16, 16, 3), (10,)])
    assert ds.y is None and len(ds) == 6
    sub = ds.take(4, seed=1)
    assert [v.shape[0] for v in sub.inputs] == [4, 4]
    np.testing.assert_array_equal(sub.inputs[0][0], a[np.random.default_rng(1).permutation(6)[0]])
    rest, held = ds.split(0.5, seed=0)
    assert len(rest) == 3 and len(held) == 3
    with pytest.raises(DataError, match="holds 2 input array.*the model has 3 inputs") as info:
        load(tmp_path / "by_index.npz", input_shape=[(16, 16, 3), (10,), (4,)])
    assert "x2" in info.value.hint
    _png(tmp_path / "imgs" / "a" / "0.png")
    with pytest.raises(DataError, match="several inputs"):
        load(tmp_path / "imgs", input_shape=[(16, 16, 3), (10,)])
    with pytest.raises(DataError, match="6 samples but 5"):
        load(([a, b[:5]], None), input_shape=[(16, 16, 3), (10,)])


def test_image_sources_need_an_image_input(tmp_path):
    _png(tmp_path / "imgs" / "a" / "0.png")
    with pytest.raises(DataError, match="image") as info:
        load(tmp_path / "imgs", input_shape=(400, 1))
    assert info.value.hint


# -- image folders ----------------------------------------------------------------------------------------------
def test_corrupt_images_are_skipped_with_a_warning(tmp_path):
    from edgekit.errors import EdgekitWarning

    root = tmp_path / "imgs"
    for i in range(6):
        _png(root / ("cat" if i % 2 else "dog") / f"{i}.png", value=20 * i)
    (root / "cat" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (root / "dog" / "empty.png").write_bytes(b"")
    with pytest.warns(EdgekitWarning, match=r"skipped 2 unreadable images of 8") as rec:
        ds = load(root, input_shape=(8, 8, 3), preprocess_mode="unit")
    text = str(rec[0].message)
    assert "broken.jpg" in text and "empty.png" in text and "strict" in text
    assert len(ds) == 6 and ds.class_names == ["cat", "dog"] and ds.meta["skipped"] == 2
    assert sorted(ds.y.tolist()) == [0, 0, 0, 1, 1, 1]
    with pytest.raises(DataError, match="broken.jpg") as info:
        load(root, input_shape=(8, 8, 3), strict=True)
    assert info.value.hint


def test_strict_error_names_the_first_unreadable_file_in_order_whatever_the_threads_do(tmp_path, monkeypatch):
    """Parallel decoding must not decide which file the strict error names (CI once saw the later one)."""
    import time

    from edgekit.data import images

    root = tmp_path / "imgs"
    for i in range(10):
        _png(root / ("cat" if i % 2 else "dog") / f"{i}.png", value=20 * i)
    (root / "cat" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (root / "dog" / "empty.png").write_bytes(b"")
    real = images.decode

    def slow_first(src, *a, **k):
        if str(src).endswith("broken.jpg"):
            time.sleep(0.5)  # the later bad file fails first in time
        return real(src, *a, **k)

    monkeypatch.setattr(images, "decode", slow_first)
    with pytest.raises(DataError, match="broken.jpg"):
        load(root, input_shape=(8, 8, 3), strict=True)


def test_folder_limit_takes_only_what_it_needs(tmp_path, monkeypatch):
    from edgekit.data import images

    for i in range(30):
        _png(tmp_path / "imgs" / f"c{i % 3}" / f"{i}.png", value=i)
    calls = []
    real = images.decode

    def counting(src, *a, **k):
        calls.append(src)
        return real(src, *a, **k)

    monkeypatch.setattr(images, "decode", counting)
    ds = load(tmp_path / "imgs", input_shape=(8, 8, 1), limit=5, seed=3)
    assert len(ds) == 5 and len(calls) == 5 and ds.x.shape == (5, 8, 8, 1)
    assert ds.meta["source_shapes"] == [(20, 20, 3)]  # what the images were before fitting the input


def test_dataset_take_subset_split_keep_working():
    x = np.arange(40, dtype=np.float32).reshape(10, 2, 2, 1)
    ds = Dataset(x, np.arange(10), "t", ["a"] * 10)
    assert len(ds.take(3, seed=0)) == 3 and len(ds.take(None)) == 10
    rest, held = ds.split(0.2, seed=0)
    assert len(rest) == 8 and len(held) == 2 and set(rest.y) | set(held.y) == set(range(10))
    with pytest.raises(DataError):
        ds.split(1.5)


def test_builtin_datasets_load(fashion_mnist_available):
    ds = load("fashion-mnist", input_shape=(32, 32, 1), preprocess_mode="tf", split="test", limit=50, seed=0)
    assert ds.x.shape == (50, 32, 32, 1) and ds.x.min() >= -1.0 and ds.x.max() <= 1.0
    assert ds.source == "fashion-mnist:test" and ds.num_classes == 10
    with pytest.raises(InvalidArgument, match="did you mean"):
        load("fashion-mnst", input_shape=(32, 32, 1))
