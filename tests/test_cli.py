"""The CLI machinery: --debug anywhere on the command line, progress lines when stderr is not a terminal."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from edgekit.cli import main


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
    """In CI logs a long `export --recipe` printed nothing for minutes: each task now says when it starts and ends."""
    import edgekit.cli._output as output
    import edgekit.exporters as exporters

    clock = iter(range(0, 1000, 3))
    monkeypatch.setattr(output.time, "monotonic", lambda: float(next(clock)))

    def fake_export(*args, progress, **kwargs):
        for i in range(11):
            progress("calibrating tflite", i, 10)
        progress("converting tflite int8", 0, None)
        raise SystemExit(0)

    monkeypatch.setattr(exporters, "export", fake_export)
    r = run("export", "mobilenet_v1", "--quantize", "int8")
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("progress:")]
    assert lines[0].endswith("calibrating tflite 0/10") and lines[-2].endswith("calibrating tflite 10/10")
    assert lines[-1].endswith("converting tflite int8 started")
    # throttled: 3 s between calls, one line per 10 s in between start and end
    assert 3 <= len(lines) - 1 <= 5
