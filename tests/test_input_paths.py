"""Input paths are regular files or folders, read with size limits (issue 18): a FIFO hangs a reader forever, a
link to /dev/zero never ends, a nested-alias YAML expands to gigabytes. Each case is refused with ``error:`` +
``hint:`` (exit 2) before anything reads it; every input is built here."""
from __future__ import annotations

import json
import os
import socket
import zipfile
from pathlib import Path

import numpy as np
import pytest

from edgekit._io import check_input_path, load_yaml_text, open_input, read_input_bytes, read_input_text
from edgekit.errors import DataError, InvalidArgument

#: a 378-byte YAML whose nested aliases expand to 9^9 values (PyYAML builds it by reference; any walk or repr of it
#: does not end)
ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi"))


@pytest.fixture
def odd(tmp_path) -> dict[str, Path]:
    """Paths that are not regular files: a FIFO, a link to /dev/zero, a character device, a socket."""
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "zero").symlink_to("/dev/zero")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "sock"))
    yield {"fifo": tmp_path / "fifo", "zero": tmp_path / "zero", "null": Path("/dev/null"), "sock": tmp_path / "sock"}
    sock.close()


def _error(res, *words: str) -> str:
    assert res.exit_code == 2, res.output
    lines = [line for line in res.stderr.splitlines() if not line.startswith("progress:")]
    assert lines[0].startswith("error:") and lines[1].startswith("hint:"), res.stderr
    assert all(w in lines[0] for w in words), lines[0]
    assert "Traceback" not in res.output and "internal error" not in res.output
    return lines[0]


KIND = {"fifo": "FIFO", "zero": "character device", "null": "character device", "sock": "socket"}


@pytest.mark.parametrize("kind", list(KIND))
def test_check_input_path_says_what_it_is(odd, kind, tmp_path):
    with pytest.raises(DataError, match=KIND[kind]) as info:
        check_input_path(odd[kind], "data", error=DataError)
    assert "regular file" in str(info.value)
    with pytest.raises(InvalidArgument, match=KIND[kind]):
        with open_input(odd[kind], "recipe"):
            pass
    assert check_input_path(tmp_path, "data") == tmp_path            # folders pass
    assert check_input_path(tmp_path / "missing", "data") == tmp_path / "missing"   # the caller says what is missing
    with pytest.raises(InvalidArgument, match=KIND[kind]):
        read_input_bytes(odd[kind], "x", limit=10)
    with pytest.raises(InvalidArgument, match="is a folder|not a regular file"):
        read_input_bytes(tmp_path, "recipe", limit=10)


def test_size_limit_and_utf8(tmp_path):
    f = tmp_path / "f.yaml"
    f.write_bytes(b"a: 1\n" * 100)
    with pytest.raises(InvalidArgument, match="500 bytes, more than the 100 bytes"):
        read_input_bytes(f, "recipe", limit=100)
    f.write_bytes(b"model: \xff\xfe\n")
    with pytest.raises(InvalidArgument, match="not UTF-8"):
        read_input_text(f, "recipe", limit=100)


def test_yaml_alias_bomb_is_refused_before_it_is_built():
    assert len(ALIAS_BOMB) < 444
    with pytest.raises(InvalidArgument, match="expands to more than"):
        load_yaml_text(ALIAS_BOMB, "recipe")
    with pytest.raises(InvalidArgument, match="refers to itself"):
        load_yaml_text("a: &a [1, *a]\n", "recipe")
    with pytest.raises(InvalidArgument, match="nests its structure too deeply"):
        load_yaml_text("[" * 100 + "]" * 100, "recipe")
    with pytest.raises(InvalidArgument, match="nests its structure too deeply"):
        load_yaml_text("[" * 100_000 + "]" * 100_000, "recipe")
    assert load_yaml_text("a: &x [1, 2]\nb: *x\n", "recipe") == {"a": [1, 2], "b": [1, 2]}


@pytest.mark.parametrize("kind", ["fifo", "zero"])
def test_model_path_that_is_not_a_file(odd, cli, kind):
    """A FIFO as the model hung forever; a link to /dev/zero was read until the kernel killed edgekit (24 GB)."""
    _error(cli("profile", odd[kind]), "model file", KIND[kind])
    _error(cli("export", "mobilenet_v1", "--alpha", "0.25", "--resolution", "32", "--weights", odd[kind]),
           "weights file", KIND[kind])


def test_fifo_inside_a_savedmodel(tmp_path, cli):
    from edgekit._keras import keras, layers

    inp = layers.Input((4,))
    keras.Model(inp, layers.Dense(2)(inp)).save(str(tmp_path / "sm"), save_format="tf")
    index = tmp_path / "sm" / "variables" / "variables.index"
    index.unlink()
    os.mkfifo(index)
    _error(cli("profile", tmp_path / "sm"), "variables.index", "FIFO")


@pytest.mark.parametrize("kind", ["fifo", "zero"])
def test_data_paths_that_are_not_files(odd, cli, tmp_path, kind):
    npy = tmp_path / f"{kind}.npy"
    npy.symlink_to(odd[kind])
    base = ("export", "mobilenet_v1", "--alpha", "0.25", "--resolution", "32", "--input-channels", "1",
            "--weights", "none", "--quantize", "int8")
    _error(cli(*base, "--calib-data", npy), KIND[kind])
    _error(cli("train", "mobilenet_v1", "--alpha", "0.25", "--resolution", "32", "--weights", "none",
               "--data", odd[kind], "--epochs", "1"), "data source", KIND[kind])
    from edgekit.data.arrays import check_array_file

    with pytest.raises(DataError, match=KIND[kind]):
        check_array_file(npy, "--input")


def test_verify_data_that_is_a_fifo(odd):
    from edgekit._verify_data import read

    with pytest.raises(InvalidArgument, match="FIFO"):
        read(odd["fifo"])


def test_recipes_not_utf8_alias_bomb_fifo(tmp_path, cli, odd):
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"model: mobilenet_v1\nname: caf\xe9\n")
    _error(cli("export", "--recipe", bad), "not UTF-8")
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(ALIAS_BOMB)
    _error(cli("export", "--recipe", bomb), "expands to more than")
    _error(cli("export", "--recipe", odd["fifo"]), "FIFO")
    _error(cli("sweep", "--config", bad), "not UTF-8")
    _error(cli("sweep", "--config", bomb), "expands to more than")


def test_fifo_in_a_device_profile_folder(tmp_path, cli, monkeypatch):
    """A FIFO named x.yaml in a profile folder hung `devices list`."""
    d = tmp_path / "profiles"
    d.mkdir()
    os.mkfifo(d / "x.yaml")
    (d / "ok.yaml").write_text("transport: local\n")
    monkeypatch.setenv("EDGEKIT_DEVICES_DIR", str(d))
    res = cli("devices", "list")
    assert "FIFO" in res.output and "ok" in res.output, res.output


def test_npz_zip_bomb_is_refused_before_reading(tmp_path, cli):
    """A 100 MiB zero array packs to ~100 KiB in an .npz: refused from the archive's directory."""
    from edgekit.data.arrays import check_array_file, read_arrays

    bomb = tmp_path / "bomb.npz"
    np.savez_compressed(bomb, x=np.zeros((100 << 20) // 4, np.float32))
    assert bomb.stat().st_size < 1 << 20
    with pytest.raises(DataError, match="zip bomb"):
        check_array_file(bomb, "--input")
    with pytest.raises(DataError, match="zip bomb"):
        read_arrays(bomb, 1)
    ok = tmp_path / "ok.npz"
    np.savez_compressed(ok, x=np.zeros((4, 8, 8, 1), np.float32), y=np.arange(4))
    assert check_array_file(ok) == {"x": (4, 8, 8, 1), "y": (4,)}
