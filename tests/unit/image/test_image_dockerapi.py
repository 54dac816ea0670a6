"""The docker-py adapter (``image/dockerapi.py``) fails here, loudly, when docker-py changes.

Every private docker-py name the adapter touches is pinned (it exists, with the parameters the
adapter passes), and each is used once against the real engine: a streaming call is aborted
from another thread, a task's log is asked for, two engines' keys differ.
"""

from __future__ import annotations

import inspect
import threading
import time
from typing import Any

import docker
import docker.errors
import pytest
from docker.types import CancellableStream

from jupyter_envpack.image import dockerapi
from jupyter_envpack.image.dockerapi import StreamSlot, engine_key, task_logs, watch_streams
from jupyter_envpack.image.engine import connect


@pytest.mark.parametrize(("name", "params"), sorted(dockerapi.PRIVATE.items()))
def test_every_private_name_is_pinned(name: str, params: tuple[str, ...]) -> None:
    owner, _, attr = name.partition(".")
    method = getattr(getattr(docker, owner), attr, None)
    assert method is not None, f"docker-py {docker.__version__} has no {name}: update dockerapi.py"
    found = tuple(inspect.signature(method).parameters)[: len(params)]
    assert found == params, f"docker-py {docker.__version__} changed {name}{found}"


def test_the_public_canceller_is_still_there() -> None:
    assert tuple(inspect.signature(CancellableStream.__init__).parameters) == (
        "self",
        "stream",
        "response",
    )
    assert callable(CancellableStream.close)


@pytest.mark.reliability("F10")
def test_a_blocked_stream_is_aborted_from_another_thread(docker_client: Any) -> None:
    """``events`` never ends by itself: only the abort can stop the reader."""
    api = watch_streams(connect().api)  # a client of its own: the session's stays unwrapped
    assert watch_streams(api) is api  # wrapped once
    slot = StreamSlot()
    ended = threading.Event()

    def read() -> None:
        with slot:
            for _ in api.events(decode=True, since=int(time.time()) + 3600):
                pass
        ended.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + 10
    while slot.response is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert slot.response is not None, "the hook did not see the streaming response"
    assert not ended.wait(0.5), "the stream ended before the abort"
    started = time.monotonic()
    slot.abort()
    assert ended.wait(5), "the abort did not stop the blocked reader"
    assert time.monotonic() - started < 5


def test_an_unused_slot_aborts_nothing() -> None:
    StreamSlot().abort()  # before the call started: no response, no error


def test_task_logs_reach_the_engine(docker_client: Any) -> None:
    with pytest.raises(docker.errors.APIError) as info:
        task_logs(docker_client.api, "0" * 25)
    assert info.value.status_code in (404, 503)  # no such task / not a swarm manager


def test_engine_keys_tell_unix_sockets_apart(docker_client: Any) -> None:
    key = engine_key(docker_client.api)
    assert key.startswith(str(docker_client.api.base_url))
    if key.startswith("http+docker://"):
        assert key.split("|", 1)[1].endswith(".sock")
        other = docker.APIClient(base_url="unix:///nonexistent/other.sock", version="1.41")
        assert engine_key(other) != key
