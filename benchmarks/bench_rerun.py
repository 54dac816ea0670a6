"""Rerun of 400 trivial cells: envpack (nbclient in the image) vs papermill defaults (here)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import BASE_IMAGE, ratio_line, write_notebook

from jupyter_envpack.execute import RunOptions, run_notebook
from jupyter_envpack.image import BuildOptions, build_image
from jupyter_envpack.snapshot import take_snapshot


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        nb = write_notebook(
            Path(tmp) / "cells400.ipynb", [f"x = {i}\nx + 1" for i in range(400)], execute=True
        )
        image = build_image(
            take_snapshot(nb, python=sys.executable), nb, BuildOptions(base_image=BASE_IMAGE)
        ).image
        start = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "papermill",
                str(nb),
                str(Path(tmp) / "pm.ipynb"),
                "--kernel",
                "python3",
                "--log-level",
                "ERROR",
            ],
            check=True,
            capture_output=True,
        )
        papermill = time.perf_counter() - start
        start = time.perf_counter()
        result = run_notebook(image, nb, RunOptions(output=str(Path(tmp) / "ep.ipynb")))
        ours = time.perf_counter() - start
        assert result.report.reproduced, result.report.summary
        print(
            ratio_line(
                "rerun 400 trivial cells (papermill local vs envpack in container)",
                papermill,
                ours,
                ">= 5x",
            )
        )


if __name__ == "__main__":
    main()
