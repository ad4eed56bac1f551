"""edgekit.compression.train and the ``edgekit train`` / ``edgekit compress`` commands."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from edgekit.cli import main
from edgekit.errors import DataError, InvalidArgument

OPTS = dict(alpha=0.25, resolution=32, input_channels=1, classes=10, weights="none")
CLI_OPTS = ["--alpha", "0.25", "--resolution", "32", "--input-channels", "1", "--classes", "10", "--weights", "none"]


@pytest.mark.slow
def test_train_saves_best_checkpoint_and_reports_epochs(tmp_path, fashion_mnist_available):
    from edgekit._keras import layers
    from edgekit.compression import train

    seen = []
    res = train("mobilenet_v1", "fashion-mnist", epochs=2, limit=256, test_limit=128, seed=0,
                checkpoint_dir=tmp_path / "ck", out=tmp_path / "m.keras",
                progress=lambda task, done, total: seen.append((done, total)), **OPTS)
    model, rep = res.model, res.report
    doc = json.loads(res.to_json())  # a result object like the others: the model is its name in JSON
    assert doc["model"] == model.name and doc["report"]["best_epoch"] == rep.best_epoch
    assert [e.epoch for e in rep.history] == [1, 2] and rep.best_epoch in (1, 2)
    assert rep.train_samples + rep.val_samples == 256 and rep.val_samples == 26
    assert rep.test_samples == 128
    # the reported test accuracy is the returned model's on the seeded 128-image test subset, recomputed here
    import numpy as np

    from edgekit.data import load

    test = load("fashion-mnist", input_shape=(32, 32, 1), preprocess_mode="tf", split="test", limit=128, seed=0)
    preds = np.argmax(model.predict(test.x, verbose=0), axis=-1)
    assert rep.test_accuracy == pytest.approx(float(np.mean(preds == test.y)), abs=1e-9)
    assert (tmp_path / "ck" / "best.keras").is_file() and (tmp_path / "m.keras").is_file()
    assert seen[-1] == (2, 2)
    assert all(l.momentum == 0.9 for l in model.layers if isinstance(l, layers.BatchNormalization))
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".")]  # no temp files left


def test_train_rejects_bad_out_before_training():
    from edgekit.compression import train

    with pytest.raises(InvalidArgument, match=r"\.keras or \.h5"):
        train("mobilenet_v1", "fashion-mnist", epochs=1, limit=32, out="/tmp/model.bin", **OPTS)


def test_unwritable_model_outputs_fail_before_training(tmp_path, monkeypatch, fashion_mnist_available):
    from edgekit._keras import keras
    from edgekit.compression import compress, train

    def boom(*a, **k):
        raise AssertionError("training started although the model could not be saved")

    monkeypatch.setattr(keras.Model, "fit", boom)
    blocker = tmp_path / "file"
    blocker.write_text("")  # a regular file where a folder is needed (unwritable even for root)
    with pytest.raises(InvalidArgument, match="cannot write --out"):
        train("mobilenet_v1", "fashion-mnist", epochs=1, limit=32, out=blocker / "m.keras", **OPTS)
    with pytest.raises(InvalidArgument, match="cannot write save_model"):
        compress("mobilenet_v1", data="fashion-mnist", train_epochs=1, limit=32, save_model=str(blocker / "m.keras"),
                 **OPTS)


def test_train_needs_labels(tmp_path):
    import numpy as np

    from edgekit.compression import train

    np.save(tmp_path / "x.npy", np.zeros((8, 32, 32, 1), np.float32))
    with pytest.raises(DataError, match="no labels"):
        train("mobilenet_v1", str(tmp_path / "x.npy"), epochs=1, **OPTS)


def test_cli_compress_bad_chain_exits_2():
    r = CliRunner().invoke(main, ["compress", "mobilenet_v1", "--data", "fashion-mnist", "--qat", *CLI_OPTS])
    assert r.exit_code == 2
    assert "qat needs an int8 export" in r.output


def test_cli_compress_nothing_to_do_exits_2():
    r = CliRunner().invoke(main, ["compress", "mobilenet_v1", "--data", "fashion-mnist", *CLI_OPTS])
    assert r.exit_code == 2 and "nothing to do" in r.output


def test_cli_train_unknown_data_exits_2():
    r = CliRunner().invoke(main, ["train", "mobilenet_v1", "--data", "fashon-mnist", "--epochs", "1", *CLI_OPTS])
    assert r.exit_code == 2 and "fashion-mnist" in r.output  # did-you-mean


@pytest.mark.slow
def test_cli_train_json(tmp_path, fashion_mnist_available):
    r = CliRunner().invoke(main, ["train", "mobilenet_v1", "--data", "fashion-mnist", "--epochs", "1", "--limit",
                                  "128", "--test-limit", "64", "--out", str(tmp_path / "m.keras"), *CLI_OPTS, "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["epochs"] == 1 and data["saved"].endswith("m.keras") and len(data["history"]) == 1


@pytest.mark.slow
def test_cli_compress_json_and_table(tmp_path, fashion_mnist_available):
    args = ["compress", "mobilenet_v1", "--data", "fashion-mnist", "--limit", "128", "--test-limit", "64",
            "--quantize", "int8", "--calib-samples", "64", "--no-verify", "--out", str(tmp_path), *CLI_OPTS]
    r = CliRunner().invoke(main, [*args, "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["stages"] == ["export"]
    art = data["report"]["artifacts"][0]
    assert art["path"].endswith("_int8.tflite") and art["weights"]["tensors"] == 28  # 15 conv + 13 depthwise
    assert 0 < art["package_bytes"] < art["gzip_bytes"]  # the update package's bytes beside gzip and Huffman
    assert (tmp_path / (tmp_path.joinpath(art["path"]).stem + ".compression.json")).is_file()
    r = CliRunner().invoke(main, args)  # the rich table
    assert r.exit_code == 0 and "artifact: " in r.stdout and "report: " in r.stdout


def test_every_compress_argument_is_a_cli_option():
    import inspect

    from edgekit.cli.compress import compress_cmd
    from edgekit.compression import compress

    structured = {"model", "progress", "callbacks", "spec", "provenance", "stages", "teacher_options"}  # recipes/Python
    options = {p.name for p in compress_cmd.params}
    missing = [a for a in inspect.signature(compress).parameters if a not in structured and a not in options]
    assert missing == []


def test_saved_models_respect_the_umask(tmp_path):
    """A trained model (and a checkpoint) is a normal file: 0644 under umask 022, not mkstemp's 0600."""
    import os
    import stat

    from edgekit._keras import keras, layers
    from edgekit.compression.train import save_model_atomic

    inp = keras.Input((4,))
    model = keras.Model(inp, layers.Dense(2)(inp))
    old = os.umask(0o022)
    try:
        for name in ("m.keras", "m.h5"):
            path = save_model_atomic(model, tmp_path / name)
            assert stat.S_IMODE(path.stat().st_mode) == 0o644, name
    finally:
        os.umask(old)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.h5", "m.keras"]  # no temp file left


# -- streamed data, several inputs, strategies, resume (issue 14) ------------------------------------------------
def _tiny(shape=(8, 8, 3), classes=3, name="tiny"):
    from edgekit._keras import keras

    return keras.Sequential([keras.layers.Input(shape), keras.layers.Conv2D(4, 3, activation="relu"),
                             keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(classes, activation="softmax")],
                            name=name)


@pytest.fixture()
def image_folder(tmp_path):
    import io

    import numpy as np
    from PIL import Image

    root = tmp_path / "imgs"
    rng = np.random.default_rng(0)
    for c, name in enumerate("abc"):
        (root / name).mkdir(parents=True)
        for i in range(12):
            buf = io.BytesIO()
            Image.fromarray((rng.integers(0, 60, (10, 10, 3)) + 80 * c).astype(np.uint8)).save(buf, format="PNG")
            (root / name / f"{i}.png").write_bytes(buf.getvalue())
    (root / "a" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    return root


@pytest.mark.slow
def test_train_streams_a_folder_and_reports_skipped_images(image_folder, tmp_path):
    from edgekit.compression import train
    from edgekit.errors import EdgekitWarning

    with pytest.warns(EdgekitWarning, match="skipped 1 unreadable image.*broken.jpg"):
        rep = train(_tiny(), str(image_folder), epochs=2, batch_size=8, eval_data=str(image_folder),
                    augment=True, seed=0).report
    assert rep.skipped_images == 1 and rep.augment is True
    assert rep.sources["unreadable"]["skipped"] == 1 and "broken.jpg" in rep.sources["unreadable"]["examples"][0]
    assert rep.train_samples + rep.val_samples == 37 and rep.strategy["strategy"] == "one-device"
    assert rep.test_samples == 37 and 0.0 <= rep.test_accuracy <= 1.0  # --eval-data
    assert all(e.val_accuracy is not None and e.val_loss is not None for e in rep.history)
    with pytest.raises(DataError, match="unreadable image .*broken.jpg"):
        train(_tiny(), str(image_folder), epochs=1, batch_size=8, strict_data=True)


@pytest.mark.slow
def test_train_a_model_with_several_non_image_inputs(tmp_path):
    import numpy as np

    from edgekit._keras import keras
    from edgekit.compression import train

    a, b = keras.layers.Input((20, 1), name="audio"), keras.layers.Input((5,), name="meta")
    h = keras.layers.Concatenate()([keras.layers.Flatten()(keras.layers.Conv1D(3, 5)(a)), b])
    model = keras.Model([a, b], keras.layers.Dense(2, activation="softmax")(h), name="twoin")
    rng = np.random.default_rng(0)
    xa, xb = rng.standard_normal((64, 20, 1)).astype(np.float32), rng.standard_normal((64, 5)).astype(np.float32)
    np.savez(tmp_path / "d.npz", audio=xa, meta=xb, y=(xb[:, 0] > 0).astype(np.int64))
    rep = train(model, str(tmp_path / "d.npz"), epochs=2, batch_size=16, lr=1e-2).report
    assert rep.train_samples == 58 and rep.history[-1].val_accuracy is not None
    with pytest.raises(InvalidArgument, match="augment applies to image data"):
        train(model, str(tmp_path / "d.npz"), epochs=1, augment=True)


@pytest.mark.slow
def test_a_killed_run_resumes_from_its_last_epoch(image_folder, tmp_path):
    from edgekit._keras import keras
    from edgekit.compression import train

    class Kill(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                raise KeyboardInterrupt("killed")

    backup = tmp_path / "backup"
    with pytest.raises(KeyboardInterrupt):
        train(_tiny(), str(image_folder), epochs=4, batch_size=8, backup_dir=backup, callbacks=[Kill()])
    assert (backup / "train" / "edgekit-state.json").is_file()
    begun = []

    class Watch(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            begun.append(epoch)

    rep = train(_tiny(), str(image_folder), epochs=4, batch_size=8, backup_dir=backup, callbacks=[Watch()],
                out=tmp_path / "m.keras").report
    assert begun == [2, 3] and rep.resumed_from_epoch == 2
    assert [e.epoch for e in rep.history] == [1, 2, 3, 4] and rep.best_epoch in (1, 2, 3, 4)
    assert not (backup / "train").exists()  # a finished run removes its backup: a rerun starts afresh


def test_strategy_errors_are_invalid_arguments(monkeypatch):
    from edgekit.compression.distribute import setup

    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(InvalidArgument, match="did you mean 'multi-worker'"):
        setup("multiworker")
    with pytest.raises(InvalidArgument, match="needs the cluster in TF_CONFIG") as info:
        setup("multi-worker")
    assert "TF_CONFIG=" in info.value.hint
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(InvalidArgument, match="TF_CONFIG is not a valid cluster"):
        setup("auto")
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 3}}')
    with pytest.raises(InvalidArgument, match="not in its cluster"):
        setup("auto")
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 0}}')
    assert setup("auto").info.strategy == "one-device"  # one task is not a cluster


def test_cli_train_strategy_and_data_options(image_folder, tmp_path):
    r = CliRunner().invoke(main, ["train", "mobilenet_v1", "--data", str(image_folder), *CLI_OPTS,
                                  "--strategy", "multiworker"])
    assert r.exit_code == 2 and "multi-worker" in r.output


@pytest.mark.slow
def test_a_killed_pipeline_resumes_in_the_stage_it_was_in(image_folder, tmp_path):
    """compress with --backup-dir: the finished train stage is restored (not retrained), prune resumes mid-way."""
    from edgekit._keras import keras
    from edgekit.compression import compress

    def model():
        return keras.Sequential([keras.layers.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, activation="relu"),
                                 keras.layers.Conv2D(8, 3, activation="relu"), keras.layers.Conv2D(8, 1),
                                 keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3, activation="softmax")],
                                name="tinyp")

    class KillPrune(keras.callbacks.Callback):  # the prune stage's model has PruneLowMagnitude wrappers
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1 and any("prune" in type(la).__name__.lower() for la in self.model.layers):
                raise KeyboardInterrupt("killed")

    kw = dict(data=str(image_folder), train_epochs=2, prune=0.5, prune_epochs=3, batch_size=8,
              backup_dir=str(tmp_path / "b"), out=str(tmp_path / "out"))
    with pytest.raises(KeyboardInterrupt):
        compress(model(), callbacks=[KillPrune()], **kw)
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["01-train", "02-prune"]
    res = compress(model(), **kw)
    train_stage, prune_stage = res.report.stages
    assert [e.epoch for e in train_stage.history] == [1, 2] and "resumed after epoch 2" in train_stage.notes[0]
    assert [e.epoch for e in prune_stage.history] == [1, 2, 3] and "resumed after epoch 1" in prune_stage.notes[0]
    assert abs(prune_stage.weights.pruned_sparsity - 0.5) < 0.05
    assert not any((tmp_path / "b").iterdir())


def test_train_on_only_unreadable_images_is_a_data_error_not_a_hang(tmp_path):
    """Issue 8: two class folders of junk spun forever at 100 % CPU (SIGTERM ignored); a folder holding only a
    decompression bomb ended in ``internal error: ValueError ... (Empty logs)``. Both: exit 2, error + hint. The CLI
    runs in a subprocess killed after a deadline."""
    import subprocess
    import sys

    from test_data import _png_header_only

    junk, bomb = tmp_path / "junk", tmp_path / "bomb"
    for c in "ab":
        (junk / c).mkdir(parents=True)
        for i in range(3):
            (junk / c / f"{i}.png").write_bytes(b"\x89PNG junk " + bytes([i]) * 50)
    _png_header_only(bomb / "a" / "bomb.png", 60000, 60000)
    cli = "from edgekit.cli import main; main()"
    for data in (junk, bomb):
        args = ["train", "mobilenet_v1", "--alpha", "0.25", "--resolution", "32", "--input-channels", "1",
                "--classes", "2", "--weights", "none", "--data", str(data), "--epochs", "1"]
        try:
            proc = subprocess.run([sys.executable, "-c", cli, *args], capture_output=True, text=True, timeout=150)
        except subprocess.TimeoutExpired:
            pytest.fail(f"edgekit train on {data.name} never ended")
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert lines[0].startswith("error: no ") and str(data) in lines[0], lines
        assert lines[1].startswith("hint: ") and len(lines) == 2, lines


def test_an_existing_folder_at_a_model_output_is_refused_and_kept(tmp_path, monkeypatch):
    """Issue 8: ``--out X/m.keras`` where m.keras is a folder trained, then deleted the folder and its files."""
    from edgekit._io import atomic_path
    from edgekit._keras import keras

    def boom(*a, **k):
        raise AssertionError("training started although the output is a folder")

    monkeypatch.setattr(keras.Model, "fit", boom)
    folder = tmp_path / "m.keras"
    folder.mkdir()
    (folder / "notes.txt").write_text("x")
    (tmp_path / "ck" / "best.keras").mkdir(parents=True)
    small = ["--alpha", "0.25", "--resolution", "32", "--input-channels", "1", "--classes", "10", "--weights", "none",
             "--data", "digits", "--limit", "64", "--epochs", "1"]
    for extra in (["--out", str(folder)], ["--checkpoint-dir", str(tmp_path / "ck")]):
        r = CliRunner().invoke(main, ["train", "mobilenet_v1", *small, *extra])
        lines = r.output.strip().splitlines()
        assert r.exit_code == 2, r.output
        assert lines[0].startswith("error: ") and "existing folder" in lines[0], lines
        assert lines[1].startswith("hint: move the folder away"), lines
    r = CliRunner().invoke(main, ["compress", "mobilenet_v1", *small[:-2], "--train-epochs", "1", "--save-model",
                                  str(folder), "--out", str(tmp_path / "art")])
    assert r.exit_code == 2 and "existing folder" in r.output, r.output
    with pytest.raises(InvalidArgument, match="existing folder"):  # the helper itself never deletes a folder
        with atomic_path(folder) as tmp:
            tmp.write_text("new")
    assert (folder / "notes.txt").read_text() == "x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck", "m.keras"]
    assert [p.name for p in (tmp_path / "ck").iterdir()] == ["best.keras"]


def test_evaluation_data_with_other_classes_or_order_is_refused(image_folder, tmp_path):
    """Label k must mean the same class in training and evaluation data: a folder's classes are sorted by name, a
    built-in dataset keeps its own order (training on Fashion-MNIST PNG folders and evaluating on `fashion-mnist`
    scored 32 % for a model at 74 %)."""
    import shutil

    from edgekit._keras import keras
    from edgekit.compression.train import split_data

    model = keras.Sequential([keras.layers.Input((8, 8, 3)), keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(3, activation="softmax")])
    other = tmp_path / "other"
    for src, dst in (("a", "T-shirt"), ("b", "b"), ("c", "c")):  # one class named otherwise: sorted first, not 'a'
        shutil.copytree(image_folder / src, other / dst)
    with pytest.raises(DataError, match="not those of the training data.*label 0: 'a' vs 'T-shirt'") as info:
        split_data(str(image_folder), model, eval_data=str(other))
    assert "same sub-folder names" in info.value.hint
    with pytest.raises(DataError, match="not those of the training data"):
        split_data(str(image_folder), model, val_data=str(other))
    *_, test = split_data(str(image_folder), model, eval_data=str(image_folder))  # the same classes: accepted
    assert test.class_names == ["a", "b", "c"]


@pytest.mark.slow   # trains
def test_trainable_freezes_every_other_layer(image_folder, tmp_path):
    """--trainable PATTERN trains only the matching layers (an update package then holds only them); the saved
    model trains whole again; a pattern matching nothing fails before any data is read."""
    import numpy as np

    from edgekit._keras import keras
    from edgekit.compression import train

    model = _tiny()
    before = [w.copy() for w in model.get_weights()]
    res = train(model, str(image_folder), epochs=2, batch_size=8, lr=1e-2, trainable=("dense*",),
                out=tmp_path / "m.keras")
    trained, rep = res.model, res.report
    assert rep.trainable_layers == [trained.layers[-1].name]
    after = trained.get_weights()
    assert np.array_equal(before[0], after[0]) and np.array_equal(before[1], after[1])  # the conv: frozen
    assert not np.array_equal(before[2], after[2])  # the classifier trained
    assert all(layer.trainable for layer in keras.models.load_model(tmp_path / "m.keras").layers)
    with pytest.raises(InvalidArgument, match="matches no layer") as ei:
        train(_tiny(), "/nonexistent/folder", epochs=1, trainable=("head*",))
    assert "dense" in ei.value.hint
