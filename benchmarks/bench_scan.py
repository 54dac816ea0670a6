"""Scan + pin of a generated 400-cell notebook vs pipreqs (same notebook, same run).

Also checks that envpack finds every distribution of a tricky-imports fixture (imports inside
functions and try blocks, %pip lines, importlib literals, a local helper module), and reports what
pipreqs found for the same fixture.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from _common import ratio_line, timed, write_notebook

from jupyter_envpack.snapshot import take_snapshot
from jupyter_envpack.snapshot.probe import probe_interpreter

MODULES = ["yaml", "requests", "dateutil", "docker", "nbformat", "jinja2", "packaging", "rich"]
TRICKY = [
    "%pip install PyYAML\nimport yaml",
    "def fetch():\n    import requests\n    return requests",
    "try:\n    from dateutil import parser\nexcept ImportError:\n    parser = None",
    "import importlib\nj2 = importlib.import_module('jinja2')",
    "x = __import__('rich')",
    "if True:\n    from packaging.version import Version",
    "!pip install docker\nimport docker as d",
    "import helper_mod",
]
EXPECTED = {
    "pyyaml",
    "requests",
    "python-dateutil",
    "jinja2",
    "rich",
    "packaging",
    "docker",
    "nbformat",
}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "big"
        cells = [
            f"import {MODULES[i % len(MODULES)]}\nx{i} = {i} * 2\nprint(x{i})" for i in range(400)
        ]
        nb = write_notebook(folder / "big.ipynb", cells)
        probe_interpreter(sys.executable)  # warm the probe cache, as a second snapshot would

        def ours() -> None:
            take_snapshot(nb, python=sys.executable)

        def pipreqs() -> None:
            subprocess.run(
                [
                    "pipreqs",
                    "--scan-notebooks",
                    "--use-local",
                    "--print",
                    "--mode",
                    "no-pin",
                    str(folder),
                ],
                check=True,
                capture_output=True,
            )

        base, mine = timed(pipreqs), timed(ours)
        print(ratio_line("scan+pin 400 cells", base, mine, ">= 20x"))

        tricky = Path(tmp) / "tricky"
        (tricky / "helper_mod.py").parent.mkdir(parents=True)
        (tricky / "helper_mod.py").write_text("import nbformat\n")
        write_notebook(tricky / "tricky.ipynb", TRICKY)
        spec = take_snapshot(tricky / "tricky.ipynb", python=sys.executable)
        found = {p.name.lower() for p in spec.packages if p.requested}
        proc = subprocess.run(
            [
                "pipreqs",
                "--scan-notebooks",
                "--use-local",
                "--print",
                "--mode",
                "no-pin",
                str(tricky),
            ],
            capture_output=True,
            text=True,
        )
        theirs = {ln.strip().lower() for ln in proc.stdout.splitlines() if ln.strip()}
        print(
            f"tricky fixture: envpack found {len(EXPECTED & found)}/{len(EXPECTED)} "
            f"(missing: {sorted(EXPECTED - found) or 'none'}); pipreqs found "
            f"{len(EXPECTED & theirs)}/{len(EXPECTED)} (missing: {sorted(EXPECTED - theirs)}; "
            f"exit {proc.returncode}: {(proc.stderr.strip().splitlines() or [''])[-1][:120]})"
        )


if __name__ == "__main__":
    main()
