"""The CLI machinery: --debug anywhere on the command line, progress lines when stderr is not a terminal."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from edgekit.cli import main
from edgekit.errors import InvalidArgument


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.mark.parametrize("where", ["first", "after the command", "last"])
def test_debug_is_accepted_in_any_position(tmp_path, where):
    missing = tmp_path / "missing.tflite"
    args = {"first": ["--debug", "inspect", missing], "after the command": ["inspect", "--debug", missing],
            "last": ["inspect", missing, "--debug"]}[where]
    r = run(*args)
    assert r.exit_code == 2, r.output
    assert "error:" in r.stderr and "No such option" not in r.output
    assert "Traceback" in r.stderr  # --debug took effect: the traceback is shown


def test_debug_after_double_dash_is_an_argument(tmp_path):
    r = run("inspect", "--", "--debug")
    assert r.exit_code == 2 and "'--debug' is not a file" in r.stderr and "Traceback" not in r.stderr


def test_progress_lines_when_stderr_is_not_a_terminal(monkeypatch):
    """In CI logs a long `export --recipe` printed nothing for minutes: a running task says where it is every 10 s
    and when it is done; a quick task or a quick failure prints nothing (the error stays the first line)."""
    import edgekit.cli._output as output
    import edgekit.exporters as exporters

    clock = iter(range(0, 1000, 3))
    monkeypatch.setattr(output.time, "monotonic", lambda: float(next(clock)))

    def fake_export(*args, progress, **kwargs):
        for i in range(11):  # 3 s apart: 30 s
            progress("calibrating tflite", i, 10)
        progress("loading model", 0, None)
        progress("loading model", 1, 1)
        progress("converting tflite int8", 0, None)
        raise SystemExit(0)

    monkeypatch.setattr(exporters, "export", fake_export)
    r = run("export", "mobilenet_v1", "--quantize", "int8")
    lines = [ln.split("] ", 1)[1] for ln in r.stderr.splitlines() if ln.startswith("progress:")]
    assert lines == ["calibrating tflite 4/10", "calibrating tflite 8/10", "calibrating tflite 10/10",
                     "loading model 1/1"]


def test_one_size_unit_convention(tmp_path):
    """The same file was KiB in export, 'KB' (of 1024 bytes) in the compression report and MB (of 10**6) in bench:
    every size shown is a binary unit named as such, and results hold bytes (bench's size_bytes, like its memory)."""
    from edgekit._units import human
    from edgekit.compression.report import COLUMNS
    from edgekit.devices.artifacts import ArtifactInfo
    from edgekit.devices.bench import result
    from edgekit.devices.profiles import parse_device

    assert all(not c.endswith((" KB", " MB")) for c in COLUMNS) and "file KiB" in COLUMNS
    art = ArtifactInfo(path="m.tflite", model="m", format="tflite", precision="int8", size_bytes=3 * 2**20,
                       sha256="0" * 64)
    assert result(art, parse_device("local"), exc=InvalidArgument("x")).size_bytes == 3 * 2**20
    assert [human(n) for n in (512, 2048, 3 * 2**20)] == ["512 B", "2.0 KiB", "3.0 MiB"]


@pytest.mark.parametrize("args, message, help_of", [
    (["compress", "mobilenet_v1", "--prune", "half"], "Invalid value for '--prune'", "edgekit compress"),
    (["profile", "mobilenet_v1", "--alpha", "0.25,0.5"], "Invalid value for '--alpha'", "edgekit profile"),
    (["models", "--alpha", "1"], "No such option '--alpha'", "edgekit models"),
    (["expotr"], "No such command 'expotr'. Did you mean 'export'?", "edgekit"),
    (["--bogus"], "No such option '--bogus'", "edgekit"),
    (["devices", "show"], "Missing argument 'NAME'", "edgekit devices show"),
])
def test_click_usage_errors_have_the_error_and_hint_form(args, message, help_of):
    """Issue 8: click's own errors printed ``Usage: ... Error: Invalid value ...`` without edgekit's form."""
    r = CliRunner().invoke(main, args, prog_name="edgekit")
    lines = r.stderr.strip().splitlines()
    assert r.exit_code == 2, r.output
    assert lines == [f"error: {lines[0][7:]}", f"hint: see '{help_of} --help'"] and message in lines[0], lines
    assert "Usage:" not in r.output and "Traceback" not in r.output


def test_a_bad_ssh_port_has_a_hint(tmp_path):
    art = tmp_path / "m.tflite"
    art.write_bytes(b"x")
    r = run("bench", art, "-d", "ssh://pi@host:abc")
    lines = r.stderr.strip().splitlines()
    assert r.exit_code == 2 and lines[0].startswith("error: ") and "bad port" in lines[0], lines
    assert len(lines) == 2 and lines[1].startswith("hint: ") and "ssh://" in lines[1], lines


def test_bare_commands_still_show_their_help():
    for args in ([], ["devices"]):
        r = run(*args)
        assert r.exit_code == 2 and "Usage:" in r.output and "error:" not in r.output, r.output


# ------------------------------------------------------------------------------ issue 18: --json failures, escaping
@pytest.mark.parametrize("args", [
    ["bench", "{missing}", "--json", "-"], ["bench", "{missing}", "--json", "{tmp}/out.json"],
    ["compare", "{missing}", "{missing}", "--json"], ["compress", "{missing}", "--json"],
    ["doctor", "{missing}", "--json"], ["export", "{missing}", "--json"], ["history", "--json", "--history", "{tmp}"],
    ["inspect", "{missing}", "--json"], ["inspect", "--json", "--no-such-option"],
    ["models", "--json", "--stats=maybe"],
    ["profile", "{missing}", "--json"], ["sweep", "{missing}", "--json"], ["train", "{missing}", "--json"],
])
def test_json_commands_print_a_json_error_object_on_failure(tmp_path, args):
    """Issue 18: with --json a failing command printed nothing on stdout; scripts parse one object now."""
    import json

    missing = tmp_path / "missing.tflite"
    r = run(*[a.format(missing=missing, tmp=tmp_path) for a in args])
    assert r.exit_code == 2, r.output
    doc = json.loads(r.stdout)
    assert set(doc) == {"error", "hint", "exit_code"} and doc["exit_code"] == 2 and doc["error"] and doc["hint"]
    assert "error:" in r.stderr  # people still read it on stderr


def test_internal_error_with_json_is_a_json_object_too(monkeypatch, tmp_path):
    import json

    import edgekit.exporters as exporters

    monkeypatch.setattr(exporters, "inspect", lambda *a, **k: 1 / 0)
    (tmp_path / "m.tflite").write_bytes(b"x")
    r = run("inspect", tmp_path / "m.tflite", "--json")
    doc = json.loads(r.stdout)
    assert r.exit_code == 1 == doc["exit_code"] and "ZeroDivisionError" in doc["error"]


def test_control_characters_from_files_are_escaped_on_the_terminal():
    """Issue 18: a custom-op name with escape sequences reached the terminal (retitle, recolour, hide lines)."""
    from edgekit.cli._output import _SafeConsole, escape_controls

    evil = "Op\x1b]0;pwned\x07\x1b[2J\r\u202egnp.exe\x9b31m"
    assert escape_controls(evil) == "Op\\x1b]0;pwned\\x07\\x1b[2J\\r\\u202egnp.exe\\x9b31m"
    assert escape_controls("a\tb\nc é 中") == "a\tb\nc é 中"
    import io

    from rich.table import Table

    buf = io.StringIO()
    con = _SafeConsole(file=buf, force_terminal=True, width=200)
    t = Table()
    t.add_column("op")
    t.add_row(evil)
    con.print(t)
    con.print(f"[bold red]error:[/] {evil}", markup=False)
    text = buf.getvalue()
    assert "\x1b]0" not in text and "\x07" not in text and "\x1b[2J" not in text and "\r" not in text
    assert "\\x1b]0;pwned" in text and "\x1b[" in text  # rich's own colours still pass


def test_names_that_look_like_markup_are_shown_literally(tmp_path):
    """A history line (or a custom op) named '[/]' was a rich MarkupError, an internal error; '[bold red]' styled."""
    import json

    hist = tmp_path / "h.jsonl"
    hist.write_text(json.dumps({"sha256": "ab" * 32, "device": "[bold red]dev", "status": "ok", "p50_ms": 2.0,
                                "model": "[/]"}) + "\n")
    r = run("history", "--history", hist)
    assert r.exit_code == 0, r.output
    assert "│ [/]" in r.stdout and "[bold red]dev" in r.stdout
    import io

    from edgekit.cli._output import _SafeConsole

    buf = io.StringIO()
    _SafeConsole(file=buf, width=80).print("a [/] title")  # the safety net for text not marked as data
    assert buf.getvalue().strip() == "a [/] title"


def test_malformed_history_records_are_skipped_not_an_internal_error(tmp_path):
    import json

    good = {"sha256": "ab" * 32, "device": "local", "status": "ok", "p50_ms": 2.0, "model": "m"}
    lines = [dict(good, p50_ms="fast"), dict(good, p50_ci_ms="x"), dict(good, p50_ci_ms=[1]),
             dict(good, sha256=["x"]), dict(good, device={"a": 1}), [1, 2], "str", good, dict(good, p50_ms=2.01)]
    hist = tmp_path / "h.jsonl"
    hist.write_text("".join(json.dumps(x) + "\n" for x in lines))
    r = run("history", "--history", hist, "--json")
    assert r.exit_code == 0, r.output
    assert [x["p50_ms"] for x in json.loads(r.stdout)] == [2.0, 2.01]


def test_a_config_nested_too_deeply_is_an_error_with_a_hint(tmp_path):
    """Issue 18 (recursion depth): 5,000 nested brackets in a YAML config overflowed PyYAML's recursive composer,
    an internal error; the CLI boundary names the cause (the loaders may bound depth earlier)."""
    deep = tmp_path / "deep.sweep.yaml"
    deep.write_text("grid: " + "[" * 5000 + "]" * 5000 + "\n")
    r = run("sweep", "--config", deep, "--json")
    assert r.exit_code == 2 and "nests its structure too deeply" in r.stderr and "hint:" in r.stderr, r.output
