"""The result block: how the executed notebook travels back to the host through a log.

The in-image runner (``_runner_script.py``) prints it, gzip + base64, between the markers of the
image contract (``contract.py``); this module finds and decodes it on the host, bounded.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable

from ..bounded import gunzip_capped
from ..contract import RESULT_BEGIN as BEGIN
from ..contract import RESULT_END as END
from ..errors import ResultTooLargeError, RunError

MAX_RESULT_BYTES = 200 * 2**20
#: base64 of a result that gzip could not shrink at all, with its line breaks
MAX_BLOB_CHARS = MAX_RESULT_BYTES * 4 // 3 + MAX_RESULT_BYTES // 57 + 1024
_LOG_PREFIX = re.compile(r"^\S+Z ")  # docker logs --timestamps prefix


def extract_result(log_text: str) -> str:
    """Decode the executed notebook a job printed between the result markers."""
    return extract_result_lines(log_text.splitlines())


def extract_result_lines(lines: Iterable[str]) -> str:
    """Decode the result block of a log read line by line (the last block wins).

    Only the block is kept in memory, at most :data:`MAX_BLOB_CHARS`; its decompressed size is
    capped at :data:`MAX_RESULT_BYTES` while it is inflated (a gzip bomb stops there, RELIABILITY
    L6).
    """
    blob: list[str] | None = None
    found, size = None, 0
    for raw in lines:
        line = _LOG_PREFIX.sub("", raw).strip()
        if line == BEGIN:
            blob, size = [], 0
        elif line == END and blob is not None:
            found, blob = blob, None
        elif blob is not None:
            size += len(line)
            if size > MAX_BLOB_CHARS:
                raise ResultTooLargeError("the job's result is too large")
            blob.append(line)
    if found is None:
        raise RunError(
            "the job's log holds no result (it did not finish, or its log was cut)",
            reason="no-result",
        )
    try:
        packed = base64.b64decode("".join(found), validate=True)
        data = gunzip_capped(packed, MAX_RESULT_BYTES, "the job's result")
    except (ValueError, binascii.Error):
        raise RunError("the job's result is corrupt", reason="no-result") from None
    return data.decode("utf-8", "replace")
