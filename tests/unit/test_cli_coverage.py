"""Every command of the real parser has a successful command-line run in the suite.

The runs are found in the test sources, not in a list kept by hand: calls to
``support.georay_ok(WORDS...)`` (in-process ``georay``, status 0 asserted),
``support.georay_argv(WORDS...)`` (a ``georay`` subprocess whose status the test checks), the
cluster tests' ``georay_checked(...)`` (``check=True``) and ``ray job submit``s of
``jobs/<stage>.py`` (``submit("jobs/curate.py", "fit", ...)`` or an argv list starting with the
job's path). The command words must be literals, so a new command without a run fails here.
The bad invocations are checked the same way in test_cli_errors.py.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from support import command_of, commands

TESTS = Path(__file__).resolve().parents[1]
RUNNERS = {"georay_ok", "georay_argv", "georay_checked", "submit"}
JOB = re.compile(r"^jobs/(\w+)\.py$")


def _literal_words(nodes) -> list[str]:
    words = []
    for node in nodes:
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
            break
        words.append(node.value)
    return words


def _argv(words: list[str]) -> list[str]:
    match = JOB.match(words[0]) if words else None
    return [match.group(1), *words[1:]] if match else words


def successful_runs() -> dict[str, set[str]]:
    """Command path -> the test files that run it successfully."""
    runs: dict[str, set[str]] = {}
    for path in sorted(TESTS.rglob("test_*.py")):
        if path.resolve() == Path(__file__).resolve():
            continue  # this file's own examples are no runs
        for node in ast.walk(ast.parse(path.read_text())):
            words = []
            if isinstance(node, ast.Call):
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if name in RUNNERS:
                    words = _argv(_literal_words(node.args))
            elif isinstance(node, ast.List | ast.Tuple):
                words = _literal_words(node.elts)
                words = _argv(words) if words and JOB.match(words[0]) else []
            command = command_of(words)
            if command:
                runs.setdefault(command, set()).add(path.name)
    return runs


def test_the_walk_sees_every_command_of_the_parser():
    found = commands()
    assert {"curate fit", "curate dedup", "baseline knn", "demo", "export"} <= found
    assert "curate" not in found and "curate" in commands(groups=True)
    assert command_of(["curate", "fit", "--input", "m"]) == "curate fit"
    assert (
        command_of(["jobs/curate.py"]) is None
        and command_of(_argv(["jobs/curate.py", "fit"])) == "curate fit"
    )


def test_every_command_has_a_successful_command_line_run():
    missing = commands() - set(successful_runs())
    assert not missing, f"no successful `georay` run in the suite for: {sorted(missing)}"
