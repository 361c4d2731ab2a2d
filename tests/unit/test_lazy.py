"""Stage packages export functions lazily, even where a submodule has the same name."""

import subprocess
import sys


def test_exported_functions_are_functions_not_submodules():
    code = (
        "import sys\n"
        "from georay.curate import fit, score\n"
        "from georay.train import train\n"
        "from georay.evaluate import evaluate\n"
        "assert all(callable(f) and not isinstance(f, type(sys)) for f in (fit, score, train, evaluate))\n"
        "import georay.curate\n"
        "assert georay.curate.fit is fit\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_help_does_not_import_torch():
    code = "import sys, georay.cli as c; c.build_parser(); assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
