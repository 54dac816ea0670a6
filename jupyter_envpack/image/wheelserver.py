"""Serve the host's wheelhouse to a build over the Docker bridge, so wheels never become a layer.

A build step fetches wheels from ``http://<bridge gateway>:<port>/<token>/`` and installs them in the
same ``RUN``: the image gets one environment layer and no copy of the wheels. Port and token are
kept per wheel cache (``serve.json``, mode 0600) so the ``RUN`` line, and with it the layer cache,
stays the same from build to build. Only the ``*.whl`` files of the build being served are listed
and sent (``allowed``); the token keeps other containers on the bridge from listing them.

Integrity does not rest on the port or the token (RELIABILITY L3): the locks carry the sha256 of
every wheel recorded at fetch time and uv installs with ``--require-hashes``; the uv wheel is
checked against tools.lock before it runs. A port this process cannot bind is never trusted, even
when something answers there: that build copies the wheels instead (the saved port is kept, so
the next build's ``RUN`` line and its layer cache stay valid). The token is in the
image's history (the ``RUN`` line); it only ever opens, while a build of this machine runs, the
wheels of the build being served, which are installed in that image anyway: it leaks nothing
the image does not already contain.
"""

from __future__ import annotations

import collections
import contextlib
import html
import ipaddress
import json
import re
import secrets
import socket
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from ..safefs import folder_lock, safe_write
from .dockerapi import engine_key
from .wheels import recorded_hashes

_gateways: dict[str, str | None] = {}


def bridge_gateway(client: Any) -> str | None:
    """The host's address on the engine's default bridge, when the engine is local (cached)."""
    base = str(getattr(client.api, "base_url", ""))
    if not base.startswith("http+docker://"):  # a remote (tcp/ssh) engine cannot reach us
        return None
    key = engine_key(client.api)
    if key not in _gateways:
        _gateways[key] = _find_gateway(client)
    return _gateways[key]


def _find_gateway(client: Any) -> str | None:
    try:
        configs = client.api.inspect_network("bridge")["IPAM"]["Config"] or []
    except Exception:
        return None
    for cfg in configs:
        gateway = cfg.get("Gateway")
        if not gateway and cfg.get("Subnet") and ":" not in cfg["Subnet"]:
            # older engines omit the gateway: it is the subnet's first address
            gateway = str(next(ipaddress.ip_network(cfg["Subnet"], strict=False).hosts()))
        if gateway and ":" not in gateway and _can_bind(gateway):
            return str(gateway)
    return None


def _can_bind(host: str) -> bool:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
    except OSError:
        return False
    return True


class _Allowed:
    """The wheel names the builds being served may fetch: their union while builds of this
    process share one server (a ``None`` build may fetch every wheel of the folder)."""

    def __init__(self) -> None:
        self.counts: collections.Counter[str] = collections.Counter()
        self.everything = 0

    def add(self, names: frozenset[str] | None) -> None:
        if names is None:
            self.everything += 1
        else:
            self.counts.update(names)

    def remove(self, names: frozenset[str] | None) -> None:
        if names is None:
            self.everything -= 1
        else:
            self.counts.subtract(names)
            self.counts = +self.counts  # drop what no build asks for any more

    def __contains__(self, name: object) -> bool:
        return self.everything > 0 or (isinstance(name, str) and self.counts[name] > 0)


@dataclass
class _Serving:
    server: ThreadingHTTPServer
    thread: threading.Thread
    allowed: _Allowed
    users: int = 0


# Servers this process runs, by (host, port, folder, token): concurrent builds of one process
# (the server's concurrency limit is 2) share the server they bound themselves instead of
# copying their wheels; a port bound by anyone else is still never trusted (RELIABILITY L3).
_serving: dict[tuple[str, int, str, str], _Serving] = {}
_serving_lock = threading.Lock()


def _handler(folder: Path, token: str, allowed: _Allowed) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            prefix = f"/{token}/"
            if not self.path.startswith(prefix):
                self.send_error(404)
                return
            name = self.path[len(prefix) :]
            if name in {"", "index.html"}:
                sums = recorded_hashes(folder)  # PEP 503 fragments: a layer names its wheel by hash
                links = "".join(
                    f'<a href="{html.escape(p.name)}{_fragment(sums.get(p.name))}">'
                    f"{html.escape(p.name)}</a>\n"
                    for p in sorted(folder.glob("*.whl"))
                    if p.name in allowed
                )
                body = f"<html><body>\n{links}</body></html>\n".encode()
                self._send(body, "text/html")
                return
            if (
                "/" in name
                or not name.endswith(".whl")
                or name.startswith(".")
                or name not in allowed
            ):
                self.send_error(404)
                return
            path = folder / name
            if not path.is_file():
                self.send_error(404)
                return
            self._send(path.read_bytes(), "application/octet-stream")

        def _send(self, body: bytes, ctype: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


def _fragment(digest: str | None) -> str:
    return f"#sha256={digest}" if digest and re.fullmatch(r"[0-9a-f]{64}", digest) else ""


class WheelServerBusy(OSError):
    """The cache's port is taken by something that is not envpack serving this cache."""


def _settings(folder: Path) -> dict[str, Any]:
    try:
        data = json.loads((folder / "serve.json").read_text())
        if isinstance(data.get("port"), int) and isinstance(data.get("token"), str):
            return dict(data)
    except (OSError, ValueError):
        pass
    return {"port": 0, "token": secrets.token_hex(16)}


def served_url(folder: Path, host: str) -> str:
    """The stable find-links URL of ``folder`` on ``host`` (choosing and saving a port once).

    Two builds that start together on a new cache must not choose two ports: the choice is
    made under an exclusive lock of the cache folder.
    """
    data = _settings(folder)
    if not data["port"]:
        with folder_lock(folder, ".serve.lock"):
            data = _settings(folder)  # another build may have chosen meanwhile
            if not data["port"]:
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                    sock.bind((host, 0))
                    data["port"] = int(sock.getsockname()[1])
                safe_write(folder / "serve.json", json.dumps(data), mode=0o600)  # token: 0600 (L8)
    return f"http://{host}:{data['port']}/{data['token']}/"


@contextlib.contextmanager
def serve_wheels(
    folder: Path, host: str, allowed: frozenset[str] | None = None, url: str | None = None
) -> Iterator[str]:
    """Serve ``folder`` at ``url`` (default :func:`served_url`) for the block; yield that URL.

    Give ``url`` when the build's Dockerfile was written with it: the server then listens where
    the ``RUN`` step will ask, whatever ``serve.json`` says by now.

    ``allowed``: the wheel file names this build may fetch (default: every wheel of ``folder``).
    A port already taken by anyone but this process raises :class:`WheelServerBusy`: whatever
    answers there is never trusted. Builds of this process share the server they started.
    """
    url = url or served_url(folder, host)
    where = urllib.parse.urlsplit(url)  # exactly what the build's RUN line will ask for
    port, token = int(where.port or 0), where.path.strip("/")
    key = (host, port, str(folder), token)
    with _serving_lock:
        serving = _serving.get(key) or _start(folder, host, port, token)
        _serving[key] = serving
        serving.users += 1
        serving.allowed.add(allowed)
    try:
        yield url
    finally:
        with _serving_lock:  # stopped under the lock: a build starting now binds it afresh
            serving.allowed.remove(allowed)
            serving.users -= 1
            if serving.users == 0:
                del _serving[key]
                serving.server.shutdown()
                serving.server.server_close()
                serving.thread.join(timeout=5)


def _start(folder: Path, host: str, port: int, token: str) -> _Serving:
    allowed = _Allowed()
    try:
        server = ThreadingHTTPServer((host, port), _handler(folder, token, allowed))
    except OSError as exc:
        raise WheelServerBusy(
            f"cannot serve the wheelhouse on {host}:{port}: {exc.strerror}"
        ) from None
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True, name="envpack-wheels")
    thread.start()
    return _Serving(server, thread, allowed)


def build_host(client: Any) -> str | None:
    """The address a build's ``RUN`` step reaches this machine at, or ``None`` (remote engine).

    Docker runs build steps on its default bridge: the bridge's gateway. Podman runs them in the
    host's network namespace, and its bridge gateway (``10.88.0.1``) exists only while a container
    runs: loopback is the address there.
    """
    from .engine import engine_kind

    local = str(getattr(client.api, "base_url", "")).startswith("http+docker://")
    if local and engine_kind(client) == "podman":
        return "127.0.0.1"
    return bridge_gateway(client)
