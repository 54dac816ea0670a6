"""The in-image runner's contract, seen from the host: script path, markers, exit codes."""

from __future__ import annotations

import base64
import gzip
import re

from ..errors import RunError

BEGIN = "----- ENVPACK RESULT BEGIN -----"
END = "----- ENVPACK RESULT END -----"
EXIT_OK, EXIT_BAD_INPUT, EXIT_CELL_ERROR, EXIT_TIMEOUT, EXIT_KERNEL_DIED = 0, 2, 3, 4, 5
EXIT_KERNEL_START = 6
"""The kernel never started in the image (no ipykernel, a broken environment): not the notebook."""
MAX_RESULT_BYTES = 200 * 2**20
_LOG_PREFIX = re.compile(r"^\S+Z ")  # docker logs --timestamps prefix


def extract_result(log_text: str) -> str:
    """Decode the executed notebook a job printed between the result markers."""
    lines = [_LOG_PREFIX.sub("", ln).strip() for ln in log_text.splitlines()]
    try:
        start = max(i for i, ln in enumerate(lines) if ln == BEGIN)
        end = next(i for i in range(start, len(lines)) if lines[i] == END)
    except (ValueError, StopIteration):
        raise RunError(
            "the job's log holds no result (it did not finish, or its log was cut)",
            reason="no-result",
        ) from None
    blob = "".join(lines[start + 1 : end])
    try:
        data = gzip.decompress(base64.b64decode(blob, validate=True))
    except (ValueError, OSError, EOFError):
        raise RunError("the job's result is corrupt", reason="no-result") from None
    if len(data) > MAX_RESULT_BYTES:
        raise RunError("the job's result is too large", reason="no-result")
    return data.decode("utf-8")
