"""The wheelhouse: wheels for the target image, fetched on the host with the user's own pip.

Fetching on the host means the user's index, extra indexes, CA bundle and credentials (pip config,
``PIP_*`` environment, ``.netrc``) are used exactly as pip uses them here, and none of them ever
enters the image: the build context only holds the wheel files (RELIABILITY E1, E2).
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

from ..errors import BuildError, CancelledError
from ..events import CancelToken, ProgressEvent, Reporter, null_reporter
from .options import BuildOptions

_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")


def redact(text: str) -> str:
    """Remove ``user:password@`` from every URL in ``text``."""
    return _USERINFO.sub("***@", text)


def target_arch() -> str:
    """The image's machine (the engine's, which is this machine's)."""
    m = platform.machine().lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(m, m)


def platform_tags(arch: str, newest_glibc: int = 28) -> list[str]:
    """manylinux platform tags a Debian-based image with glibc ≥ 2.28 accepts."""
    tags = [f"manylinux_2_{minor}_{arch}" for minor in range(newest_glibc, 4, -1)]
    tags += [f"manylinux2014_{arch}", f"manylinux2010_{arch}", f"manylinux1_{arch}"]
    return tags


def cache_dir(python_minor: str, arch: str) -> Path:
    """The persistent wheel cache for one target (Python X.Y, machine)."""
    base = os.environ.get("ENVPACK_WHEEL_CACHE") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "jupyter-envpack" / "wheels")
    return Path(base) / f"cp{python_minor.replace('.', '')}-{arch}"


def _index(folder: Path) -> dict[tuple[str, Version], list[Path]]:
    found: dict[tuple[str, Version], list[Path]] = {}
    for f in folder.glob("*.whl"):
        try:
            name, version, _build, _tags = parse_wheel_filename(f.name)
        except ValueError:
            continue
        found.setdefault((str(name), version), []).append(f)
    return found


def _key(requirement: str) -> tuple[str, Version]:
    name, _, version = requirement.partition("==")
    return str(canonicalize_name(name)), Version(version)


def ensure_wheels(requirements: list[str], python_minor: str, opts: BuildOptions,
                  reporter: Reporter = null_reporter, cancel: CancelToken | None = None,
                  arch: str | None = None) -> list[Path]:
    """Return wheel files for every ``name==version`` in ``requirements`` (downloading the missing)."""
    arch = arch or target_arch()
    folder = cache_dir(python_minor, arch)
    folder.mkdir(parents=True, exist_ok=True)
    have = _index(folder)
    missing = [r for r in requirements if _key(r) not in have]
    if missing:
        reporter(ProgressEvent("wheels", f"fetching {len(missing)} wheels for Python "
                               f"{python_minor} ({arch})", "step"))
        _download(missing, folder, python_minor, arch, opts, reporter, cancel)
        have = _index(folder)
    else:
        reporter(ProgressEvent("wheels", f"all {len(requirements)} wheels are cached", "info"))
    files: list[Path] = []
    still: list[str] = []
    for r in requirements:
        got = have.get(_key(r))
        if got:
            files.extend(sorted(got))
        else:
            still.append(r)
    if still:
        raise BuildError(f"no wheel could be fetched for: {', '.join(still[:10])}",
                         step="wheels", reason="no-wheel")
    return files


def _pip_command(action: str, python_minor: str, arch: str, opts: BuildOptions) -> list[str]:
    cmd = [sys.executable, "-m", "pip", action, "--no-deps", "--progress-bar", "off",
           "--disable-pip-version-check"]
    if opts.index_url:
        cmd += ["--index-url", opts.index_url]
    for url in opts.extra_index_urls:
        cmd += ["--extra-index-url", url]
    if opts.ca_bundle:
        cmd += ["--cert", str(Path(opts.ca_bundle).resolve())]
    if action == "download":
        cmd += ["--only-binary=:all:", "--python-version", python_minor, "--implementation", "cp"]
        abi = "cp" + python_minor.replace(".", "")
        cmd += ["--abi", abi, "--abi", "abi3", "--abi", "none"]
        for tag in platform_tags(arch):
            cmd += ["--platform", tag]
    return cmd


def _run_pip(cmd: list[str], reporter: Reporter, cancel: CancelToken | None) -> tuple[int, list[str]]:
    lines: list[str] = []
    env = dict(os.environ, PIP_NO_INPUT="1", PYTHONUNBUFFERED="1")
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          stdin=subprocess.DEVNULL, env=env) as proc:
        assert proc.stdout is not None
        for raw in proc.stdout:
            if cancel is not None and cancel.cancelled:
                proc.kill()
                raise CancelledError("build cancelled while fetching wheels")
            line = redact(raw.decode("utf-8", "replace").rstrip())
            if not line or "is ignored: it is neither a file nor a directory" in line:
                continue
            lines.append(line)
            reporter(ProgressEvent("wheels", line[:2000], "log"))
        code = proc.wait()
    return code, lines


def _download(missing: list[str], folder: Path, python_minor: str, arch: str,
              opts: BuildOptions, reporter: Reporter, cancel: CancelToken | None) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as fh:
        fh.write("\n".join(missing) + "\n")
        req_file = fh.name
    try:
        cmd = [*_pip_command("download", python_minor, arch, opts), "-d", str(folder), "-r", req_file]
        code, lines = _run_pip(cmd, reporter, cancel)
        if code == 0:
            return
        # Some pins have no wheel for the target: build pure-Python ones from sdists on the host.
        have = _index(folder)
        left = [r for r in missing if _key(r) not in have]
        reporter(ProgressEvent("wheels", f"{len(left)} packages have no matching wheel; "
                               "building them from source", "info"))
        for req in left:
            with tempfile.TemporaryDirectory() as tmp:
                cmd = [*_pip_command("wheel", python_minor, arch, opts), "-w", tmp, req]
                code, wlines = _run_pip(cmd, reporter, cancel)
                built = list(Path(tmp).glob("*.whl"))
                if code != 0 or not built:
                    tail = [ln for ln in (lines + wlines) if "ERROR" in ln or "error" in ln][-5:]
                    raise BuildError(f"cannot fetch {req} for Python {python_minor} ({arch}): "
                                     + (" | ".join(tail) or "pip failed"), step="wheels",
                                     log_tail=(lines + wlines)[-20:], reason="no-wheel")
                for w in built:
                    tags = parse_wheel_filename(w.name)[3]
                    if not any(t.platform == "any" for t in tags) and arch not in w.name:
                        raise BuildError(f"{req} has no wheel for {arch} and compiles native code",
                                         step="wheels", reason="no-wheel")
                    w.replace(folder / w.name)
    finally:
        Path(req_file).unlink(missing_ok=True)
