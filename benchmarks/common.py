"""What every benchmark module shares: the machine, the load it ran under, medians, and its
section of BENCHMARKS.md (whole, in named parts, or as a two-column table of results).

A benchmark prints only what it measured: the CPU count and 1-minute load average are read at the
start and at the end of the run (:class:`Conditions`), never assumed.
"""

from __future__ import annotations

import datetime
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

BENCH_MD = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"


def machine() -> str:
    """CPU model, logical CPUs and Python version of this machine."""
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        found = re.search(r"Model name:\s*(.+)", lscpu)
        cpu = found.group(1).strip() if found else platform.processor()
    except OSError:
        cpu = platform.processor()
    return f"{os.cpu_count()} CPUs ({cpu or 'unknown CPU'}), Python {platform.python_version()}"


class Conditions:
    """The load a benchmark ran under: read when created and again by :meth:`line`."""

    def __init__(self) -> None:
        self.started = time.time()
        self.load_start = os.getloadavg()[0]

    def line(self) -> str:
        """One sentence: command, machine, date, duration and the load at start and end."""
        now = datetime.datetime.now(datetime.timezone.utc)
        minutes = (time.time() - self.started) / 60
        command = shlex.join([_python(), "-m", _module(), *sys.argv[1:]])
        return (
            f"`{command}` on {machine()}, {now:%Y-%m-%d %H:%M} UTC, {minutes:.1f} min; "
            f"1-minute load average {self.load_start:.1f} at the start and "
            f"{os.getloadavg()[0]:.1f} at the end, on {os.cpu_count()} CPUs."
        )


def _python() -> str:
    """The interpreter as typed from the repository root (``.venv/bin/python``)."""
    exe = Path(sys.executable)
    try:
        return str(exe.relative_to(Path.cwd()))
    except ValueError:
        return exe.name


def _module() -> str:
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    return spec.name if spec else Path(sys.argv[0]).stem


def median_s(fn: Callable[[], object], repeat: int) -> float:
    """Median wall time of ``repeat`` calls of ``fn``."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def rows_section(
    area: str, conditions: Conditions, method: str, column: str, rows: list[tuple[str, str]]
) -> str:
    """A section of ``## area``, the conditions line and ``method`` (how it was measured), then a
    ``| what | column |`` table of ``rows``."""
    return "\n".join(
        [
            f"## {area}",
            "",
            f"{conditions.line()} {method}",
            "",
            f"| what | {column} |",
            "|---|---|",
            *[f"| {what.strip()} | {value} |" for what, value in rows],
        ]
    )


def run_rows(
    area: str, method: str, column: str, measure: Callable[[], list[tuple[str, str]]]
) -> str:
    """Run ``measure`` under :class:`Conditions`, print its :func:`rows_section` and write it as
    ``area``'s section of BENCHMARKS.md; returns the text."""
    conditions = Conditions()
    text = rows_section(area, conditions, method, column, measure())
    print(text)
    write_section(area, text)
    return text


def write_section(area: str, body: str, path: Path = BENCH_MD) -> None:
    """Replace ``area``'s section of BENCHMARKS.md (appended when missing).

    The file is re-read right before writing: several benchmarks write their own sections.
    """
    start, end = f"<!-- {area}:start -->", f"<!-- {area}:end -->"
    text = path.read_text() if path.exists() else "# georay benchmarks\n"
    section = f"{start}\n{body.strip()}\n{end}"
    if start in text and end in text:
        text = text[: text.index(start)] + section + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)


def write_part(
    area: str, names: tuple[str, ...], part: str, text: str, path: Path = BENCH_MD
) -> None:
    """Replace one part of ``area``'s section of BENCHMARKS.md (``<!-- area.part:start -->``),
    keeping its other parts, in the order of ``names``, under a ``## area`` heading; the
    section is added when missing."""
    start, end = f"<!-- {area}:start -->", f"<!-- {area}:end -->"
    md = path.read_text() if path.exists() else ""
    body = md.split(start, 1)[1].split(end, 1)[0] if start in md and end in md else ""
    parts = {}
    for name in names:
        open_, close = f"<!-- {area}.{name}:start -->", f"<!-- {area}.{name}:end -->"
        if open_ in body:
            parts[name] = body.split(open_, 1)[1].split(close, 1)[0].strip()
    parts[part] = text.strip()
    inner = "\n\n".join(
        f"<!-- {area}.{name}:start -->\n{parts[name]}\n<!-- {area}.{name}:end -->"
        for name in names
        if name in parts
    )
    write_section(area, f"## {area}\n\n{inner}", path)
