"""Models that are not single-output image classifiers, with real training targets, for export tests and
``benchmarks/bench_export_multi.py``:

- ``onet``: MTCNN's ONet (48x48x3 -> bbox regression [4], landmarks [10], face probability [2] softmax, in that
  Keras order, with MTCNN's layer names conv6-2/conv6-3/conv6-1: the TFLite converter sorts them to prob, bbox,
  landmarks). Trained on Fashion-MNIST: probability = footwear or not, bbox = the object's tight bounding box,
  landmarks = its intensity centroid and top/bottom/left/right-most points (normalised coordinates).
- ``two_input``: an image (32x32x1, named ``zimage``) and a metadata vector (5, named ``ameta``) -> a 10-class
  softmax ``zcls`` and a 2-value regression ``abox``: inputs and outputs both come out reordered by the converter.
- ``audio``: a raw waveform (43844, 1) -> 5-way tone classifier (Conv1D), trained on synthetic tones in five
  frequency bands with noise.
- ``keras3_heads``: a Keras 3 model (saved by Keras 3 as .keras) with three outputs in Keras order ``zbox`` [4]
  (quadrant brightness), ``mland`` [6] (channel means and spreads), ``acls`` [3] softmax (pattern kind): the
  converter emits them sorted (acls, mland, zbox). Trained with Keras 3 on synthetic patterns (``keras3_heads_data``).
"""
from __future__ import annotations

import numpy as np


def onet(name: str = "onet"):
    from edgekit._keras import keras, layers

    inp = keras.Input((48, 48, 3), name="input_1")
    x = inp
    for i, (f, k, pool) in enumerate([(32, 3, (3, 2, "same")), (64, 3, (3, 2, "valid")), (64, 3, (2, 2, "same"))]):
        x = layers.Conv2D(f, k, name=f"conv{i + 1}")(x)
        x = layers.PReLU(shared_axes=[1, 2], name=f"prelu{i + 1}")(x)
        x = layers.MaxPooling2D(pool[0], pool[1], padding=pool[2], name=f"pool{i + 1}")(x)
    x = layers.Conv2D(128, 2, name="conv4")(x)
    x = layers.PReLU(shared_axes=[1, 2], name="prelu4")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(256, name="conv5")(x)
    x = layers.PReLU(name="prelu5")(x)
    bbox = layers.Dense(4, name="conv6-2")(x)
    landmarks = layers.Dense(10, name="conv6-3")(x)
    prob = layers.Dense(2, activation="softmax", name="conv6-1")(x)
    return keras.Model(inp, [bbox, landmarks, prob], name=name)


def onet_data(n: int, split: str = "train", seed: int = 0):
    """(x [n,48,48,3] in [0,1], {"conv6-1": footwear 0/1, "conv6-2": bbox [n,4], "conv6-3": landmarks [n,10]})."""
    from edgekit.data import load

    ds = load("fashion-mnist", input_shape=(48, 48, 1), split=split, limit=n, seed=seed)
    x = np.repeat(ds.x, 3, axis=-1)
    mask = ds.x[..., 0] > 0.1
    h, w = mask.shape[1:]
    bbox = np.zeros((len(x), 4), np.float32)
    lmk = np.zeros((len(x), 10), np.float32)
    yy, xx = np.mgrid[0:h, 0:w]
    for i, m in enumerate(mask):
        if not m.any():
            continue
        rows, cols = np.where(m)
        bbox[i] = [cols.min() / w, rows.min() / h, (cols.max() + 1) / w, (rows.max() + 1) / h]
        wgt = ds.x[i, ..., 0] / ds.x[i, ..., 0].sum()
        pts = [((xx * wgt).sum(), (yy * wgt).sum()),
               (cols[rows == rows.min()].mean(), rows.min()), (cols[rows == rows.max()].mean(), rows.max()),
               (cols.min(), rows[cols == cols.min()].mean()), (cols.max(), rows[cols == cols.max()].mean())]
        lmk[i] = np.array([(px / w, py / h) for px, py in pts], np.float32).reshape(-1)
    foot = np.isin(ds.y, (5, 7, 9)).astype(np.int64)
    return x.astype(np.float32), {"conv6-1": foot, "conv6-2": bbox, "conv6-3": lmk}


def two_input(name: str = "twoin"):
    from edgekit._keras import keras, layers

    img = keras.Input((32, 32, 1), name="zimage")
    meta = keras.Input((5,), name="ameta")
    x = layers.Conv2D(16, 3, padding="same", activation="relu", name="c1")(img)
    x = layers.MaxPooling2D(2, name="p1")(x)
    x = layers.Conv2D(32, 3, padding="same", activation="relu", name="c2")(x)
    x = layers.MaxPooling2D(2, name="p2")(x)
    x = layers.Conv2D(64, 3, padding="same", activation="relu", name="c3")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    m = layers.Dense(16, activation="relu", name="meta_fc")(meta)
    h = layers.Concatenate(name="join")([x, m])
    cls = layers.Dense(10, activation="softmax", name="zcls")(h)
    box = layers.Dense(2, name="abox")(h)
    return keras.Model([img, meta], [cls, box], name=name)


def two_input_data(n: int, split: str = "train", seed: int = 0):
    """({"zimage", "ameta"}, {"zcls": labels, "abox": [n,2]}): the regression mixes metadata and mean intensity."""
    from edgekit.data import load

    ds = load("fashion-mnist", input_shape=(32, 32, 1), split=split, limit=n, seed=seed)
    meta = np.random.default_rng(seed).normal(0, 1, (len(ds), 5)).astype(np.float32)
    mean = ds.x.mean(axis=(1, 2, 3))
    box = np.stack([meta[:, 0] - meta[:, 1] + 2 * mean, 0.5 * meta[:, 2] + meta[:, 3] * mean], axis=1)
    return {"zimage": ds.x, "ameta": meta}, {"zcls": ds.y, "abox": box.astype(np.float32)}


AUDIO_LEN = 43844


def audio(name: str = "tones"):
    from edgekit._keras import keras, layers

    inp = keras.Input((AUDIO_LEN, 1), name="wave")
    x = layers.Conv1D(8, 64, strides=16, activation="relu", name="c1")(inp)
    x = layers.Conv1D(16, 16, strides=4, activation="relu", name="c2")(x)
    x = layers.GlobalAveragePooling1D(name="gap")(x)
    return keras.Model(inp, layers.Dense(5, activation="softmax", name="tone")(x), name=name)


def audio_data(n: int, seed: int = 0):
    """Waveforms in [-1, 1] at 16 kHz: a tone in one of five bands (200-3400 Hz) with random phase, level and noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 5, n)
    edges = np.geomspace(200, 3400, 6)
    f = rng.uniform(edges[y], edges[y + 1])
    t = np.arange(AUDIO_LEN, dtype=np.float32) / 16000.0
    x = np.empty((n, AUDIO_LEN, 1), np.float32)
    for i in range(n):
        x[i, :, 0] = rng.uniform(0.2, 0.8) * np.sin(2 * np.pi * f[i] * t + rng.uniform(0, 2 * np.pi))
    x += rng.normal(0, 0.05, x.shape).astype(np.float32)
    return np.clip(x, -1, 1), y.astype(np.int64)


def keras3_heads_data(n: int, seed: int = 0):
    """16x16x3 images of 3 kinds of coarse pattern (varied, with pixel noise) and the three heads' targets."""
    protos = np.random.default_rng(7).random((3, 4, 4, 3), dtype=np.float32)
    rng = np.random.default_rng(seed)
    kind = rng.integers(0, 3, n)
    coarse = protos[kind] + 0.15 * rng.standard_normal((n, 4, 4, 3)).astype(np.float32)
    x = np.clip(np.kron(coarse, np.ones((1, 4, 4, 1), np.float32)) + 0.05 * rng.random((n, 16, 16, 3)), 0, 1)
    x = x.astype(np.float32)
    quads = x.reshape(n, 2, 8, 2, 8, 3).mean(axis=(2, 4, 5)).reshape(n, 4)
    land = np.concatenate([x.mean(axis=(1, 2)), x.std(axis=(1, 2))], axis=1)
    return x, {"zbox": quads.astype(np.float32), "mland": land.astype(np.float32), "acls": kind.astype(np.int64)}


def keras3_heads(path, name: str = "k3heads", epochs: int = 8, seed: int = 0):
    """Build, train (Keras 3) and save ``keras3_heads`` to ``path`` (.keras); returns the path."""
    import keras

    keras.utils.set_random_seed(seed)
    L = keras.layers
    inp = keras.Input((16, 16, 3), name="img")
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="c1")(inp)
    x = L.MaxPooling2D(2, name="p1")(x)
    x = L.Conv2D(16, 3, padding="same", activation="relu", name="c2")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    x = L.Dense(32, activation="relu", name="fc")(x)
    outs = [L.Dense(4, name="zbox")(x), L.Dense(6, name="mland")(x), L.Dense(3, activation="softmax", name="acls")(x)]
    model = keras.Model(inp, outs, name=name)
    model.compile(keras.optimizers.Adam(3e-3), loss={"zbox": "mse", "mland": "mse",
                                                      "acls": "sparse_categorical_crossentropy"})
    x, y = keras3_heads_data(1200, seed)
    model.fit(x, y, epochs=epochs, batch_size=64, verbose=0)
    model.save(str(path))
    return path


def train(model, x, y, epochs: int, seed: int = 0):
    """Adam; softmax outputs with sparse cross-entropy, the others with MSE (targets keyed by output name)."""
    from edgekit._keras import keras

    keras.utils.set_random_seed(seed)
    names = list(model.output_names)
    losses = {n: ("sparse_categorical_crossentropy" if model.get_layer(n).activation.__name__ == "softmax" else "mse")
              for n in names}
    model.compile(keras.optimizers.Adam(2e-3), loss=losses if len(names) > 1 else losses[names[0]])
    model.fit(x, y if len(names) > 1 or not isinstance(y, dict) else y[names[0]], epochs=epochs, batch_size=64,
              verbose=0)
    return model
