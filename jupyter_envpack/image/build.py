"""Build an image through the Docker Engine API, streaming progress; cancel, deadline, idle watchdog.

The tag is content-addressed (:attr:`BuildContext.image`): when it exists, nothing is fetched or
built. Builds use ``rm=True, forcerm=True`` so no intermediate container survives, ``pull=False``
(local images first; the engine pulls what is missing), and ``use_config_proxy=False`` so proxy
credentials of ``~/.docker/config.json`` never land in a layer (RELIABILITY E3, F4).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name, parse_wheel_filename

from ..errors import BuildError, CancelledError, EngineError, EnvpackError, InputError
from ..events import CancelToken, ProgressEvent, Reporter, null_reporter
from ..snapshot.commands import commands_in_notebook
from ..snapshot.notebook import parse_notebook, read_notebook_bytes
from ..snapshot.spec import EnvSpec
from .basepin import pin_base_image
from .context import BuildContext, make_context, runner_lock
from .dockerapi import StreamSlot, watch_streams
from .engine import base_labels, connect
from .layers import built_chains
from .options import UV_VERSION, BuildOptions
from .syslibs import SystemNeeds, plan_system, probe_base, record_system
from .verify import verify_image
from .wheels import (
    DEFAULT_GLIBC_MINOR,
    base_runtime,
    cache_dir,
    check_base_python,
    check_lock_hashes,
    ensure_wheels,
    redact,
    target_arch,
    wheel_hashes,
)
from .wheelserver import WheelServerBusy, build_host, serve_wheels, served_url

_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
MAX_LINE = 64 * 1024
LOG_TAIL = 30


@dataclass
class BuildResult:
    """What :func:`build_image` produced (``system``: the apt packages, why, and warnings)."""

    image: str
    cached: bool
    duration: float
    tag_hash: str
    image_id: str | None = None
    system: dict[str, Any] | None = None
    base_image: str | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON form (REST results, ``--json``)."""
        return {
            "image": self.image,
            "cached": self.cached,
            "duration": round(self.duration, 3),
            "tag_hash": self.tag_hash,
            "image_id": self.image_id,
            "system": self.system,
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
        self.stream = StreamSlot()
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
        self.stream.abort()


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
    with _Watchdog(cancel, opts.deadline, opts.idle_timeout) as dog, dog.stream:
        api = watch_streams(client.api)
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
    mismatch = next((ln for ln in reversed(tail) if "hash mismatch" in ln.lower()), None)
    if mismatch is not None:  # uv --require-hashes, or install_env.py's check of the uv wheel
        reason = "hash-mismatch"
        message = f"{mismatch.strip()[:500]} ({message})"
        hint = (
            "a wheel served to the build is not the file fetched from the index; something "
            "answered in place of envpack's wheel server. Build again; if it repeats, check "
            "which process listens on the bridge address"
        )
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
    """Build (or find) the image of ``spec`` with the notebook at ``nb_path``.

    Before the build: the wheels are fetched (their sha256 recorded), the system packages their
    shared libraries and the notebook's commands need are planned (:mod:`.syslibs`); after it, the
    environment inside the image is checked against the lock (:mod:`.verify`).
    """
    started = time.monotonic()
    opts = opts or BuildOptions()
    opts.validate()
    client = client or connect()
    opts = _pinned(client, opts, spec.python_minor, reporter)
    _advise_cuda_base(client, spec, opts.base_image, reporter)
    folder = cache_dir(spec.python_minor, target_arch())
    gateway = build_host(client) if opts.wheels_via != "copy" else None
    if opts.wheels_via == "serve" and gateway is None:
        raise InputError(
            "the wheelhouse can only be served to a local Docker engine",
            hint="use wheels_via='copy' (--wheels-via copy) with a remote engine",
        )
    url = served_url(folder, gateway) if gateway else None
    planner = _Planner(spec, Path(nb_path), opts, client, reporter, cancel)
    known = planner.cached()
    if known is not None:
        check_lock_hashes(known[1], opts.lock_hashes)
    if known is not None and not opts.no_cache:
        found = _find_built(client, spec, nb_path, opts, url, *known)
        if found is not None:
            return _cached(client, found, known[0], started, reporter, opts)
    if cancel is not None:
        cancel.raise_if_cancelled()
    system, hashes, wheels = planner.plan()
    found = None if opts.no_cache else _find_built(client, spec, nb_path, opts, url, system, hashes)
    if found is not None:
        return _cached(client, found, system, started, reporter, opts)
    ctx = make_context(spec, nb_path, opts, wheel_url=url, system=system, hashes=hashes)
    if ctx.chain:  # heavy layers ordered to extend what an earlier build wrote (.layers)
        history = built_chains(client, ctx.chain)
        ctx = make_context(
            spec, nb_path, opts, wheel_url=url, system=system, hashes=hashes, history=history
        )
    _report_system(system, reporter)
    image_id: str | None = None
    if gateway is not None:
        try:
            with serve_wheels(folder, gateway, frozenset(hashes), url):
                reporter(ProgressEvent("build", f"building {ctx.image}", "step", 0.0))
                image_id = _stream_build(client, ctx, opts, reporter, cancel)
        except WheelServerBusy as exc:  # whoever holds the port is never asked for a wheel; the
            # saved port is kept so the next build's RUN line, and its layer cache, stay valid
            reporter(ProgressEvent("build", f"{exc}; copying the wheels instead", "warning"))
            gateway = None
    if gateway is None:
        ctx = make_context(spec, nb_path, opts, system=system, hashes=hashes)
        ctx.wheels = wheels
        reporter(ProgressEvent("build", f"building {ctx.image}", "step", 0.0))
        image_id = _stream_build(client, ctx, opts, reporter, cancel)
    if not image_exists(client, ctx.image):
        raise BuildError(f"the engine finished without tagging {ctx.image}", reason="build-failed")
    _verify(client, ctx, reporter, spec.python_version)
    reporter(ProgressEvent("build", f"built {ctx.image}", "info", 1.0))
    return BuildResult(
        ctx.image,
        False,
        time.monotonic() - started,
        ctx.tag_hash,
        image_id or _image_id(client, ctx.image),
        system.to_json(),
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


def _advise_cuda_base(client: Any, spec: EnvSpec, base: str | None, reporter: Reporter) -> None:
    """Warn when a GPU notebook's base image has no CUDA user-space (text only: never fails)."""
    gpu = spec.gpu
    if gpu is None or not base:
        return
    from ..gpu import cuda_base_advice

    try:
        attrs = client.images.get(base).attrs
    except Exception:  # not pulled yet: the build says so itself
        return
    facts = probe_base(client, base)  # its shared libraries (cached by image id)
    advice = cuda_base_advice(base, attrs, gpu, facts.sonames if facts else ())
    if advice:
        reporter(ProgressEvent("build", advice, "warning"))


def _find_built(
    client: Any,
    spec: EnvSpec,
    nb_path: str | Path,
    opts: BuildOptions,
    url: str | None,
    system: SystemNeeds,
    hashes: dict[str, str],
) -> BuildContext | None:
    """The context whose image exists: served variant, or the copy variant a busy port built."""
    for wheel_url in dict.fromkeys([url, None]):
        ctx = make_context(spec, nb_path, opts, wheel_url=wheel_url, system=system, hashes=hashes)
        if image_exists(client, ctx.image):
            return ctx
    return None


def image_reference(
    spec: EnvSpec, nb_path: str | Path, opts: BuildOptions | None = None, client: Any = None
) -> str:
    """The tag :func:`build_image` gives (or gave) this notebook, without fetching or building.

    With ``client``, an existing image of either variant (served, or copied after a busy port)
    is preferred; the plan of an earlier build supplies the apt layer and the wheel hashes.
    """
    opts = opts or BuildOptions()
    if client is not None:  # the tag build_image gives has the base pinned like this
        opts = _pinned(client, opts, spec.python_minor, null_reporter)
    system, hashes = _Planner(spec, Path(nb_path), opts, client, null_reporter, None).cached() or (
        SystemNeeds(),
        {},
    )
    gateway = build_host(client) if client is not None and opts.wheels_via != "copy" else None
    url = served_url(cache_dir(spec.python_minor, target_arch()), gateway) if gateway else None
    found = None
    if client is not None:
        found = _find_built(client, spec, nb_path, opts, url, system, hashes)
    if found is None:
        found = make_context(spec, nb_path, opts, wheel_url=url, system=system, hashes=hashes)
    return found.image


def _report_system(system: SystemNeeds, reporter: Reporter) -> None:
    if system.packages:
        names = ", ".join(system.packages)
        reporter(ProgressEvent("build", f"system packages from the base's index: {names}", "info"))
    for finding in system.findings:
        reporter(ProgressEvent("build", f"{finding.code}: {finding.message}", "warning"))


def _cached(
    client: Any,
    ctx: BuildContext,
    system: SystemNeeds,
    started: float,
    reporter: Reporter,
    opts: BuildOptions,
) -> BuildResult:
    _report_system(system, reporter)
    reporter(ProgressEvent("build", f"cached: {ctx.image} already exists", "info", 1.0))
    return BuildResult(
        ctx.image,
        True,
        time.monotonic() - started,
        ctx.tag_hash,
        _image_id(client, ctx.image),
        system.to_json(),
        opts.base_image,
    )


def _verify(client: Any, ctx: BuildContext, reporter: Reporter, python: str) -> None:
    """Check the environment inside the new image; untag it when it is not the lock."""
    reporter(ProgressEvent("build", "checking the distributions inside the image", "info"))
    try:
        warning = verify_image(client, ctx.image, ctx.env_lock, python)
    except BuildError:
        with contextlib.suppress(Exception):
            client.api.remove_image(ctx.image, noprune=False)
        raise
    if warning:
        reporter(ProgressEvent("build", warning, "warning"))


class _Planner:
    """Wheels (with recorded hashes) and system packages of one build, memoised on disk."""

    def __init__(
        self,
        spec: EnvSpec,
        nb_path: Path,
        opts: BuildOptions,
        client: Any,
        reporter: Reporter,
        cancel: CancelToken | None,
    ) -> None:
        self.spec, self.nb_path, self.opts, self.client = spec, nb_path, opts, client
        self.reporter, self.cancel = reporter, cancel
        self.base = opts.resolved_base_image(spec.python_minor)
        nb = parse_notebook(read_notebook_bytes(nb_path), name=nb_path.name)
        self.commands = commands_in_notebook(nb)
        self.lock = [*spec.requirements_lines(), *runner_lock(), f"uv=={UV_VERSION}"]
        ident = {
            "base": self.base,  # like the tag: a re-tagged base is not a new environment
            "lock": self.lock,
            "commands": [(c.program, c.cell) for c in self.commands],
            "arch": target_arch(),
        }
        blob = json.dumps(ident, sort_keys=True).encode()
        self.key = hashlib.sha256(blob).hexdigest()
        self.memo = cache_dir("any", "any").parent / "plans" / f"{self.key[:32]}.json"

    def cached(self) -> tuple[SystemNeeds, dict[str, str]] | None:
        """The plan of an earlier build with the same base, locks and commands, if any."""
        try:
            data = json.loads(self.memo.read_text())
            return SystemNeeds.from_json(data["system"]), dict(data["hashes"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def plan(self) -> tuple[SystemNeeds, dict[str, str], list[Path]]:
        """Fetch the wheels, check their hashes, plan the apt packages; remember the plan.

        The base image's probe (a container, once per base) runs while the wheels are fetched.
        """
        with ThreadPoolExecutor(1, thread_name_prefix="envpack-base-probe") as pool:
            probing = pool.submit(probe_base, self.client, self.base)
            glibc, python = base_runtime(self.client, self.base)
            check_base_python(python, self.spec.python_minor, self.base)
            wheels = ensure_wheels(
                self.lock,
                self.spec.python_minor,
                self.opts,
                self.reporter,
                self.cancel,
                glibc_minor=glibc,
            )
            facts = probing.result()
        hashes = wheel_hashes(wheels)
        check_lock_hashes(hashes, self.opts.lock_hashes)
        env = {str(canonicalize_name(p.name)) for p in self.spec.packages}
        on_path = frozenset(w.name for w in wheels if parse_wheel_filename(w.name)[0] in env)
        system = plan_system(
            wheels, self.commands, facts, target_arch(), self.opts, self.reporter, on_path
        )
        if facts is None:
            self.reporter(
                ProgressEvent(
                    "build",
                    f"system libraries not checked: {self.base} is not on this machine yet",
                    "warning",
                )
            )
        data = {"system": {**system.to_json(), "sources": system.sources}, "hashes": hashes}
        with contextlib.suppress(OSError):
            self.memo.parent.mkdir(parents=True, exist_ok=True)
            self.memo.write_text(json.dumps(data))
            record_system(self.spec.hash, system)  # the same list goes to binder/apt.txt
        return system, hashes, wheels


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
    """The full context (with wheels when asked): what ``dockerfile -o DIR`` writes.

    With wheels, the locks carry their hashes; when a local engine answers, the apt layer is
    planned against the base image as for a build.
    """
    opts = opts or BuildOptions()
    ctx = make_context(spec, nb_path, opts)
    if not wheels:
        return ctx
    try:
        client = connect()
    except EnvpackError:
        client = None
    system: SystemNeeds | None = None
    if client is not None:
        system, hashes, files = _Planner(spec, Path(nb_path), opts, client, reporter, None).plan()
    else:
        files = _fetch_wheels(ctx, opts, reporter)
        hashes = wheel_hashes(files)
    ctx = make_context(spec, nb_path, opts, system=system, hashes=hashes)
    ctx.wheels = files
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
