"""The Examples in `edgekit bench|compare|history --help` run offline as written, in order; a line that needs a
device we do not have says so."""
from __future__ import annotations

import glob
import json
import re
import shlex

import pytest
from click.testing import CliRunner

from edgekit.cli import main

COMMANDS = ("bench", "compare", "history")


def examples(command: str) -> list[tuple[str, str]]:
    """(command line, comment) of each example in ``command --help``; continuation lines joined."""
    text = CliRunner().invoke(main, [command, "--help"], terminal_width=200).output
    assert "Examples" in text, f"edgekit {command} --help has no Examples section"
    block = text.split("Examples", 1)[1].split("\nOptions:", 1)[0]
    lines, pending = [], ""
    for raw in block.splitlines()[1:]:
        line = pending + " " + raw.strip() if pending else raw.strip()
        if line.endswith("\\"):
            pending = line[:-1].strip()
            continue
        pending = ""
        if line.startswith("edgekit "):
            cmd, _, comment = line.partition("  # ")
            lines.append((cmd.strip(), comment.strip()))
    return lines


@pytest.mark.parametrize("command", COMMANDS)
def test_help_has_examples_of_the_command_and_device_lines_say_what_they_need(command):
    ex = examples(command)
    assert any(cmd.startswith(f"edgekit {command} ") for cmd, _ in ex), ex
    for cmd, comment in ex:
        words = shlex.split(cmd)
        devices = [words[i + 1] for i, w in enumerate(words) if w in ("-d", "--device")]
        if any(d != "local" for d in devices):
            assert comment.startswith("needs"), f"{cmd!r} runs on {devices}: its comment must say what it needs"


@pytest.mark.slow
def test_help_examples_run_offline_in_order(tmp_path, monkeypatch):
    """Every offline example of the three commands, in order, in one fresh directory (an export line identical to
    one already run is not repeated: it would overwrite the same files)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EDGEKIT_BENCH_HISTORY", str(tmp_path / "history.jsonl"))
    done = set()
    for command in COMMANDS:
        for cmd, comment in examples(command):
            if comment.startswith("needs") or cmd in done:
                continue
            done.add(cmd)
            argv = [m for w in shlex.split(cmd)[1:] for m in (sorted(glob.glob(w)) or [w] if "*" in w else [w])]
            r = CliRunner().invoke(main, argv)
            if argv[0] == "history":
                # exits 1 when the newest result of an artifact on a device is a regression: the second bench of
                # the same file can be slower on a busy machine (another test worker training), and is flagged
                assert r.exit_code in (0, 1) and (r.exit_code == 0 or "REGRESSION" in r.output
                                                  or '"regression": true' in r.output), (cmd, r.output)
            else:
                assert r.exit_code == 0, (cmd, r.output)
            if command == "compare" and argv[0] == "compare":
                assert re.search(r"faster|no significant difference", r.output), r.output
            if argv[0] == "history" and "--json" in argv:  # every local bench run above was recorded
                records = json.loads(r.stdout)
                assert len(records) >= 3 and {x["device"] for x in records} == {"local"}, records
                newest = {(x["sha256"], x["device"]): x for x in records}
                assert r.exit_code == int(any(x.get("regression") for x in newest.values())), records
