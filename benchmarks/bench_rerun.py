"""Rerun: the fixed overhead (container start + kernel ready + result back) for 1, 100 and 400
trivial cells as whole ``jupyter envpack run --image`` processes, where the time goes (progress
events, in-process), and 400 cells against papermill's defaults on a local kernel."""

from __future__ import annotations

import itertools
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import BASE_IMAGE, process_median, row, user_venv, write_notebook

from jupyter_envpack.events import ProgressEvent
from jupyter_envpack.execute import RunOptions, run_notebook
from jupyter_envpack.image import BuildOptions, build_image
from jupyter_envpack.snapshot import take_snapshot


def breakdown(image: str, nb: Path, out: Path) -> str:
    """Seconds from one progress stage to the next, in-process (no interpreter start)."""
    marks: list[tuple[float, str]] = [(time.perf_counter(), "start")]

    def reporter(e: ProgressEvent) -> None:
        marks.append((time.perf_counter(), f"{e.stage}:{e.message[:30]}"))

    run_notebook(image, nb, RunOptions(output=str(out)), reporter)
    marks.append((time.perf_counter(), "end"))
    steps = [
        f"{b[1]} {b[0] - a[0]:.2f}" for a, b in itertools.pairwise(marks) if b[0] - a[0] > 0.05
    ]
    return f"in-process {marks[-1][0] - marks[0][0]:.2f} s: " + "; ".join(steps)


def main() -> None:
    venv = user_venv()
    with tempfile.TemporaryDirectory() as tmp:
        nbs = {
            n: write_notebook(
                Path(tmp) / f"cells{n}.ipynb", [f"x = {i}\nx + 1" for i in range(n)], execute=True
            )
            for n in (1, 100, 400)
        }
        image = build_image(
            take_snapshot(nbs[1], python=sys.executable),
            nbs[1],
            BuildOptions(base_image=BASE_IMAGE),
        ).image
        times = {}
        for n, nb in nbs.items():
            out = str(Path(tmp) / f"ep{n}.ipynb")
            cmd = [
                str(venv / "jupyter"),
                "envpack",
                "run",
                str(nb),
                "--image",
                image,
                "--output",
                out,
                "-q",
            ]
            times[n], code, err = process_median(cmd, 3)
            assert code == 0, err
        per_cell = (times[400] - times[1]) / 399
        for n in (1, 100, 400):
            note = f"per cell {per_cell * 1000:.1f} ms"
            if n == 1:
                note += "; " + breakdown(image, nbs[1], Path(tmp) / "bd.ipynb")
            row(
                f"rerun {n} trivial cells, CLI process, image cached",
                None,
                times[n],
                "fixed overhead <= 1.5 s",
                times[1] <= 1.5 if n == 1 else None,
                note=note,
            )
        start = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "papermill",
                str(nbs[400]),
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
        row(
            "rerun 400 trivial cells: papermill (local kernel) vs envpack CLI (container)",
            papermill,
            times[400],
            ">= 5x",
            papermill / times[400] >= 5,
        )


if __name__ == "__main__":
    main()
