"""tf.data pipelines over any :class:`~edgekit.data.sources.Source`: parallel decode, resize and the model's
preprocessing (the same :func:`edgekit.data.images.decode` the in-memory loader uses, inside ``tf.numpy_function``),
shuffling, optional augmentation, per-worker sharding, batching and prefetch.

Memory is bounded by the pipeline's buffers, not by the dataset: image folders and built-ins shuffle positions
(8 bytes a sample) and decode on the fly; TFRecords shuffle the file order and a bounded buffer of serialized
records; ``prefetch`` keeps two batches ready. Unreadable images are dropped and counted in ``source.skips``.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np

from ..errors import DataError, InvalidArgument
from .sources import Arrays, IndexedSource, Source

#: serialized TFRecord records held for shuffling (a few hundred MB at most for ImageNet-size JPEGs)
DEFAULT_SHUFFLE_BUFFER = 2048
#: batches prepared ahead of the training step
PREFETCH = 2


def tf_dataset(source: Source, *, batch_size: int, shuffle: bool = False, seed: int = 0, augment: bool = False,
               repeat: bool = False, shard: tuple[int, int] | None = None, drop_remainder: bool = False,
               shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER, labels: bool = True):
    """Batched ``(x, y)`` (``x`` a tuple for several inputs; only ``x`` with ``labels=False``) as a tf.data.Dataset.

    ``shard=(num_workers, worker_index)`` gives this worker its disjoint part (before decoding); ``repeat`` makes
    the stream endless (training with ``steps_per_epoch``); ``augment`` applies random-resized crops and horizontal
    flips to image sources.
    """
    from .._keras import tf

    if batch_size <= 0:
        raise InvalidArgument(f"batch_size must be positive; received {batch_size}")
    if labels and not source.labelled:
        raise DataError(f"{source.name} has no labels; training needs labelled data",
                        hint="use a folder with one sub-folder per class, an .npz with 'x' and 'y', or TFRecords "
                             "with a label feature (--label-key)")
    if augment and source.kind == "arrays":
        raise InvalidArgument("augment applies to image data (folders, built-in datasets, TFRecords), not to arrays",
                              hint="drop augment (--augment) for array data")
    if isinstance(source, Arrays):
        ds = _positions(tf, source, shard, shuffle, seed, repeat).batch(batch_size, drop_remainder=drop_remainder)
        ds = ds.map(_gather_fn(tf, source, labels), num_parallel_calls=tf.data.AUTOTUNE)
        return ds.prefetch(PREFETCH)
    # one epoch is decoded and filtered, then repeated: a filter after an endless repeat never yields when every
    # item is unreadable (a busy loop TensorFlow does not interrupt); tf.data's repeat ends on an empty epoch
    rnd = tf.data.Dataset.random(seed=seed + 7919, rerandomize_each_iteration=True)
    if isinstance(source, IndexedSource):
        ds = tf.data.Dataset.zip((_positions(tf, source, shard, shuffle, seed, False), rnd))
        ds = ds.map(_item_fn(tf, source, augment), num_parallel_calls=tf.data.AUTOTUNE)
    else:  # TFRecords
        ds = source.records(shuffle=shuffle, seed=seed, shard=shard, repeat=False, shuffle_buffer=shuffle_buffer)
        ds = tf.data.Dataset.zip((ds, rnd)).map(source.decode_fn(augment), num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.filter(lambda x, y, ok: ok)
    ds = ds.map(lambda x, y, ok: (x, y) if labels else x)
    if repeat:
        ds = ds.repeat()
    return ds.batch(batch_size, drop_remainder=drop_remainder).prefetch(PREFETCH)


def check_readable(source: Source) -> None:
    """Raise the source's DataError ("no readable image in ...", with a hint) unless at least one sample can be
    read; decodes in order and stops at the first readable one (training checks this before ``fit``)."""
    if isinstance(source, IndexedSource):
        if not len(source):
            raise DataError(f"no samples to train on in {source.name!r} (after holding out the validation split)",
                            hint="give more data, a smaller --val-fraction or separate --val-data")
        source.read(np.arange(len(source)), 1, keep_order=True)
    else:
        source.take(1)


def _positions(tf, source: IndexedSource, shard, shuffle: bool, seed: int, repeat: bool):
    """The underlying item numbers of ``source`` (this worker's shard), reshuffled every epoch when asked."""
    ds = tf.data.Dataset.from_tensor_slices(source.index.astype(np.int64))
    if shard is not None and shard[0] > 1:
        ds = ds.shard(shard[0], shard[1])
    if shuffle:
        n = len(source) if shard is None else -(-len(source) // shard[0])
        ds = ds.shuffle(max(1, n), seed=seed, reshuffle_each_iteration=True)
    return ds.repeat() if repeat else ds


def _item_fn(tf, source: IndexedSource, augment: bool):
    shape = tuple(source.shapes[0])
    labels = source.labels if source.labels is not None else np.zeros(0, np.int64)

    def decode(i, rnd):
        sample = source.item(int(i), int(rnd) if augment else None)
        if sample is None:
            return np.zeros(shape, np.float32), np.int64(-1), False
        return sample[0], np.int64(labels[i] if len(labels) else -1), True

    def fn(i, rnd):
        x, y, ok = tf.numpy_function(decode, [i, rnd], [tf.float32, tf.int64, tf.bool], stateful=False)
        x.set_shape(shape)
        y.set_shape(())
        ok.set_shape(())
        return x, y, ok

    return fn


def _gather_fn(tf, source: Arrays, labels: bool):
    shapes = [tuple(s) for s in source.shapes]
    ys = source.labels

    def gather(items):
        xs = source.gather(items)
        return (*xs, (ys[items] if ys is not None else np.zeros(len(items), np.int64)).astype(np.int64))

    def fn(items):
        out = tf.numpy_function(gather, [items], [tf.float32] * len(shapes) + [tf.int64], stateful=False)
        for t, s in zip(out, shapes):
            t.set_shape((None, *s))
        out[-1].set_shape((None,))
        x = out[0] if len(shapes) == 1 else tuple(out[:-1])
        return (x, out[-1]) if labels else x

    return fn


@contextlib.contextmanager
def data_errors(*sources: Source) -> Iterator[None]:
    """Translate tf.data failures inside the block: a strict source's unreadable image -> its DataError; a label
    outside the model's classes -> DataError; anything else propagates."""
    from .._keras import tf

    try:
        yield
    except tf.errors.OpError as exc:
        for src in sources:
            if src is not None and src.skips.error is not None:
                raise src.skips.error from None
        text = str(exc.message if hasattr(exc, "message") else exc)
        if isinstance(exc, tf.errors.DataLossError):  # a TFRecord with a bad CRC or a truncated record
            import re

            what = re.sub(r"\{\{.*?\}\}|\[Op:.*?\].*", "", text.strip().splitlines()[0] if text.strip() else "")
            names = ", ".join(str(s.name) for s in sources if s is not None and getattr(s, "kind", None) == "tfrecord")
            raise DataError(f"a TFRecord file{f' of {names}' if names else ''} is damaged: "
                            f"{what.strip() or 'corrupted record'}",
                            hint="copy or write the file again (a record's checksum does not match its bytes, or "
                                 "the file is cut short); nothing was kept from this run") from None
        if "outside the valid range" in text or "Received a label value" in text:
            first = text.strip().splitlines()[0]
            raise DataError(f"a label is not one of the model's classes: {first}",
                            hint="build the model with as many --classes as the data has, or fix the labels") from None
        raise


def numpy_batches(source: Source, batch_size: int) -> Iterator[tuple]:
    """(x, y) numpy batches of every readable sample in order (TFRecords through tf.data, others directly)."""
    if isinstance(source, IndexedSource):
        yield from source.batches(batch_size)
        return
    ds = tf_dataset(source, batch_size=batch_size, labels=True)
    with data_errors(source):
        for x, y in ds.as_numpy_iterator():
            yield x, y
