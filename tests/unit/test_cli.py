"""The `georay` command lists every stage and each flag maps to a config field."""

import subprocess
import sys

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


@pytest.mark.parametrize("stage", STAGES)
def test_help_says_what_each_stage_does(stage):
    choice = _subcommands(build_parser())[stage]
    assert (choice.description or choice.format_help()).strip()


def test_demo_flags_are_the_config_fields():
    from dataclasses import fields

    from georay.demo.config import DemoConfig

    demo = _subcommands(build_parser())["demo"]
    flags = {opt for a in demo._actions for opt in a.option_strings}
    assert {"--" + f.name.replace("_", "-") for f in fields(DemoConfig)} <= flags


def test_console_script_runs():
    out = subprocess.run(
        [sys.executable, "-m", "georay.cli", "--help"], capture_output=True, text=True, check=True
    )
    for stage in STAGES:
        assert stage in out.stdout


def test_no_command_prints_help_and_fails():
    out = subprocess.run([sys.executable, "-m", "georay.cli"], capture_output=True, text=True)
    assert out.returncode == 2 and "COMMAND" in out.stdout
