"""Reading what containers hand back, with a cap on every byte (RELIABILITY L6).

A container is untrusted: its archive, its log and its compressed result may be a gzip bomb, a
sparse file made huge with ``truncate``, or a gigabyte of log lines. These helpers stream, stop at
a limit and raise :class:`~.errors.ResultTooLargeError` (reason ``too-large``) naming it.
"""

from __future__ import annotations

import io
import tarfile
import zlib
from collections.abc import Iterable, Iterator

from .errors import ResultTooLargeError

MiB = 2**20


def too_large(what: str, limit: int) -> ResultTooLargeError:
    """The error for ``what`` passing ``limit`` bytes (with the fix in its hint)."""
    return ResultTooLargeError(
        f"{what} is larger than {limit // MiB} MiB; envpack stopped reading it",
        hint="make the notebook's outputs smaller (clear large outputs, write data to files)",
    )


def read_capped(chunks: Iterable[bytes], limit: int, what: str) -> bytes:
    """Join ``chunks`` (an engine stream); raise :class:`ResultTooLargeError` past ``limit`` bytes.

    Parameters
    ----------
    chunks
        The stream; it is closed (when it can be) as soon as the limit is passed.
    limit
        Largest number of bytes accepted.
    what
        Names the data in the error.
    """
    buf = io.BytesIO()
    for chunk in chunks:
        buf.write(chunk)
        if buf.tell() > limit:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
            raise too_large(what, limit)
    return buf.getvalue()


def untar_first_file(data: bytes, limit: int, what: str) -> bytes | None:
    """The first regular file of the tar ``data`` (at most ``limit`` bytes), or None."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
        for member in tar:
            if not member.isfile():
                continue
            if member.size > limit:
                raise too_large(what, limit)
            fh = tar.extractfile(member)
            return fh.read(limit + 1) if fh is not None else None
    return None


def _inflated_size(data: bytes, limit: int) -> int:
    """Bytes that ``data`` inflates to, counted 1 MiB at a time and given up past ``limit``."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    size, pending = 0, data
    while pending and size <= limit:
        size += len(inflater.decompress(pending, MiB))
        pending = inflater.unconsumed_tail
    if size <= limit:
        size += len(inflater.flush())  # at most a window's worth still inside zlib
        if not inflater.eof:
            raise ValueError("truncated gzip stream")
    return size


def gunzip_capped(data: bytes, limit: int, what: str) -> bytes:
    """Decompress gzip ``data`` without ever holding more than ``limit`` bytes of output.

    The size is counted first in 1 MiB steps, so a gzip bomb costs 1 MiB of memory, not
    ``limit``.

    Raises
    ------
    ResultTooLargeError
        The output would pass ``limit`` (a gzip bomb).
    ValueError
        ``data`` is not gzip, or is cut short.
    """
    try:
        if _inflated_size(data, limit) > limit:
            raise too_large(what, limit)
        return zlib.decompress(data, 16 + zlib.MAX_WBITS)
    except zlib.error as exc:
        raise ValueError(str(exc)) from None


def lines_capped(chunks: Iterable[bytes], limit: int) -> Iterator[str]:
    """Decoded lines of a byte stream; stops (with a final marker line) after ``limit`` bytes.

    Lines longer than 64 KiB are cut: a line that never ends cannot fill the memory either.
    """
    seen = 0
    pending = b""
    for chunk in chunks:
        seen += len(chunk)
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for raw in complete:
            yield raw[: 64 * 1024].decode("utf-8", "replace")
        pending = pending[: 64 * 1024]
        if seen > limit:
            yield f"[envpack: the log passed {limit // MiB} MiB; the rest was not read]"
            return
    if pending:
        yield pending.decode("utf-8", "replace")
