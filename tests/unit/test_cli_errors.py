"""User mistakes at the command line: one error line, exit status 2, no traceback; fast --help."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
from support import command_of, commands


def run_georay(*argv: str, env: dict | None = None, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "georay.cli", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


# At least one bad invocation per command: a missing input, a bad value, a bad type, a missing
# flag. Each must fail in the driver, before any Ray worker starts.
BAD = [
    (["synth", "--output", "w", "--countries", "99"], "countries must be in"),
    (["synth", "--output", "w", "--n", "many"], "invalid int value"),
    (["inspect"], "the following arguments are required"),
    (["curate"], "the following arguments are required"),
    (["curate", "fit", "--input", "no/such.parquet", "--output", "h"],
     "--input: no such file or folder"),
    (["curate", "score", "--input", "no/such/dir", "--head", "h", "--output", "o"],
     "--input: no such file or folder"),
    (["curate", "dedup", "--input", ".", "--output", "o"],
     "holds no finished `curate score` output"),
    (["curate", "dedup", "--input", ".", "--output", "o", "--similarity", "1.5"],
     "similarity must be in (0, 1]"),
    (["curate", "balance", "--input", "no/such", "--output", "o", "--max-per-cell", "5"],
     "--input: no such file or folder"),
    (["curate", "balance", "--input", ".", "--output", "o"],
     "missing required flag(s): --max-per-cell"),
    (["knowledge", "--output", "k"], "nothing to build"),
    (["train", "--stage", "stage3", "--input", "d.jsonl", "--model", "tiny", "--output", "a"],
     "stage must be one of"),
    (["train", "--stage", "reasoning", "--input", "missing.jsonl", "--model", "tiny",
      "--output", "a"], "--input: no such file or folder"),
    (["train", "--stage", "reasoning", "--input", "d", "--model", "tiny", "--output", "a",
      "--gpus-per-worker", "-1"], "gpus_per_worker must be >= 0"),
    (["predict", "--model", "m", "--output", "o"], "missing required flag(s): --input"),
    (["predict", "--input", ".", "--model", "./no-model", "--output", "o"],
     "--model: no such file or folder"),
    (["predict", "--input", ".", "--model", "m", "--output", "o", "--gallery", "."],
     "a gallery needs --head"),
    (["predict", "--input", ".", "--model", "m", "--output", "o", "--gallery", ".",
      "--gallery-from-exif", "--head", "."], "give --gallery or --gallery-from-exif, not both"),
    (["export", "--model", "./no-artifact", "--output", "x"],
     "--model: no such file or folder"),
    (["export-geo", "--predictions", "no/such", "--output", "m.geojson"],
     "--predictions: no such file or folder"),
    (["baseline"], "the following arguments are required"),
    (["baseline", "zeroshot", "--input", "in", "--output", "o", "--cities-per-country", "0"],
     "cities_per_country must be >= 1"),
    (["baseline", "knn", "--input", "in", "--output", "o", "--head", "h"],
     "missing required flag(s): --gallery"),
    (["serve", "--model", "m", "--batch-size", "0"], "batch_size must be >= 1"),
    (["serve", "--model", "m", "--engine", "tgi"], "engine must be one of"),
    (["calibrate", "--input", "no/such.parquet", "--truth", "t.csv", "--output", "c.json"],
     "--input: no such file or folder"),
    (["calibrate", "--model", "geolocal/StreetCLIP", "--input", "p", "--truth", "t.csv"],
     "is no folder or s3:// prefix to write calibration.json into: give --output"),
    (["baseline", "zeroshot", "--input", "in", "--output", "o", "--min-confidence", "2"],
     "min_confidence must be in [0, 1]"),
    (["baseline", "knn", "--input", "in", "--output", "o", "--head", "h", "--gallery", "g",
      "--top-k", "0"], "top_k must be >= 1"),
    (["evaluate", "--predictions", "p.parquet", "--truth", "t.csv", "--output", "r"],
     "--predictions: no such file or folder"),
    (["demo", "--n", "10"], "n must be >= 50"),
    (["demo", "--preset", "nonexistent"], "no such file or shipped preset"),
]  # fmt: skip


@pytest.mark.parametrize("argv, message", BAD, ids=[" ".join(a[:2]) for a, _ in BAD])
def test_bad_invocation_is_one_error_line(tmp_path, argv, message):
    done = run_georay(*argv, cwd=tmp_path)  # relative paths in BAD: relative to an empty folder
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"georay {command_of(argv)}: error: ")
    assert message in lines[0]


def test_every_command_and_group_of_the_parser_has_a_bad_invocation_above():
    # Read off the real parser: a command added without a case here fails this.
    assert {command_of(argv) for argv, _ in BAD} == commands(groups=True)


def test_a_bad_file_found_while_running_is_one_error_line(tmp_path):
    # The files exist, so the check up front passes; the truth lacks image_id: found while
    # reading, still a user mistake.
    (tmp_path / "t.csv").write_text("IMG_X,LAT\na,1.0\n")
    (tmp_path / "p.csv").write_text("image_id,country\na,FR\n")
    done = run_georay("evaluate", "--predictions", str(tmp_path / "p.csv"), "--truth",
                  str(tmp_path / "t.csv"), "--output", str(tmp_path / "r"))  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.startswith("georay evaluate: error: ")
    assert "image_id" in done.stderr


def test_unreachable_s3_is_one_error_line():
    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    done = run_georay("predict", "--input", "s3://bucket/photos", "--model", "m", "--output", "o",
                  env={"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"})  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.startswith("georay predict: error: cannot reach s3://bucket/photos")


def test_verbose_shows_the_traceback(tmp_path):
    done = run_georay("-v", "predict", "--input", "missing", "--model", "m", "--output", "o",
                  cwd=tmp_path)  # fmt: skip
    assert done.returncode == 2
    assert "Traceback" in done.stderr and "georay predict: error:" in done.stderr


def test_old_flag_spellings_still_work_and_say_so(tmp_path):
    done = run_georay("synth", "--out", str(tmp_path / "w"), "--n", "60", "--countries", "2",
                  "--width", "64", "--height", "48", "--workers", "1")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "--out is now --output" in done.stderr
    assert json.loads(done.stdout)["images"] == 60


def test_help_imports_neither_ray_nor_torch():
    script = (
        "import sys\nfrom georay.cli import main\n"
        f"for command in {sorted(commands())!r}:\n"
        "    try:\n        main(command.split() + ['--help'])\n    except SystemExit:\n        pass\n"
        "heavy = sorted(m for m in ('ray', 'torch', 'transformers', 'open_clip') "
        "if m in sys.modules)\n"
        "print('HEAVY', heavy, file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "HEAVY []" in done.stderr
    for command in commands():
        assert f"usage: georay {command}" in done.stdout
