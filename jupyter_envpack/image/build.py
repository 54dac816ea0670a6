"""Build an image through the Docker Engine API, streaming progress; cancel, deadline, idle watchdog.

The tag is content-addressed (:attr:`BuildContext.image`): when it exists, nothing is fetched or
built. Builds use ``rm=True, forcerm=True`` so no intermediate container survives, ``pull=False``
(local images first; the engine pulls what is missing), and ``use_config_proxy=False`` so proxy
credentials of ``~/.docker/config.json`` never land in a layer (RELIABILITY E3, F4).
"""

from __future__ import annotations

import re
import socket
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import BuildError, CancelledError, EngineError, InputError
from ..events import CancelToken, ProgressEvent, Reporter, null_reporter
from ..snapshot.spec import EnvSpec
from .basepin import pin_base_image
from .context import BuildContext, make_context
from .engine import base_labels, connect
from .options import UV_VERSION, BuildOptions
from .wheels import (
    DEFAULT_GLIBC_MINOR,
    cache_dir,
    detect_glibc_minor,
    ensure_wheels,
    redact,
    target_arch,
)
from .wheelserver import WheelServerBusy, build_host, forget_port, serve_wheels, served_url

_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
MAX_LINE = 64 * 1024
LOG_TAIL = 30


@dataclass
class BuildResult:
    """What :func:`build_image` produced."""

    image: str
    cached: bool
    duration: float
    tag_hash: str
    image_id: str | None = None
    base_image: str | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON form (REST results, ``--json``)."""
        return {
            "image": self.image,
            "cached": self.cached,
            "duration": round(self.duration, 3),
            "tag_hash": self.tag_hash,
            "image_id": self.image_id,
            "base_image": self.base_image,
        }


def clean_line(text: str) -> str:
    """A log line safe to show: no ANSI codes, no credentials, bounded length (RELIABILITY A7)."""
    text = _ANSI.sub("", text).rstrip("\n")
    if "\r" in text:
        text = text.rsplit("\r", 1)[-1]
    return redact(text)[:MAX_LINE]


def image_exists(client: Any, ref: str) -> bool:
    """True when the engine already has ``ref``."""
    import docker.errors

    try:
        client.api.inspect_image(ref)
    except docker.errors.ImageNotFound:
        return False
    except docker.errors.APIError as exc:
        raise EngineError(f"the Docker engine failed to inspect {ref}: {exc.explanation}") from None
    return True


class _Watchdog:
    """Aborts a streaming build on cancel, deadline or silence by shutting its socket down."""

    def __init__(self, cancel: CancelToken | None, deadline: float, idle: float) -> None:
        self.cancel = cancel
        self.deadline = time.monotonic() + deadline
        self.idle = idle
        self.last = time.monotonic()
        self.reason: str | None = None
        self.response: Any = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True, name="envpack-build-watch")

    def __enter__(self) -> _Watchdog:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=2)

    def beat(self) -> None:
        self.last = time.monotonic()

    def _watch(self) -> None:
        while not self._stop.wait(0.2):
            now = time.monotonic()
            if self.cancel is not None and self.cancel.cancelled:
                self.reason = "cancelled"
            elif now > self.deadline:
                self.reason = "deadline"
            elif now - self.last > self.idle:
                self.reason = "idle"
            if self.reason:
                self._abort()
                return

    def _abort(self) -> None:
        resp = self.response
        if resp is None:
            return
        try:
            sock = resp.raw._fp.fp.raw._sock  # the HTTP stream's socket (unix or tcp)
            sock.shutdown(socket.SHUT_RDWR)
        except Exception:
            try:
                resp.close()
            except Exception:  # noqa: S110 - nothing more can be done
                pass


_current = threading.local()


def _hook_streams(api: Any) -> Any:
    """Let the watchdog of the calling thread see the HTTP response of a streaming call."""
    if not getattr(api, "_envpack_hooked", False):
        original = api._stream_helper

        def _stream_helper(response: Any, decode: bool = False) -> Any:
            dog = getattr(_current, "dog", None)
            if dog is not None:
                dog.response = response
            return original(response, decode=decode)

        api._stream_helper = _stream_helper
        api._envpack_hooked = True
    return api


def _stream_build(
    client: Any,
    ctx: BuildContext,
    opts: BuildOptions,
    reporter: Reporter,
    cancel: CancelToken | None,
) -> str | None:
    tail: list[str] = []
    pending = ""
    step = "start"
    image_id: str | None = None
    labels = base_labels("build", opts.labels)
    with _Watchdog(cancel, opts.deadline, opts.idle_timeout) as dog:
        api = _hook_streams(client.api)
        _current.dog = dog
        try:
            stream = api.build(
                fileobj=ctx.tar(),
                custom_context=True,
                tag=ctx.image,
                rm=True,
                forcerm=True,
                pull=False,
                decode=True,
                labels=labels,
                nocache=opts.no_cache,
                use_config_proxy=False,
            )
            for chunk in stream:
                dog.beat()
                if not isinstance(chunk, dict):
                    continue
                if "errorDetail" in chunk or "error" in chunk:
                    detail = chunk.get("errorDetail") or {}
                    message = clean_line(str(detail.get("message") or chunk.get("error")))
                    raise _classify_failure(message, step, tail)
                if "aux" in chunk and isinstance(chunk["aux"], dict):
                    image_id = chunk["aux"].get("ID", image_id)
                text = chunk.get("stream") or chunk.get("status")
                if not text:
                    continue
                pending += str(text)
                if "\n" not in pending:
                    continue
                complete, _, pending = pending.rpartition("\n")
                for raw in complete.splitlines():
                    line = clean_line(raw)
                    if not line.strip():
                        continue
                    m = _STEP.match(line)
                    if m:
                        step = f"step {m.group(1)}/{m.group(2)}: {m.group(3)[:200]}"
                        reporter(
                            ProgressEvent("build", step, "step", int(m.group(1)) / int(m.group(2)))
                        )
                    else:
                        tail.append(line)
                        del tail[:-LOG_TAIL]
                        reporter(ProgressEvent("build", line, "log"))
        except BuildError:
            raise
        except BaseException as exc:
            if not isinstance(exc, Exception):  # Ctrl-C / SystemExit: close the stream so the
                dog.reason = "cancelled"  # engine cancels the build and removes its container
                dog._abort()
                raise
            if dog.reason is None:
                raise BuildError(
                    f"the Docker engine stopped answering during the build ({type(exc).__name__})",
                    step=step,
                    log_tail=tail,
                    reason="engine-restarted",
                    hint="check that dockerd is running, then build again",
                ) from None
        finally:
            _current.dog = None
        if dog.reason == "cancelled":
            raise CancelledError("build cancelled")
        if dog.reason == "deadline":
            raise BuildError(
                f"the build did not finish within {opts.deadline:.0f} s",
                step=step,
                log_tail=tail,
                reason="timeout",
            )
        if dog.reason == "idle":
            raise BuildError(
                f"the engine sent nothing for {opts.idle_timeout:.0f} s",
                step=step,
                log_tail=tail,
                reason="timeout",
            )
    return image_id


def _classify_failure(message: str, step: str, tail: list[str]) -> BuildError:
    low = message.lower()
    hint = None
    reason = "build-failed"
    if (
        "pull access denied" in low
        or "manifest unknown" in low
        or ("not found" in low and ("repository" in low or "manifest" in low))
        or "no such host" in low
        or ("dial tcp" in low or "toomanyrequests" in low)
    ):
        reason = "pull-failed"
        hint = (
            "the base image is not on this machine and cannot be pulled; pull or build it "
            "first, or choose another with --base-image"
        )
    elif "no space left" in low:
        reason = "disk-full"
        hint = "free space in Docker's data root (docker system df)"
    return BuildError(
        f"build failed at {step}: {message}",
        step=step,
        log_tail=list(tail),
        reason=reason,
        hint=hint,
    )


def build_image(
    spec: EnvSpec,
    nb_path: str | Path,
    opts: BuildOptions | None = None,
    reporter: Reporter = null_reporter,
    cancel: CancelToken | None = None,
    client: Any = None,
) -> BuildResult:
    """Build (or find) the image of ``spec`` with the notebook at ``nb_path``."""
    started = time.monotonic()
    opts = opts or BuildOptions()
    opts.validate()
    client = client or connect()
    opts = _pinned(client, opts, spec.python_minor, reporter)
    folder = cache_dir(spec.python_minor, target_arch())
    gateway = build_host(client) if opts.wheels_via != "copy" else None
    if opts.wheels_via == "serve" and gateway is None:
        raise InputError(
            "the wheelhouse can only be served to a local Docker engine",
            hint="use wheels_via='copy' (--wheels-via copy) with a remote engine",
        )
    url = served_url(folder, gateway) if gateway else None
    ctx = make_context(spec, nb_path, opts, wheel_url=url)
    if image_exists(client, ctx.image) and not opts.no_cache:
        reporter(ProgressEvent("build", f"cached: {ctx.image} already exists", "info", 1.0))
        took = time.monotonic() - started
        found = _image_id(client, ctx.image)
        return BuildResult(ctx.image, True, took, ctx.tag_hash, found, opts.base_image)
    if cancel is not None:
        cancel.raise_if_cancelled()
    glibc = detect_glibc_minor(client, opts.resolved_base_image(spec.python_minor))
    wheels = _fetch_wheels(ctx, opts, reporter, cancel, glibc)
    image_id: str | None = None
    if gateway is not None:
        try:
            with serve_wheels(folder, gateway):
                reporter(ProgressEvent("build", f"building {ctx.image}", "step", 0.0))
                image_id = _stream_build(client, ctx, opts, reporter, cancel)
        except WheelServerBusy as exc:
            forget_port(folder)
            reporter(ProgressEvent("build", f"{exc}; copying the wheels instead", "warning"))
            gateway = None
    if gateway is None:
        ctx = make_context(spec, nb_path, opts)
        ctx.wheels = wheels
        reporter(ProgressEvent("build", f"building {ctx.image}", "step", 0.0))
        image_id = _stream_build(client, ctx, opts, reporter, cancel)
    if not image_exists(client, ctx.image):
        raise BuildError(f"the engine finished without tagging {ctx.image}", reason="build-failed")
    reporter(ProgressEvent("build", f"built {ctx.image}", "info", 1.0))
    return BuildResult(
        ctx.image,
        False,
        time.monotonic() - started,
        ctx.tag_hash,
        image_id or _image_id(client, ctx.image),
        opts.base_image,
    )


def _pinned(client: Any, opts: BuildOptions, python_minor: str, reporter: Reporter) -> BuildOptions:
    """``opts`` with the base image pinned by registry digest (or its local id recorded)."""
    pinned = pin_base_image(client, opts.resolved_base_image(python_minor))
    if pinned.warning:
        reporter(ProgressEvent("build", pinned.warning, "warning"))
    elif pinned.digest:
        reporter(ProgressEvent("build", f"base image pinned: {pinned.ref}", "info"))
    return replace(opts, base_image=pinned.ref, base_image_id=pinned.image_id)


def _image_id(client: Any, ref: str) -> str | None:
    try:
        return str(client.api.inspect_image(ref)["Id"])
    except Exception:
        return None


def prepare_context(
    spec: EnvSpec,
    nb_path: str | Path,
    opts: BuildOptions | None = None,
    reporter: Reporter = null_reporter,
    wheels: bool = True,
) -> BuildContext:
    """The full context (with wheels when asked): what ``dockerfile -o DIR`` writes."""
    opts = opts or BuildOptions()
    ctx = make_context(spec, nb_path, opts)
    if wheels:
        ctx.wheels = _fetch_wheels(ctx, opts, reporter)
    return ctx


def _fetch_wheels(
    ctx: BuildContext,
    opts: BuildOptions,
    reporter: Reporter,
    cancel: CancelToken | None = None,
    glibc: int = DEFAULT_GLIBC_MINOR,
) -> list[Path]:
    """Wheels for everything the context installs: the environment, the runner and uv."""
    return ensure_wheels(
        [*ctx.env_lock, *ctx.runner_lock, f"uv=={UV_VERSION}"],
        ctx.python_minor,
        opts,
        reporter,
        cancel,
        glibc_minor=glibc,
    )
