"""The docker-py adapter: the one module of envpack that reaches under docker-py's public API.

Three needs have no public docker-py API: aborting a streaming build from another thread, telling
two unix-socket engines apart (every one reads ``http+docker://localhost``), and reading the log
of one Swarm task. Everything else uses docker-py's public API.

Aborting a build. docker-py's ``APIClient.build(decode=True)`` returns a generator and keeps the HTTP response to
itself, so a build that hangs (engine silent, deadline passed, user cancelled) cannot be stopped
from another thread through public API. This adapter does two things, and nothing else:

* :func:`watch_streams` wraps ``APIClient._stream_helper`` (private: every streaming endpoint of
  docker-py hands its response to it) so that the :class:`StreamSlot` of the calling thread sees
  the response of the call it makes.
* :func:`abort` shuts that response's socket down through docker-py's own public
  :class:`docker.types.CancellableStream` (the object ``client.events()`` returns), which knows
  how to find the socket behind unix, tcp and ssh transports; a reader blocked on the stream then
  returns at once.

``tests/unit/image/test_image_dockerapi.py`` pins every private name used here (:data:`PRIVATE`) and
exercises each against the real engine, so a docker-py upgrade that moves one fails there,
loudly, instead of leaving builds that cannot be cancelled or sweeps without logs.
"""

from __future__ import annotations

import threading
from typing import Any

HOOK_ATTRIBUTE = "_stream_helper"
"""The private docker-py method :func:`watch_streams` wraps (pinned by a test)."""
PRIVATE = {
    "APIClient._stream_helper": ("self", "response", "decode"),
    "APIClient._get": ("self",),  # wrapped by docker-py: (self, *args, **kwargs)
    "APIClient._url": ("self", "pathfmt"),
    "APIClient._get_result_tty": ("self", "stream", "res", "is_tty"),
}
"""Each private ``docker.APIClient`` method used here and its leading parameters."""
_MARK = "_envpack_hooked"
_local = threading.local()


class StreamSlot:
    """Holds the HTTP response of the streaming call the owning thread makes while it is active.

    Use it as a context manager around the call; :meth:`abort` may then be called from any thread.
    """

    def __init__(self) -> None:
        self.response: Any = None

    def __enter__(self) -> StreamSlot:
        _local.slot = self
        return self

    def __exit__(self, *exc: object) -> None:
        _local.slot = None

    def abort(self) -> None:
        """Stop the stream the owner is reading (nothing to do before the call started)."""
        if self.response is not None:
            abort(self.response)


def watch_streams(api: Any) -> Any:
    """Return ``api`` (a ``docker.APIClient``) with its streaming responses visible to slots.

    Parameters
    ----------
    api
        The low-level client (``client.api``); wrapped once, later calls are no-ops.

    Returns
    -------
    docker.APIClient
        The same client.
    """
    if getattr(api, _MARK, False):
        return api
    original = getattr(api, HOOK_ATTRIBUTE)

    def _stream_helper(response: Any, decode: bool = False) -> Any:
        slot = getattr(_local, "slot", None)
        if slot is not None:
            slot.response = response
        return original(response, decode=decode)

    setattr(api, HOOK_ATTRIBUTE, _stream_helper)
    setattr(api, _MARK, True)
    return api


def abort(response: Any) -> None:
    """Shut down the socket under a streaming ``requests`` response from the engine.

    Parameters
    ----------
    response
        The response a streaming docker-py call is reading.
    """
    from docker.types import CancellableStream

    try:
        CancellableStream(iter(()), response).close()
    except Exception:
        try:
            response.close()
        except Exception:  # noqa: S110 - nothing more can be done
            pass


def engine_key(api: Any) -> str:
    """Return a key that tells engines apart, for per-engine caches.

    Parameters
    ----------
    api
        The low-level client (``client.api``).

    Returns
    -------
    str
        The base URL, plus the socket path for a unix socket (its URL never names the socket).
    """
    adapter = getattr(api, "_custom_adapter", None)  # private; absent: unix engines share a key
    return f"{getattr(api, 'base_url', '')}|{getattr(adapter, 'socket_path', '')}"


def task_logs(api: Any, task_id: str, tail: str = "all") -> bytes:
    """Return the stdout of one Swarm task (docker-py only reads a service's logs).

    Parameters
    ----------
    api
        The low-level client (``client.api``).
    task_id
        The task's id.
    tail
        ``"all"`` (the whole log), or how many of the last lines.

    Returns
    -------
    bytes
        The log, demultiplexed.
    """
    params = {"stdout": 1, "stderr": 0, "follow": 0, "tail": tail}
    response = api._get(api._url("/tasks/{0}/logs", task_id), params=params, stream=False)
    data: bytes = api._get_result_tty(False, response, False)
    return data
