"""REST handlers under ``/envpack`` (see docs/api.md for the wire format).

Every verb is ``@tornado.web.authenticated`` then ``@authorized`` on the ``envpack`` resource
(build/run/job submissions count as ``execute``). Errors are mapped once, in
:class:`EnvpackHandler`: an ``EnvpackError`` becomes its ``.status`` with its ``.to_json()``, any
other exception a 500 without traceback. Blocking work (SQLite, kernel probes, Docker) runs in
thread pools, never on the IOLoop.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from jupyter_server.utils import url_path_join
from tornado import web
from tornado.iostream import StreamClosedError

from ..errors import EnvpackError, ForbiddenError, InputError
from ..operations import STATES, Event, OperationManager, scrub_path
from .schema import (
    BINDER_FIELDS,
    RECONSTRUCT_FIELDS,
    check_fields,
    kernel_name,
    parse_json_object,
    parse_operation_request,
)
from .service import EnvpackService
from .sharing import backends_json, binder_json, flag, write_binder_json

T = TypeVar("T")
AUTH_RESOURCE = "envpack"
EVENT_PAGE = 500
KEEPALIVE = 15.0
SSE_TYPE = "text/event-stream; charset=utf-8"


class EnvpackHandler(ExtensionHandlerMixin, APIHandler):
    """Base of every envpack handler: JSON errors, the service, thread-pool helpers."""

    auth_resource = AUTH_RESOURCE

    @property
    def service(self) -> EnvpackService:
        """The extension's shared state (config, store, manager, paths, pools)."""
        service: EnvpackService = self.settings["envpack_service"]
        return service

    async def blocking(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn`` in the service's thread pool and await its result."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.service.pool, partial(fn, *args, **kwargs))

    def may_execute(self) -> bool:
        """Whether the user may start processes (``execute`` on ``envpack``): a read-only user's
        GET never probes a kernel (RELIABILITY L2)."""
        return bool(
            self.authorizer.is_authorized(self, self.current_user, "execute", AUTH_RESOURCE)
        )

    def require_execute(self, what: str) -> None:
        """403 unless the user may start processes: ``what`` starts the kernel's interpreter."""
        if not self.may_execute():
            raise ForbiddenError(
                f"{what} starts the kernel's interpreter, which needs the 'execute' permission "
                "on envpack",
                hint="ask the server's administrator for it; the Binder link needs no permission",
            )

    def write_json(self, data: Any, status: int = 200) -> None:
        """Finish with ``data`` as JSON."""
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data))

    def _handle_request_exception(self, e: BaseException) -> None:
        if isinstance(e, EnvpackError) and not self._finished:
            self.log.info(
                "envpack: %s %s -> %s %s",
                self.request.method,
                self.request.path,
                e.status,
                e.reason,
            )
            self.send_error(e.status, exc_info=(type(e), e, e.__traceback__))
            return
        super()._handle_request_exception(e)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Write ``{"error", "reason", "message", "hint"}`` — never a traceback or a path."""
        self.set_header("Content-Type", "application/json")
        exc = (kwargs.get("exc_info") or (None, None, None))[1]
        if isinstance(exc, EnvpackError):
            reply: dict[str, Any] = {
                k: scrub_path(v, self.service.paths.root_dir) if isinstance(v, str) else v
                for k, v in exc.to_json().items()
            }
        elif isinstance(exc, web.HTTPError):
            reply = {
                "error": "HTTPError",
                "reason": _slug(status_code),
                "message": exc.log_message or self._reason,
                "hint": None,
            }
        else:
            reply = {
                "error": "InternalError",
                "reason": "internal",
                "message": "internal error (details are in the server log)",
                "hint": None,
            }
        self.finish(json.dumps(reply))

    def query_path(self) -> str:
        """The required ``?path=`` argument."""
        path = self.get_query_argument("path", None)
        if not path:
            raise InputError(
                "the query argument 'path' is required",
                hint="a notebook path relative to the server root",
            )
        return path

    def require_manager(self) -> OperationManager:
        """The operation manager (503 when the database could not be opened)."""
        return self.service.require_manager()


def _slug(status: int) -> str:
    return {
        400: "invalid-input",
        403: "forbidden",
        404: "not-found",
        405: "method-not-allowed",
        409: "conflict",
        413: "too-large",
    }.get(status, "error")


def _reconstruct_query(handler: APIHandler) -> dict[str, Any]:
    """``reconstruct=1&as_of=YYYY-MM-DD`` of a GET (400 for a malformed date)."""
    value = {
        "reconstruct": flag(handler.get_query_argument("reconstruct", None)),
        "as_of": handler.get_query_argument("as_of", None),
    }
    return check_fields(value, RECONSTRUCT_FIELDS, "query")


class SnapshotHandler(EnvpackHandler):
    """``GET /envpack/snapshot?path=&kernel=&reconstruct=&as_of=`` → the snapshot JSON of the
    core (``reconstruct=1``: an educated reconstruction, ``origin: "reconstructed"``)."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        path = self.query_path()
        self.require_execute("a snapshot")
        kernel = self.get_query_argument("kernel", None)
        recon = _reconstruct_query(self)
        data = await self.blocking(self.service.snapshot_json, path, kernel, recon)
        self.write_json(data)


class DockerfileHandler(EnvpackHandler):
    """``GET /envpack/dockerfile?path=&kernel=&base_image=&reconstruct=&as_of=`` → the
    Dockerfile text."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        path = self.query_path()
        self.require_execute("a Dockerfile (it needs a snapshot)")
        kernel = self.get_query_argument("kernel", None)
        base_image = self.get_query_argument("base_image", None)
        recon = _reconstruct_query(self)
        text = await self.blocking(self.service.dockerfile, path, kernel, base_image, recon)
        self.finish(text, set_content_type="text/plain; charset=utf-8")


class BinderHandler(EnvpackHandler):
    """``GET /envpack/binder?path=&host=&ref=&branch=&kernel=&snapshot=`` → link, badges and
    warnings (``snapshot`` only for users who may ``execute``: no kernel probe for read-only
    users); ``POST /envpack/binder {"path", "kernel"?}`` → writes the ``binder/`` folder."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        path = self.query_path()
        kernel = kernel_name(self.service.config, self.get_query_argument("kernel", None))
        data = await self.blocking(
            binder_json,
            self.service.paths,
            path,
            kernel=kernel,
            host=self.get_query_argument("host", None) or self.service.config.binder_host,
            ref=self.get_query_argument("ref", None),
            branch=flag(self.get_query_argument("branch", None)),
            snapshot=flag(self.get_query_argument("snapshot", "1")) and self.may_execute(),
        )
        self.write_json(data)

    @web.authenticated
    @authorized(action="write")  # type: ignore[untyped-decorator]  # jupyter_server's typing
    async def post(self) -> None:
        if len(self.request.body) > self.service.config.max_request_body:
            raise web.HTTPError(413, "request body too large")
        path, kernel = parse_binder_request(self.request.body)
        data = await self.blocking(
            write_binder_json,
            self.service.paths,
            path,
            kernel=kernel_name(self.service.config, kernel),
        )
        self.write_json(data)


def parse_binder_request(body: bytes) -> tuple[str, str | None]:
    """Return ``(path, kernel)`` from a ``POST /envpack/binder`` body (400 when malformed)."""
    data = check_fields(parse_json_object(body), BINDER_FIELDS, "binder request", ("path",))
    return data["path"], data.get("kernel")


class OperationsHandler(EnvpackHandler):
    """``GET /envpack/operations`` (list) and ``POST /envpack/operations`` (submit)."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        manager = self.require_manager()
        kind = self.get_query_argument("kind", None)
        state = self.get_query_argument("state", None)
        if state is not None and state not in STATES:
            raise InputError(f"unknown state {state[:40]!r}", hint=f"one of: {', '.join(STATES)}")
        if kind is not None and kind not in manager.kinds:
            raise InputError(f"unknown kind {kind[:40]!r}")
        try:
            limit = int(self.get_query_argument("limit", "100"))
        except ValueError:
            raise InputError("limit must be an integer") from None
        limit = max(1, min(limit, 1000))
        ops = await self.blocking(manager.store.find, kind=kind, state=state, limit=limit)
        self.write_json({"operations": [op.to_json() for op in ops]})

    @web.authenticated
    @authorized(action="execute")  # type: ignore[untyped-decorator]  # jupyter_server's typing
    async def post(self) -> None:
        manager = self.require_manager()
        if len(self.request.body) > self.service.config.max_request_body:
            raise web.HTTPError(413, "request body too large")
        kind, path, options = parse_operation_request(self.request.body)
        if kind not in manager.kinds:
            raise InputError(
                f"unknown operation kind {kind[:40]!r}", hint=f"one of: {', '.join(manager.kinds)}"
            )
        await self.blocking(self.service.paths.notebook, path)
        op, created = await self.blocking(manager.submit, kind, path, options)
        self.set_header("Location", url_path_join(self.base_url, "envpack/operations", op.id))
        self.write_json(op.to_json(), status=202 if created else 200)


class OperationHandler(EnvpackHandler):
    """``GET /envpack/operations/<id>`` and ``DELETE`` (cancel)."""

    @web.authenticated
    @authorized
    async def get(self, op_id: str) -> None:
        manager = self.require_manager()
        op = await self.blocking(manager.get, op_id)
        self.write_json(op.to_json())

    @web.authenticated
    @authorized
    async def delete(self, op_id: str) -> None:
        manager = self.require_manager()
        before = await self.blocking(manager.get, op_id)
        op = await self.blocking(manager.cancel, op_id)
        self.write_json(op.to_json(), status=200 if before.state == "cancelled" else 202)


class EventsHandler(EnvpackHandler):
    """``GET /envpack/operations/<id>/events``: server-sent events, or one JSON page.

    Resume with ``Last-Event-ID`` (EventSource does it by itself) or ``?after=<seq>``.
    ``?format=json`` (or ``Accept: application/json``) returns ``{"events", "last", "done"}``.
    """

    _gone = False
    _wake: asyncio.Event | None = None

    def on_connection_close(self) -> None:
        """The client went away: stop following at once (not at the next keep-alive)."""
        self._gone = True
        if self._wake is not None:
            self._wake.set()

    def _after(self) -> int:
        raw = self.get_query_argument("after", None) or self.request.headers.get("Last-Event-ID")
        try:
            after = int(raw) if raw not in (None, "") else 0
        except ValueError:
            raise InputError("'after' must be an event sequence number") from None
        if after < 0:
            raise InputError("'after' must not be negative")
        return after

    def _wants_json(self) -> bool:
        if self.get_query_argument("format", None) == "json":
            return True
        accept = self.request.headers.get("Accept", "")
        return "application/json" in accept and "text/event-stream" not in accept

    @web.authenticated
    @authorized
    async def get(self, op_id: str) -> None:
        manager = self.require_manager()
        after = self._after()
        op = await self.blocking(manager.get, op_id)
        if self._wants_json():
            events = await self.blocking(manager.store.events, op_id, after, EVENT_PAGE)
            self.write_json(
                {
                    "events": [e.to_json() for e in events],
                    "last": events[-1].seq if events else after,
                    "state": op.state,
                    "done": op.finished and len(events) < EVENT_PAGE,
                }
            )
            return
        await self._stream(manager, op_id, after)

    async def _stream(self, manager: OperationManager, op_id: str, after: int) -> None:
        self.set_header("Content-Type", SSE_TYPE)
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")
        loop = asyncio.get_running_loop()
        wake = self._wake = asyncio.Event()

        def notify() -> None:  # called from worker threads
            loop.call_soon_threadsafe(wake.set)

        unsubscribe = manager.subscribe(op_id, notify)
        try:
            self.write("retry: 2000\n\n")
            await self.flush()
            while not self._gone:
                wake.clear()
                op = await self.blocking(manager.get, op_id)  # before the events: see below
                events = await self.blocking(manager.store.events, op_id, after, EVENT_PAGE)
                for event in events:
                    self.write(sse_frame(event))
                    after = event.seq
                await self.flush()
                if len(events) == EVENT_PAGE:
                    continue
                if op.finished:  # finished before we read: its last state event was included
                    self.write(f"event: end\ndata: {json.dumps({'state': op.state})}\n\n")
                    break
                try:
                    await asyncio.wait_for(wake.wait(), KEEPALIVE)
                except asyncio.TimeoutError:
                    self.write(": keep-alive\n\n")
        except StreamClosedError:
            return
        finally:
            unsubscribe()
        if not self._gone:
            self.finish(set_content_type=SSE_TYPE)


def sse_frame(event: Event) -> str:
    """Return one server-sent-events frame (``id``, ``event`` and one ``data`` line)."""
    return f"id: {event.seq}\nevent: {event.type}\ndata: {json.dumps(event.to_json())}\n\n"


def venv_available() -> bool:
    """Whether ``run`` with ``engine: "venv"`` can work here (the sidebar's no-engine button)."""
    from ..execute.venv import venv_available as available

    return available()


class StatusHandler(EnvpackHandler):
    """``GET /envpack/status``: engine reachability, swarm, versions, queue, database."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        engine = await self.blocking(self.service.engine_status)
        status = await self.blocking(self.service.status)  # reads SQLite: not on the IOLoop
        backends = await self.blocking(backends_json, self.service.config, status["kinds"])
        self.write_json(
            {
                **status,
                "engine": engine,
                "venv_available": await self.blocking(venv_available),
                "backends": backends,
                "default_backend": self.service.config.default_backend,
            }
        )


_ID = r"(?P<op_id>[^/]+)"


def make_handlers() -> list[tuple[str, type]]:
    """Return the ``(pattern, handler)`` pairs (the ExtensionApp prefixes ``base_url``)."""
    return [
        (r"/envpack/snapshot", SnapshotHandler),
        (r"/envpack/dockerfile", DockerfileHandler),
        (r"/envpack/binder", BinderHandler),
        (r"/envpack/operations", OperationsHandler),
        (rf"/envpack/operations/{_ID}", OperationHandler),
        (rf"/envpack/operations/{_ID}/events", EventsHandler),
        (r"/envpack/status", StatusHandler),
    ]
