"""The `georay` command lists every stage and each flag maps to a config field."""

import subprocess
import sys

import numpy as np
import pytest

from georay.cli import build_parser

STAGES = [
    "synth",
    "inspect",
    "curate",
    "knowledge",
    "train",
    "predict",
    "baseline",
    "serve",
    "evaluate",
    "demo",
]


def _subcommands(parser):
    return next(a for a in parser._actions if a.dest == "command_name").choices


def test_every_stage_has_a_subcommand():
    assert set(STAGES) <= set(_subcommands(build_parser()))


def _command_parsers() -> dict:
    """Every command's own parser, by path (``"curate fit"``), groups included."""
    found = {}
    for name, sub in _subcommands(build_parser()).items():
        found[name] = sub
        inner = next((a.choices for a in sub._actions if isinstance(a.choices, dict)), {})
        found |= {f"{name} {s}": p for s, p in inner.items()}
    return found


@pytest.mark.parametrize("path", sorted(_command_parsers()))
def test_help_says_what_each_command_does(path):
    # The description is the command's own text (help= or description=), empty when neither
    # was written: format_help() would never be.
    assert _command_parsers()[path].description.strip()


def test_every_commands_flags_are_its_config_fields():
    from dataclasses import fields

    from georay.config import flag

    for path, parser in _command_parsers().items():
        command = parser.get_default("command")
        if command is None:  # a group
            continue
        flags = {opt for a in parser._actions for opt in a.option_strings}
        dests = {a.dest for a in parser._actions}
        for f in fields(command.config):
            assert flag(f.name) in flags or (f.metadata.get("positional") and f.name in dests), (
                path, f.name)  # fmt: skip


def test_inspect_prints_one_json_line_per_image(tmp_path):
    import json

    from support import georay_ok

    from georay.data.images import encode_jpeg

    image = tmp_path / "a.jpg"
    image.write_bytes(encode_jpeg(np.zeros((48, 64, 3), np.uint8)))
    (line,) = georay_ok("inspect", str(image)).splitlines()
    found = json.loads(line)
    assert (found["format"], found["width"], found["height"], found["lat"]) == ("JPEG", 64, 48,
                                                                                None)  # fmt: skip


def test_console_script_runs():
    out = subprocess.run(
        [sys.executable, "-m", "georay.cli", "--help"], capture_output=True, text=True, check=True
    )
    for stage in STAGES:
        assert stage in out.stdout


def test_no_command_prints_help_and_fails():
    out = subprocess.run([sys.executable, "-m", "georay.cli"], capture_output=True, text=True)
    assert out.returncode == 2 and "COMMAND" in out.stdout
