"""TFRecord files of ``tf.train.Example`` records holding encoded images (and integer labels), read with tf.data.

The keys default to the common ``image/encoded`` and ``image/class/label`` (TF models' and TFDS' image
converters); other names with ``image_key``/``label_key``. A path may be one file, a glob (``train-*``) or a folder;
``.gz`` files are read as GZIP. A held-out split is a seeded hash of (file, record number), so it needs no index.
"""
from __future__ import annotations

import glob
import re
from pathlib import Path

import numpy as np

from ..errors import DataError
from . import images as img
from .dataset import Dataset, split_indices
from .sources import Source
from .stream import data_errors, numpy_batches

TFRECORD_SUFFIXES = (".tfrecord", ".tfrecords", ".tfrec")
DEFAULT_IMAGE_KEY = "image/encoded"
DEFAULT_LABEL_KEY = "image/class/label"
_SHARD_NAME = re.compile(r"-\d{5}-of-\d{5}$")


def is_tfrecord_file(path: Path) -> bool:
    name = path.name.lower()
    name = name[:-3] if name.endswith(".gz") else name
    return name.endswith(TFRECORD_SUFFIXES) or bool(_SHARD_NAME.search(name))


def find_tfrecords(text: str) -> list[Path] | None:
    """The TFRecord files ``text`` names (a file, a folder holding them, or a glob), else None."""
    path = Path(text).expanduser()
    if any(ch in text for ch in "*?["):
        files = sorted(Path(p) for p in glob.glob(str(path)) if Path(p).is_file())
        return files or None
    if path.is_file() and is_tfrecord_file(path):
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and is_tfrecord_file(p))
        return files or None
    return None


class TFRecords(Source):
    """Encoded images (+ labels) in TFRecord files; ``part`` = (fraction, seed, held) selects a seeded split."""

    kind = "tfrecord"

    def __init__(self, files: list[Path], shape: tuple, preprocess: str, *, image_key: str = DEFAULT_IMAGE_KEY,
                 label_key: str = DEFAULT_LABEL_KEY, strict: bool = False, name: str | None = None):
        self.files = [str(f) for f in files]
        self.image_key, self.label_key = image_key, label_key
        self.part: tuple[float, int, bool] | None = None
        self.limit: int | None = None
        self._steps: tuple = ()  # ("limit", n) and ("part", part) in the order they were applied
        self._count: int | None = None
        self.source_shapes: set = set()  # (H, W, C) of the images as stored, for every record decoded
        super().__init__(name or (self.files[0] if len(files) == 1 else f"{Path(self.files[0]).parent}/"
                                  f"({len(files)} TFRecord files)"), [shape], preprocess, None,
                         skips=img.SkipLog(strict), meta={"image_key": image_key, "label_key": label_key})
        self._labelled = self._check_keys()

    # -- what is in the files ----------------------------------------------------------------------------------
    def _compression(self, path: str) -> str:
        return "GZIP" if path.lower().endswith(".gz") else ""

    def _check_keys(self) -> bool:
        from .._keras import tf

        first = None
        for f in self.files:
            try:
                for rec in tf.data.TFRecordDataset(f, compression_type=self._compression(f)).take(1):
                    first = rec.numpy()
            except tf.errors.OpError as exc:
                raise DataError(f"cannot read TFRecord file {f!r}: {str(exc.message).splitlines()[0]}",
                                hint="check that it is a (complete) TFRecord file; .gz files must be GZIP") from None
            if first is not None:
                break
        if first is None:
            raise DataError(f"the TFRecord files of {self.name!r} hold no records", hint="point at non-empty files")
        try:
            feats = tf.train.Example.FromString(first).features.feature
        except Exception as exc:  # noqa: BLE001 - protobuf DecodeError
            raise DataError(f"the records of {self.name!r} are not tf.train.Example protos ({exc})",
                            hint="write images as tf.train.Example with a bytes feature (image/encoded)") from None
        keys = sorted(feats.keys())
        if self.image_key not in feats or not feats[self.image_key].bytes_list.value:
            raise DataError(f"TFRecord {self.files[0]!r} has no image bytes under {self.image_key!r} (features: "
                            f"{', '.join(keys)})", hint="name the encoded-image feature with --image-key "
                                                        "(image_key=)")
        if self.label_key in feats and not feats[self.label_key].int64_list.value:
            raise DataError(f"TFRecord feature {self.label_key!r} is not an integer label",
                            hint="name the int64 class feature with --label-key (label_key=)")
        return self.label_key in feats

    @property
    def labelled(self) -> bool:
        return self._labelled

    def __len__(self) -> int:
        if self._count is None:
            from .._keras import tf

            self._count = int(self.records(shuffle=False).reduce(np.int64(0), lambda c, _: c + 1).numpy())
        return self._count

    def split(self, fraction: float, seed: int = 0):
        split_indices(2, fraction, seed)  # validates the fraction
        rest, held = (self._with_part((float(fraction), int(seed), h)) for h in (False, True))
        return rest, held

    def _with_part(self, part) -> "TFRecords":
        if self.part is not None:
            raise DataError(f"{self.name} is already a part of its TFRecord files", hint="split the full source")
        new = object.__new__(TFRecords)
        new.__dict__.update(self.__dict__)
        new.part, new._count = part, None
        new._steps = self._steps + (("part", part),)  # of a limited source: a split of its first records
        new.name = f"{self.name} ({'held-out' if part[2] else 'rest'} {part[0]:g} split, seed {part[1]})"
        return new

    def limited(self, n: int) -> "TFRecords":
        """The first ``n`` records of this split (a fixed subset: the same records every epoch)."""
        new = object.__new__(TFRecords)
        new.__dict__.update(self.__dict__)
        new.limit, new._count = int(n), None
        new._steps = self._steps + (("limit", int(n)),)
        new.name = f"{self.name} (first {int(n)} records)"
        return new

    # -- tf.data --------------------------------------------------------------------------------------------------
    def records(self, *, shuffle: bool = False, seed: int = 0, shard=None, repeat: bool = False,
                shuffle_buffer: int = 2048):
        """(name, serialized record) pairs of this split; files are sharded between workers when there are enough
        of them (records otherwise)."""
        from .._keras import tf

        files = tf.data.Dataset.from_tensor_slices((self.files, np.arange(len(self.files), dtype=np.int64)))
        by_file = shard is not None and shard[0] > 1 and len(self.files) >= shard[0] and self.limit is None
        if by_file:
            files = files.shard(shard[0], shard[1])
        if shuffle and self.limit is None:  # a limited subset reads its records in file order, then shuffles
            files = files.shuffle(len(self.files), seed=seed, reshuffle_each_iteration=True)
        gz = [self._compression(f) for f in self.files]

        def read(path, fid):
            kind = tf.gather(tf.constant(gz), fid)
            recs = tf.data.TFRecordDataset(path, compression_type=kind).enumerate()
            base = tf.strings.regex_replace(path, r"^.*/", "")
            return recs.map(lambda i, r: (fid, i, tf.strings.join([base, " record ", tf.strings.as_string(i)]), r))

        ds = files.interleave(read, cycle_length=max(1, min(4, len(self.files))), num_parallel_calls=tf.data.AUTOTUNE,
                              deterministic=not shuffle or self.limit is not None)
        for step, value in self._steps:  # in order: a split of the first n records, or the first n of a split
            if step == "limit":
                ds = ds.take(value)
                continue
            fraction, pseed, held = value

            def keep(fid, i, name, rec, fraction=fraction, pseed=pseed, held=held):
                u = tf.random.stateless_uniform([], seed=tf.stack([fid + pseed * 1_000_003, i]))
                return (u < fraction) if held else (u >= fraction)

            ds = ds.filter(keep)
        if shard is not None and shard[0] > 1 and not by_file:
            ds = ds.shard(shard[0], shard[1])
        ds = ds.map(lambda fid, i, name, rec: (name, rec))
        if shuffle:
            ds = ds.shuffle(max(1, int(shuffle_buffer)), seed=seed, reshuffle_each_iteration=True)
        return ds.repeat() if repeat else ds

    def decode_fn(self, augment: bool):
        """Map (name, record), random -> (x, y, ok): parse the Example in TF, decode the image with Pillow."""
        from .._keras import tf

        shape = tuple(self.shapes[0])
        h, w, c = shape
        spec = {self.image_key: tf.io.FixedLenFeature([], tf.string)}
        if self._labelled:
            spec[self.label_key] = tf.io.FixedLenFeature([], tf.int64, default_value=-1)
        skips, mode, shapes = self.skips, self.preprocess, self.source_shapes

        def decode(data, name, rnd):
            label = name.decode("utf-8", "replace")
            try:
                px = img.decode(data, (h, w), c, name=label, augment_seed=int(rnd) if augment else None,
                                shapes=shapes)
            except img.ImageError as err:
                skips.record(err)
                return np.zeros(shape, np.float32), False
            return img.preprocess(px[None], mode)[0], True

        def fn(pair, rnd):
            name, rec = pair
            ex = tf.io.parse_single_example(rec, spec)
            x, ok = tf.numpy_function(decode, [ex[self.image_key], name, rnd], [tf.float32, tf.bool], stateful=False)
            x.set_shape(shape)
            ok.set_shape(())
            y = ex[self.label_key] if self._labelled else tf.constant(-1, tf.int64)
            return x, y, ok

        return fn

    # -- in memory -------------------------------------------------------------------------------------------------
    def take(self, n: int | None, seed: int = 0) -> Dataset:
        from .._keras import tf

        ds = self.records(shuffle=n is not None, seed=seed)
        ds = tf.data.Dataset.zip((ds, tf.data.Dataset.random(seed=seed)))
        ds = ds.map(self.decode_fn(False), num_parallel_calls=tf.data.AUTOTUNE).filter(lambda x, y, ok: ok)
        if n is not None:
            ds = ds.take(int(n))
        xs, ys = [], []
        with data_errors(self):
            for x, y, _ in ds.batch(256).as_numpy_iterator():
                xs.append(x)
                ys.append(y)
        if not xs:
            raise DataError(f"no readable image in {self.name!r}"
                            + (f": {self.skips.summary(None, advice=False)}" if self.skips.count else ""),
                            hint="every record tried failed to decode: check the records' image bytes")
        y = np.concatenate(ys).astype(np.int64) if self._labelled else None
        return Dataset(np.concatenate(xs), y, self.name, None, self.preprocess,
                       {"kind": self.kind, **self.meta, "source_shapes": sorted(self.source_shapes),
                        **({"skipped": self.skips.count} if self.skips.count else {})})

    def batches(self, batch_size: int):
        yield from numpy_batches(self, batch_size)
