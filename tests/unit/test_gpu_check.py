"""benchmarks.gpu_check runs with nothing installed but torch, transformers, peft (+ torchvision).

The quick CPU path runs in a subprocess whose ``sys.path`` holds only the repo root and the
dependency closure of those packages (``python -S``: no site-packages), the way a bare GPU
machine would have them; georay is not installed there either.
"""

from __future__ import annotations

import importlib.metadata as metadata
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# transformers 5's Qwen2VLProcessor cannot be built without torchvision (its video processor
# needs it), so torchvision (and its pillow) belong to the bare set.
BARE = ("torch", "transformers", "peft", "torchvision")

RUNNER = """
import runpy, sys
sys.argv = ["gpu_check", "--device", "cpu", "--quick"]
try:
    runpy.run_module("benchmarks.gpu_check", run_name="__main__")
except SystemExit as exit_:
    assert not exit_.code, exit_.code
print("IMPORTED:", sorted({m.split(".")[0] for m in sys.modules}))
"""


def dependency_closure(roots: tuple[str, ...], folder: Path) -> set[str]:
    """Symlink the installed files of ``roots`` and all they require into ``folder``."""
    todo, seen = list(roots), set()
    while todo:
        name = re.split(r"[ ;<>=!~\[(]", todo.pop())[0].lower().replace("_", "-")
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # an optional or platform-specific requirement that is not installed
        if name in seen:
            continue
        seen.add(name)
        todo += [req for req in dist.requires or [] if "extra ==" not in req]
        for top in {f.parts[0] for f in dist.files or []} - {"..", "__pycache__", "bin"}:
            source, target = Path(dist.locate_file(top)), folder / top
            if source.exists() and not target.exists():
                target.symlink_to(source)
    return seen


@pytest.mark.slow  # ~1 min on 2 shared cores
def test_quick_cpu_path_prints_the_table_with_only_torch_transformers_peft(tmp_path):
    packages = dependency_closure(BARE, tmp_path)
    assert not packages & {"ray", "open-clip-torch", "pyarrow", "h3", "shapely"}
    out = subprocess.run(
        [sys.executable, "-S", "-c", RUNNER],
        cwd=ROOT,
        env={"PYTHONPATH": f"{ROOT}:{tmp_path}", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| model |"))
    columns = [c.strip() for c in lines[header].strip("|").split("|")]
    assert columns == ["model", "row", "batch", "throughput", "time/call s", "peak mem GiB", "MFU"]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[header + 2 :]]
    rows = [r for r in rows if len(r) == len(columns)]
    assert [r[1] for r in rows] == ["train LoRA", "train LoRA + grad ckpt"] + 3 * ["generate 4 tok"]
    assert [r[2] for r in rows[2:]] == ["1", "8", "32"]
    assert all(r[3].endswith(("tok/s", "img/s")) and float(r[4]) > 0 for r in rows)
    imported = next(line for line in lines if line.startswith("IMPORTED:"))
    for module in ("ray", "open_clip", "pyarrow", "h3", "shapely"):
        assert f"'{module}'" not in imported
