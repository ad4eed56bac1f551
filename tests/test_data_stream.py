"""Streamed data through tf.data (issue 14): image folders and TFRecords with a corrupt image, sharding,
augmentation, several inputs; the same pixels as the in-memory loader."""
from __future__ import annotations

import numpy as np
import pytest

from edgekit.data import load, open_source
from edgekit.errors import DataError, EdgekitWarning


def _png_bytes(value: int, size=(12, 10)) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    rng = np.random.default_rng(value)
    Image.fromarray((rng.integers(0, 40, (*size, 3)) + value).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture()
def folder(tmp_path):
    """3 classes x 5 images, plus one corrupt file in class b."""
    root = tmp_path / "imgs"
    for c, name in enumerate("abc"):
        (root / name).mkdir(parents=True)
        for i in range(5):
            (root / name / f"{i}.png").write_bytes(_png_bytes(60 * c + i))
    (root / "b" / "zz_truncated.png").write_bytes(_png_bytes(7)[:40])
    return root


def _collect(ds):
    xs, ys = [], []
    for x, y in ds.as_numpy_iterator():
        xs.append(x)
        ys.append(y)
    return np.concatenate(xs), np.concatenate(ys)


def test_folder_stream_skips_the_corrupt_image_and_matches_the_loader(folder):
    from edgekit.data.stream import tf_dataset

    src = open_source(folder, input_shape=(8, 8, 3), preprocess_mode="tf")
    assert len(src) == 16 and src.class_names == ["a", "b", "c"] and src.labelled
    x, y = _collect(tf_dataset(src, batch_size=4))
    assert x.shape == (15, 8, 8, 3) and x.dtype == np.float32 and sorted(y.tolist()) == [0] * 5 + [1] * 5 + [2] * 5
    assert src.skips.count == 1 and "zz_truncated.png" in src.skips.examples[0][0]
    with pytest.warns(EdgekitWarning, match="skipped 1 unreadable image"):
        ref = load(folder, input_shape=(8, 8, 3), preprocess_mode="tf")
    np.testing.assert_array_equal(x, ref.x)  # one decoder: the stream gives the loader's pixels
    np.testing.assert_array_equal(y, ref.y)


def test_strict_stream_fails_on_the_first_unreadable_image(folder):
    from edgekit.data.stream import data_errors, tf_dataset

    src = open_source(folder, input_shape=(8, 8, 3), strict=True)
    with pytest.raises(DataError, match="unreadable image .*zz_truncated.png") as info:
        with data_errors(src):
            _collect(tf_dataset(src, batch_size=4))
    assert "--strict-data" in info.value.hint


def test_shuffled_shards_are_disjoint_and_cover_the_source(folder):
    from edgekit.data.stream import tf_dataset

    src = open_source(folder, input_shape=(8, 8, 3))
    seen = []
    for k in range(2):
        x, _ = _collect(tf_dataset(src, batch_size=3, shuffle=True, seed=1, shard=(2, k)))
        seen.append({arr.tobytes() for arr in x})
    assert not seen[0] & seen[1] and len(seen[0] | seen[1]) == 15
    a, _ = _collect(tf_dataset(src, batch_size=3, shuffle=True, seed=1))
    b, _ = _collect(tf_dataset(src, batch_size=3, shuffle=True, seed=1))
    np.testing.assert_array_equal(a, b)  # seeded
    assert not np.array_equal(a, _collect(tf_dataset(src, batch_size=3))[0])  # and shuffled


def test_augmentation_crops_and_flips_differently_each_epoch(folder):
    from edgekit.data.stream import tf_dataset

    src = open_source(folder, input_shape=(8, 8, 3))
    ds = tf_dataset(src, batch_size=15, augment=True, repeat=True, seed=3)
    it = ds.as_numpy_iterator()
    e1, e2 = next(it)[0], next(it)[0]
    plain, _ = _collect(tf_dataset(src, batch_size=15))
    assert e1.shape == plain.shape and not np.array_equal(e1, e2) and not np.array_equal(e1, plain)
    assert e1.min() >= 0.0 and e1.max() <= 1.0


def test_split_is_a_seeded_partition(folder):
    src = open_source(folder, input_shape=(8, 8, 3))
    rest, held = src.split(0.2, seed=0)
    assert len(rest) == 13 and len(held) == 3
    assert not set(rest.index) & set(held.index)
    again = src.split(0.2, seed=0)[1]
    assert list(again.index) == list(held.index)


def _write_tfrecords(path, items, image_key="image/encoded", label_key="image/class/label"):
    from edgekit._keras import tf

    with tf.io.TFRecordWriter(str(path)) as w:
        for data, label in items:
            feats = {image_key: tf.train.Feature(bytes_list=tf.train.BytesList(value=[data]))}
            if label is not None:
                feats[label_key] = tf.train.Feature(int64_list=tf.train.Int64List(value=[label]))
            w.write(tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString())


def test_tfrecords_stream_take_split_and_a_corrupt_record(tmp_path):
    from edgekit.data.stream import tf_dataset

    _write_tfrecords(tmp_path / "a.tfrecord", [(_png_bytes(i), i % 3) for i in range(10)])
    _write_tfrecords(tmp_path / "b.tfrecord", [(_png_bytes(20 + i), i % 3) for i in range(6)] + [(b"junk", 1)])
    src = open_source(tmp_path, input_shape=(8, 8, 1), preprocess_mode="unit")
    assert src.kind == "tfrecord" and src.labelled and len(src) == 17
    x, y = _collect(tf_dataset(src, batch_size=5))
    assert x.shape == (16, 8, 8, 1) and sorted(y.tolist()) == sorted([i % 3 for i in range(10)] +
                                                                     [i % 3 for i in range(6)])
    assert src.skips.count == 1 and src.skips.examples[0][0] == "b.tfrecord record 6"
    part = src.take(5, seed=0)
    assert part.x.shape == (5, 8, 8, 1) and part.y is not None
    rest, held = src.split(0.3, seed=1)
    assert len(rest) + len(held) == 17 and 0 < len(held) < 17
    names_rest = {r[0] for r in rest.records().as_numpy_iterator()}
    names_held = {r[0] for r in held.records().as_numpy_iterator()}
    assert not names_rest & names_held and len(names_rest | names_held) == 17
    assert len(src.limited(4)) == 4
    with pytest.warns(EdgekitWarning, match="skipped 1 unreadable image"):
        ds = load(tmp_path / "b.tfrecord", input_shape=(8, 8, 3))
    assert len(ds) == 6


def test_tfrecords_with_other_keys(tmp_path):
    _write_tfrecords(tmp_path / "c.tfrec", [(_png_bytes(i), i) for i in range(4)], image_key="img", label_key="cls")
    with pytest.raises(DataError, match="no image bytes under 'image/encoded'.*features: cls, img") as info:
        open_source(tmp_path / "c.tfrec", input_shape=(8, 8, 3))
    assert "--image-key" in info.value.hint
    src = open_source(str(tmp_path / "*.tfrec"), input_shape=(8, 8, 3), image_key="img", label_key="cls")
    assert src.labelled and sorted(src.take(None).y.tolist()) == [0, 1, 2, 3]
    unlabelled = open_source(tmp_path / "c.tfrec", input_shape=(8, 8, 3), image_key="img")
    assert not unlabelled.labelled and unlabelled.take(2).y is None


def test_several_inputs_stream_as_tuples():
    from edgekit.data.stream import tf_dataset

    a, b = np.arange(24, dtype=np.float32).reshape(6, 4), np.ones((6, 3, 2), np.float32)
    src = open_source(([a, b], np.arange(6) % 2), input_shape=[(4,), (3, 2)])
    (x0, x1), y = next(tf_dataset(src, batch_size=6).as_numpy_iterator())
    np.testing.assert_array_equal(x0, a)
    assert x1.shape == (6, 3, 2) and y.tolist() == [0, 1, 0, 1, 0, 1]
    with pytest.raises(Exception, match="augment applies to image data"):
        tf_dataset(src, batch_size=2, augment=True)


_ENDLESS = """
import sys
from edgekit.data import open_source
from edgekit.data.stream import tf_dataset
src = open_source(sys.argv[1], input_shape=(8, 8, 3))
ds = tf_dataset(src, batch_size=2, shuffle=True, repeat=True)
print("batches", sum(1 for _ in ds.take(3).as_numpy_iterator()))
"""


def test_an_endless_stream_of_only_unreadable_images_ends_instead_of_spinning(tmp_path):
    """Issue 8: ``repeat()`` then ``filter`` busy-looped forever (100 % CPU, deaf to SIGTERM) when no image could be
    decoded; run in a subprocess that is killed after a deadline."""
    import subprocess
    import sys

    for c in "ab":
        (tmp_path / c).mkdir()
        for i in range(3):
            (tmp_path / c / f"{i}.png").write_bytes(b"\x89PNG junk " + bytes([i]) * 50)
    try:
        proc = subprocess.run([sys.executable, "-c", _ENDLESS, str(tmp_path)], capture_output=True, text=True,
                              timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("the endless stream over unreadable images never yielded nor ended")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "batches 0" in proc.stdout


def test_check_readable_names_the_folder(tmp_path):
    from edgekit.data.stream import check_readable

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.png").write_bytes(b"junk")
    good = tmp_path / "b" / "ok.png"
    good.parent.mkdir()
    good.write_bytes(_png_bytes(50))
    src = open_source(tmp_path, input_shape=(8, 8, 3))
    check_readable(src)  # one readable image is enough
    good.unlink()
    src = open_source(tmp_path, input_shape=(8, 8, 3))
    with pytest.raises(DataError, match="no readable image in") as info:
        check_readable(src)
    assert info.value.hint
    with pytest.raises(DataError, match="no samples to train on") as info:
        check_readable(src.subset([]))
    assert info.value.hint


# ------------------------------------------------------------------------------ issue 18: --limit, a bad CRC
def _train_args(data, out, *extra):
    return ["train", "mobilenet_v1", "--alpha", "0.25", "--resolution", "32", "--input-channels", "1", "--classes",
            "3", "--weights", "none", "--data", str(data), "--epochs", "1", "--batch-size", "8", "--out", str(out),
            *extra]


def test_limit_works_with_tfrecords(tmp_path):
    """Issue 18: `--limit` with TFRecord data always failed (a limited source refused its validation split)."""
    _write_tfrecords(tmp_path / "a.tfrecord", [(_png_bytes(i), i % 3) for i in range(30)])
    src = open_source(tmp_path / "a.tfrecord", input_shape=(8, 8, 1))
    rest, held = src.limited(20).split(0.25, seed=0)  # a split of the first 20 records
    names = [{r[0] for r in part.records().as_numpy_iterator()} for part in (rest, held)]
    assert not names[0] & names[1] and len(names[0] | names[1]) == 20 and len(held) > 0
    assert names[0] | names[1] == {f"a.tfrecord record {i}".encode() for i in range(20)}
    assert len(rest.limited(5)) == 5  # and the first 5 of a split


@pytest.mark.slow
def test_train_with_limit_on_tfrecords(tmp_path):
    from click.testing import CliRunner

    from edgekit.cli import main

    _write_tfrecords(tmp_path / "a.tfrecord", [(_png_bytes(i), i % 3) for i in range(30)])
    r = CliRunner().invoke(main, _train_args(tmp_path / "a.tfrecord", tmp_path / "m.keras", "--limit", "12",
                                             "--json"))
    assert r.exit_code == 0, r.output
    assert (tmp_path / "m.keras").is_file()


def test_a_tfrecord_with_a_bad_crc_is_a_data_error_mid_training(tmp_path):
    """Issue 18: a record whose checksum does not match (bit rot, a bad copy) was an internal error mid-training."""
    from click.testing import CliRunner

    from edgekit.cli import main

    f = tmp_path / "a.tfrecord"
    _write_tfrecords(f, [(_png_bytes(i), i % 3) for i in range(40)])
    data = bytearray(f.read_bytes())
    data[len(data) * 3 // 4] ^= 0xFF  # a payload byte of a late record: the first records read fine
    f.write_bytes(bytes(data))
    r = CliRunner().invoke(main, _train_args(f, tmp_path / "m.keras", "--val-fraction", "0"))
    assert r.exit_code == 2 and "a TFRecord file of" in r.stderr and "is damaged: corrupted record at" in r.stderr
    assert "hint:" in r.stderr and "{{" not in r.stderr, r.output
    assert not (tmp_path / "m.keras").exists()
