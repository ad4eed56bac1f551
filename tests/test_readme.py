"""The README's two commands: .ci/run runs the test command word for word, and the main job's files exist."""
import re
import shlex
from pathlib import Path

from conftest import REPO


def _commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text.split("## Two commands", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.+?)\n```", section, flags=re.S)


def test_readme_has_exactly_two_commands_and_ci_runs_the_test_one():
    main_job, tests = _commands()
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert tests in ci, "the README's test command must be a line of .ci/run"
    assert "pytest" in tests and "edgekit export --recipe" in main_job


def test_main_job_refers_to_a_shipped_recipe():
    main_job, _ = _commands()
    words = shlex.split(main_job.replace("&&", " "))
    recipe = words[words.index("--recipe") + 1]
    assert (REPO / recipe).is_file()
