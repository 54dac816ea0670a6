"""Real wheel files and a password-protected index for tests (shared by unit and integration)."""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path
from typing import Any


def write_wheel(path: Path, files: dict[str, bytes]) -> Path:
    """Write a wheel at ``path`` with ``files`` and a RECORD holding each file's sha256.

    The RECORD goes into the top-level ``*.dist-info`` folder named by a ``METADATA`` member.
    """
    dist_info = next(
        f.rsplit("/", 1)[0]
        for f in files
        if f.count("/") == 1 and f.endswith(".dist-info/METADATA")
    )
    record = []
    with zipfile.ZipFile(path, "w") as zf:
        for fname, data in files.items():
            zf.writestr(fname, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            record.append(f"{fname},sha256={digest.decode()},{len(data)}")
        record.append(f"{dist_info}/RECORD,,")
        zf.writestr(f"{dist_info}/RECORD", "\n".join(record) + "\n")
    return path


def canary_wheel(folder: Path) -> Path:
    """``envpack-canary-pkg 1.0``, a pure wheel whose module holds ``VALUE = 42``."""
    name, version = "envpack_canary_pkg", "1.0"
    return write_wheel(
        folder / f"{name}-{version}-py3-none-any.whl",
        {
            f"{name}/__init__.py": b"VALUE = 42\n",
            f"{name}-{version}.dist-info/METADATA": (
                f"Metadata-Version: 2.1\nName: envpack-canary-pkg\nVersion: {version}\n".encode()
            ),
            f"{name}-{version}.dist-info/WHEEL": (
                b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
            ),
        },
    )


def serve_guarded_index(httpserver: Any, wheel: Path, user: str, password: str) -> None:
    """Serve ``wheel`` as ``envpack-canary-pkg`` from ``httpserver`` behind HTTP Basic auth."""
    from werkzeug import Response

    token = base64.b64encode(f"{user}:{password}".encode()).decode()

    def guarded(request: Any) -> Any:
        if request.headers.get("Authorization") != f"Basic {token}":
            return Response("auth required", 401, {"WWW-Authenticate": 'Basic realm="idx"'})
        if request.path.endswith(".whl"):
            return Response(wheel.read_bytes(), 200, {"Content-Type": "application/octet-stream"})
        return Response(
            f'<a href="/files/{wheel.name}">{wheel.name}</a>', 200, {"Content-Type": "text/html"}
        )

    httpserver.expect_request("/simple/envpack-canary-pkg/").respond_with_handler(guarded)
    httpserver.expect_request(f"/files/{wheel.name}").respond_with_handler(guarded)
