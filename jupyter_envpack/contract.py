"""The image contract: what every envpack image promises to whoever runs it, declared once.

The Dockerfile writer (``image/dockerfile.py``), the local runner (``execute/run.py``), the venv
engine and every cluster backend read these names from here. The in-image runner
(``execute/_runner_script.py``) runs inside the image with no access to this package, so it keeps
its own copy of the markers, the parameters variable and the exit codes; a unit test
(``tests/unit/test_contract.py``) fails when the two disagree.
"""

from __future__ import annotations

LABEL = "org.jupyter.envpack"
"""Every object envpack creates carries ``LABEL=1`` and ``LABEL.kind`` (``build``, ``run``, ``job``…)."""

USER_ID = 1000
"""The image's unprivileged user and group id; every container runs as ``USER_ID:USER_ID``."""
HOME = "/home/envpack"
WORKDIR = f"{HOME}/work"
RUNNER_PREFIX = "/opt/envpack/runner"
"""The runner's own venv (nbclient, ipykernel's client side), apart from the notebook's env."""
RUNNER_PYTHON = f"{RUNNER_PREFIX}/bin/python"
RUNNER_SCRIPT = "/opt/envpack/run_notebook.py"

PARAMETERS_ENV = "ENVPACK_PARAMETERS_CELL"
"""Environment variable holding the source of the injected parameters cell."""

RESULT_BEGIN = "----- ENVPACK RESULT BEGIN -----"
RESULT_END = "----- ENVPACK RESULT END -----"
"""Markers around the gzip+base64 executed notebook that ``--emit-result`` prints to stdout."""

EXIT_OK = 0
EXIT_BAD_INPUT = 2
EXIT_CELL_ERROR = 3
EXIT_TIMEOUT = 4
EXIT_KERNEL_DIED = 5
EXIT_KERNEL_START = 6
"""The kernel never started in the image (no ipykernel, a broken environment): not the notebook."""
EXIT_KILLED = 137
"""Not the runner's own: the container was killed (SIGKILL, usually out of memory)."""

EXIT_REASONS = {
    EXIT_OK: "completed",
    EXIT_BAD_INPUT: "bad-input",
    EXIT_CELL_ERROR: "cell-error",
    EXIT_TIMEOUT: "cell-timeout",
    EXIT_KERNEL_DIED: "kernel-died",
    EXIT_KERNEL_START: "kernel-start",
    EXIT_KILLED: "killed-or-oom",
}
"""What the runner's exit code means, as stable reason slugs (``docs/core-api.md``)."""
NOTEBOOK_EXIT_CODES = (
    EXIT_BAD_INPUT,
    EXIT_CELL_ERROR,
    EXIT_TIMEOUT,
    EXIT_KERNEL_DIED,
    EXIT_KERNEL_START,
)
"""Exit codes that are the notebook's verdict: retrying the job cannot change them."""
