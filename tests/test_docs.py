"""The documentation (README.md, docs/, mkdocs.yml) is checked like code:

- every shell and Python block runs as written (here, page after page in one fresh folder holding ``my_model.keras``,
  the suite's shared trained model), or a comment right before it names the test that runs it
  (``<!-- run-by: tests/x.py::test_y -->``, and that test reads it from the page) or what it needs that CI lacks
  (``<!-- needs: a Raspberry Pi -->``); a line whose comment starts with ``needs`` is skipped for the same reason;
- the reference pages are what ``python -m edgekit.cli._docgen docs/reference`` generates from the code now;
- ``mkdocs build --strict`` passes (broken links and anchors fail), into a temporary folder.
"""
from __future__ import annotations

import glob
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass

import pytest
import yaml
from click.testing import CliRunner

from conftest import MNV1_TINY, REPO

DOCS = REPO / "docs"
#: the pages whose unmarked blocks run, in this order, in one folder (later pages use files earlier ones made)
RUN_ORDER = ["README.md", "docs/get-started.md", "docs/guides/export.md", "docs/guides/doctor.md",
             "docs/guides/app.md", "docs/guides/update-packages.md", "docs/guides/raspberry-pi.md"]
SHELL = {"sh", "bash", "shell", "console"}
PYTHON = {"python", "py", "python3"}
MARKER = re.compile(r"<!--\s*(needs|run-by):\s*(.+?)\s*-->", re.S)


@dataclass
class Block:
    page: str
    line: int
    lang: str
    code: str
    marker: tuple[str, str] | None

    def __str__(self) -> str:
        return f"{self.page}:{self.line} ({self.lang})"


def pages() -> list[str]:
    return ["README.md", *sorted(str(p.relative_to(REPO)) for p in DOCS.rglob("*.md"))]


def blocks(page: str) -> list[Block]:
    """The fenced code blocks of a page with the marker comment right before each (blank lines between allowed)."""
    text = (REPO / page).read_text()
    found = []
    for m in re.finditer(r"^```(\w*)[^\n]*\n(.*?)^```\s*$", text, flags=re.S | re.M):
        before = text[:m.start()].rstrip()
        last = before[before.rfind("<!--"):] if before.endswith("-->") else ""  # a comment may span lines
        marker = MARKER.fullmatch(last.strip())
        found.append(Block(page, text.count("\n", 0, m.start()) + 1, m.group(1).lower(), m.group(2),
                           (marker.group(1), " ".join(marker.group(2).split())) if marker else None))
    return found


def checked_blocks() -> list[Block]:
    return [b for p in pages() for b in blocks(p) if b.lang in SHELL | PYTHON]


def shell_lines(code: str) -> list[tuple[str, str]]:
    """``(command, comment)`` of each logical line of a shell block (continuations joined, comment lines dropped)."""
    out = []
    for raw in re.sub(r"\\\n\s*", " ", code).splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        cmd, comment, quote = line, "", None  # the comment starts at an unquoted " #"
        for i, ch in enumerate(line):
            if quote:
                quote = None if ch == quote else quote
            elif ch in "'\"":
                quote = ch
            elif ch == "#" and i and line[i - 1].isspace():
                cmd, comment = line[:i].strip(), line[i + 1:].strip()
                break
        out.append((cmd, comment))
    return out


# -- every block runs or says why not (fast) -------------------------------------------------------------------------
def test_every_block_runs_here_or_names_its_test_or_what_it_needs():
    problems = []
    for b in checked_blocks():
        if b.marker is None:
            if b.page not in RUN_ORDER:
                problems.append(f"{b}: not run (its page is not in RUN_ORDER) and not marked needs:/run-by:")
            if b.lang in SHELL:
                for cmd, comment in shell_lines(b.code):
                    words = shlex.split(cmd)
                    devices = [words[i + 1] for i, w in enumerate(words[:-1]) if w in ("-d", "--device")]
                    remote = [d for d in devices if d != "local"] or (words[:3] == ["edgekit", "devices", "check"])
                    if remote and not comment.startswith("needs"):
                        problems.append(f"{b}: {cmd!r} needs a device: its comment must start with 'needs'")
            continue
        kind, what = b.marker
        if kind == "needs":
            if len(what) < 8:
                problems.append(f"{b}: needs: says too little ({what!r})")
            continue
        target = what.split()[0]
        path = REPO / target.split("::")[0]
        if not path.is_file():
            problems.append(f"{b}: run-by: {target} does not exist")
            continue
        if "::" in target:
            name = target.split("::")[1]
            if not re.search(rf"def {re.escape(name)}\b", path.read_text()):
                problems.append(f"{b}: run-by: {path.name} has no {name}")
        if path.name.startswith("test_") and b.page not in path.read_text():
            problems.append(f"{b}: {target} must read the block from {b.page} (it does not name the page)")
    assert not problems, "\n".join(problems)


def test_every_edgekit_line_parses_also_those_that_need_a_device():
    """Every `edgekit ...` line of every block, run or not, names a command and options it has (click parses it:
    a renamed option fails here even in a block only a Pi runs)."""
    from edgekit.cli import main

    problems = []
    for b in checked_blocks():
        if b.lang in PYTHON:
            try:
                compile(b.code, str(b), "exec")  # a block that is not run still has to be Python
            except SyntaxError as exc:
                problems.append(f"{b}: {exc}")
            continue
        for cmd, _ in shell_lines(b.code):
            words = shlex.split(cmd)
            while words and re.fullmatch(r"\w+=.*", words[0]):  # VAR=value prefixes
                words = words[1:]
            if not words or os.path.basename(words[0]) != "edgekit":
                continue
            args, group, path = words[1:], main, "edgekit"
            while hasattr(group, "commands") and args and args[0] in group.commands:
                group, path, args = group.commands[args[0]], f"{path} {args[0]}", args[1:]
            try:
                group.make_context(path, list(args), resilient_parsing=False)
            except Exception as exc:  # noqa: BLE001 - click's usage errors, reported with the line
                problems.append(f"{b}: {cmd!r}: {exc}")
    assert not problems, "\n".join(problems)


def test_the_train_line_is_how_the_shared_model_is_trained():
    """docs/guides/export.md's `edgekit train ... --out my_model.keras` is conftest's trained_mnv1, option for option
    (the suite trains it once; the docs' run uses that file as my_model.keras)."""
    (b,) = [b for b in blocks("docs/guides/export.md") if b.marker and b.marker[0] == "run-by"]
    (line,) = shell_lines(b.code)
    words = shlex.split(line[0])
    assert words[:3] == ["edgekit", "train", "mobilenet_v1"], words
    given = dict(zip(words[3::2], words[4::2]))
    import inspect

    import conftest

    src = inspect.getsource(conftest.trained_mnv1)
    call = re.search(r"train\((.*?)\)\n", src, flags=re.S).group(1)
    kwargs = dict(re.findall(r"(\w+)=([^,\s]+)", call))
    expected = {**{k: str(v) for k, v in MNV1_TINY.items()}, **{k: v.strip('"') for k, v in kwargs.items()}}
    expected.pop("out")
    expected.pop("test_limit")  # scores the model, does not change it
    expected.pop("seed")  # 0, the default
    assert kwargs["seed"] == "0"
    as_flags = {f"--{k.replace('_', '-')}": v for k, v in expected.items()}
    assert {k: float(v) if re.fullmatch(r"[\d.e-]+", v) else v for k, v in given.items() if k != "--out"} == \
           {k: float(v) if re.fullmatch(r"[\d.e-]+", v) else v for k, v in as_flags.items()}
    assert given["--out"] == "my_model.keras"


def test_the_recipe_shown_in_get_started_is_the_file():
    (b,) = [b for b in blocks("docs/get-started.md") if b.lang == "yaml"]
    shown = yaml.safe_load(b.code)
    assert shown == yaml.safe_load((REPO / "export" / f"{shown['name']}.yaml").read_text())


def test_the_readme_links_resolve():
    """The README is read on GitHub, not built by mkdocs: its relative links must name files of the tree."""
    text = (REPO / "README.md").read_text()
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    assert len(links) >= 15, links
    missing = [link for link in links if "://" not in link and not (REPO / link).exists()]
    assert not missing, missing


# -- the reference pages are the code's (fast) -----------------------------------------------------------------------
def test_reference_pages_are_generated_from_the_code_now(tmp_path):
    from edgekit.cli import _docgen

    for name in _docgen.PAGES:
        shutil.copy(DOCS / "reference" / name, tmp_path / name)
    stale = _docgen.generate(tmp_path, check=True)
    assert not stale, (f"docs/reference/{', '.join(stale)} differ from the code: run "
                       "`python -m edgekit.cli._docgen docs/reference` and commit")


def test_every_command_and_option_is_in_the_cli_reference():
    from edgekit.cli import main

    text = (DOCS / "reference" / "cli.md").read_text()

    def walk(group, prefix):
        for name, cmd in group.commands.items():
            yield f"{prefix} {name}", cmd
            if hasattr(cmd, "commands"):
                yield from walk(cmd, f"{prefix} {name}")

    for path, cmd in walk(main, "edgekit"):
        section = text.split(f"## {path}\n", 1)[1].split("\n## ", 1)[0]
        for p in cmd.params:
            for opt in getattr(p, "opts", []):
                if opt.startswith("-"):
                    assert f"`{opt}`" in section, f"{path}: {opt} missing from docs/reference/cli.md"


# -- the site builds (strict) ----------------------------------------------------------------------------------------
@pytest.mark.slow  # ~2 s idle (mkdocs, Material, mkdocstrings reading the package's source), more under load
def test_mkdocs_build_strict(tmp_path):
    pytest.importorskip("mkdocs", reason="the docs extra is not installed (pip install -e '.[docs]')")
    pytest.importorskip("mkdocstrings_handlers.python", reason="the docs extra is not installed")
    site = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(site)],
                       cwd=REPO, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert r.returncode == 0, r.stderr[-4000:] + r.stdout[-2000:]
    assert (site / "index.html").is_file() and (site / "reference" / "cli" / "index.html").is_file()
    assert not (REPO / "site").exists(), "the build wrote into the tree"


# -- the blocks run as written (slow: they export) -------------------------------------------------------------------
@pytest.mark.slow
def test_docs_examples_run_as_written(tmp_path, monkeypatch, trained_mnv1):
    from edgekit.cli import main

    shutil.copy(trained_mnv1, tmp_path / "my_model.keras")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EDGEKIT_BENCH_HISTORY", str(tmp_path / "history.jsonl"))
    monkeypatch.setenv("EDGEKIT_CACHE", str(tmp_path / "cache"))
    bindir = os.path.dirname(sys.executable)
    monkeypatch.setenv("PATH", bindir + os.pathsep + os.environ.get("PATH", ""))
    done, ran = set(), 0
    for page in RUN_ORDER:
        for b in blocks(page):
            if b.marker is not None or b.lang not in SHELL | PYTHON:
                continue
            if b.lang in PYTHON:
                exec(compile(b.code, str(b), "exec"), {"__name__": "__docs__"})  # noqa: S102 - the docs' own code
                ran += 1
                continue
            for cmd, comment in shell_lines(b.code):
                if comment.startswith("needs") or cmd in done:
                    continue
                done.add(cmd)
                words = shlex.split(cmd)
                if words[0] == "edgekit":
                    argv = [m for w in words[1:] for m in (sorted(glob.glob(w)) or [w] if "*" in w else [w])]
                    r = CliRunner().invoke(main, argv)
                    assert r.exit_code == 0, f"{b}: {cmd}\n{r.output[-3000:]}"
                else:
                    r = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=120)
                    assert r.returncode == 0, f"{b}: {cmd}\n{r.stderr[-2000:]}"
                ran += 1
    assert ran >= 15, ran
