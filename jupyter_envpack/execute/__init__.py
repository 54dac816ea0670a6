"""Execute: rerun a notebook inside its image and report what reproduced."""

from __future__ import annotations

from .compare import CellResult, Report, compare_notebooks
from .run import RunOptions, RunResult, run_notebook

__all__ = ["CellResult", "Report", "RunOptions", "RunResult", "compare_notebooks", "run_notebook"]
