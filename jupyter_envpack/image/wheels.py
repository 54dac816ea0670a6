"""The wheelhouse: wheels for the target image, fetched on the host with the user's own pip.

Fetching on the host means the user's index, extra indexes, CA bundle and credentials (pip config,
``PIP_*`` environment, ``.netrc``) are used exactly as pip uses them here, and none of them ever
enters the image: the build context only holds the wheel files (RELIABILITY E1, E2).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

from ..errors import BuildError, CancelledError
from ..events import CancelToken, ProgressEvent, Reporter, null_reporter
from ..safefs import folder_lock
from ..snapshot.index import IndexOptions
from .engine import base_labels
from .options import BuildOptions

_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")


def redact(text: str) -> str:
    """Remove ``user:password@`` from every URL in ``text``."""
    return _USERINFO.sub("***@", text)


def target_arch() -> str:
    """The image's machine (the engine's, which is this machine's)."""
    m = platform.machine().lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(m, m)


DEFAULT_GLIBC_MINOR = 28
"""glibc 2.28 when the base image cannot be inspected: what most manylinux wheels target."""


def platform_tags(arch: str, newest_glibc: int = DEFAULT_GLIBC_MINOR) -> list[str]:
    """manylinux platform tags a Debian-based image with glibc ≥ 2.28 accepts."""
    tags = [f"manylinux_2_{minor}_{arch}" for minor in range(newest_glibc, 4, -1)]
    tags += [f"manylinux2014_{arch}", f"manylinux2010_{arch}", f"manylinux1_{arch}"]
    return tags


_PYTHON_VERSION = re.compile(r"3\.[0-9]{1,2}\.[0-9]{1,3}[a-z0-9]{0,8}\Z")
_RUNTIME = (
    "import os, platform\n"
    "print(platform.python_version())\n"
    "print(os.confstr('CS_GNU_LIBC_VERSION') or '')\n"
)


def base_runtime(client: Any, image: str) -> tuple[int, str | None]:
    """``(glibc minor, python3 version)`` of ``image``: one labelled, network-less container per
    image id, cached. glibc defaults to :data:`DEFAULT_GLIBC_MINOR` and Python to ``None`` when
    the image cannot tell (not local, no ``python3``: then ``getconf`` alone is asked)."""
    try:
        image_id = str(client.api.inspect_image(image)["Id"])
    except Exception:
        return DEFAULT_GLIBC_MINOR, None
    cache = cache_dir("any", "any").parent / "base-runtime.json"
    try:
        loaded = json.loads(cache.read_text())
    except (OSError, ValueError):
        loaded = None
    known: dict[str, Any] = loaded if isinstance(loaded, dict) else {}
    entry: Any = known.get(image_id)
    if _valid_runtime(entry):
        return int(entry["glibc"]), entry["python"]
    lines = _run_in(client, image, ["python3", "-c", _RUNTIME])
    python = lines[0] if lines and _PYTHON_VERSION.match(lines[0]) else None
    libc = lines[1] if len(lines) > 1 else ""
    if python is None:
        libc = (_run_in(client, image, ["getconf", "GNU_LIBC_VERSION"]) or [""])[0]
    m = re.fullmatch(r"glibc 2\.([0-9]{1,3})", libc)
    if m is None:
        return DEFAULT_GLIBC_MINOR, python  # not cached: a later build asks again
    known[image_id] = {"glibc": int(m.group(1)), "python": python}
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(known))
    except OSError:
        pass
    return int(m.group(1)), python


def _valid_runtime(entry: Any) -> bool:
    """A cache entry envpack wrote (anything else is asked again, RELIABILITY L8)."""
    return (
        isinstance(entry, dict)
        and isinstance(entry.get("glibc"), int)
        and 0 <= entry["glibc"] < 1000
        and (entry.get("python") is None or bool(_PYTHON_VERSION.match(str(entry["python"]))))
    )


def _run_in(client: Any, image: str, command: list[str]) -> list[str]:
    """The output lines of ``command`` in a throwaway container of ``image`` ([] on failure)."""
    try:
        out = client.containers.run(
            image,
            command,
            remove=True,
            entrypoint=[],
            user="0",
            network_disabled=True,
            labels=base_labels("build"),
        )
    except Exception:
        return []
    return [ln.strip() for ln in bytes(out)[:4096].decode("utf-8", "replace").splitlines()]


def check_base_python(python: str | None, python_minor: str, image: str) -> None:
    """Fail before any wheel is fetched when ``image``'s Python is not ``python_minor``."""
    if python is not None and python.split(".")[:2] != python_minor.split("."):
        raise BuildError(
            f"the base image {image} runs Python {python}, the notebook's environment "
            f"Python {python_minor}: its wheels cannot be installed there",
            step="plan",
            reason="python-mismatch",
            hint=f"use a base image with Python {python_minor} (--base-image, "
            "c.EnvPack.base_image), or leave it unset for python:X.Y-slim",
        )


def cache_dir(python_minor: str, arch: str) -> Path:
    """The persistent wheel cache for one target (Python X.Y, machine)."""
    base = os.environ.get("ENVPACK_WHEEL_CACHE") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        / "jupyter-envpack"
        / "wheels"
    )
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


def ensure_wheels(
    requirements: list[str],
    python_minor: str,
    opts: BuildOptions,
    reporter: Reporter = null_reporter,
    cancel: CancelToken | None = None,
    arch: str | None = None,
    glibc_minor: int = DEFAULT_GLIBC_MINOR,
) -> list[Path]:
    """Return wheel files for every ``name==version`` in ``requirements`` (downloading the missing)."""
    arch = arch or target_arch()
    folder = cache_dir(python_minor, arch)
    # Builds sharing the cache fetch one at a time: two pip processes saving the same wheel into
    # one folder race (one copies while the other replaces it; seen with two server operations).
    with folder_lock(folder, ".fetch.lock"):
        have = _index(folder)
        missing = [r for r in requirements if _key(r) not in have]
        if missing:
            reporter(
                ProgressEvent(
                    "wheels",
                    f"fetching {len(missing)} wheels for Python {python_minor} ({arch})",
                    "step",
                )
            )
            _download(missing, folder, python_minor, arch, opts, reporter, cancel, glibc_minor)
            have = _index(folder)
        else:
            reporter(ProgressEvent("wheels", f"all {len(requirements)} wheels are cached", "info"))
        record_hashes(folder)
    files: list[Path] = []
    still: list[str] = []
    for r in requirements:
        got = have.get(_key(r))
        if got:
            files.extend(sorted(got))
        else:
            still.append(r)
    if still:
        raise BuildError(
            f"no wheel could be fetched for: {', '.join(still[:10])}",
            step="wheels",
            reason="no-wheel",
        )
    return files


HASHES_FILE = "sha256.json"
"""Per cache folder: the sha256 of each wheel, recorded when it was fetched (RELIABILITY L3)."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _load_hashes(folder: Path) -> dict[str, str]:
    try:
        data = json.loads((folder / HASHES_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def recorded_hashes(folder: Path) -> dict[str, str]:
    """The sha256 recorded for each wheel of ``folder`` (file name → hex digest)."""
    return _load_hashes(folder)


def record_hashes(folder: Path) -> dict[str, str]:
    """Record the sha256 of every newly fetched wheel of ``folder``; return the whole record."""
    known = _load_hashes(folder)
    new = {w.name: _sha256(w) for w in folder.glob("*.whl") if w.name not in known}
    if new:
        known.update(new)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".json")
        with os.fdopen(fd, "w") as fh:
            json.dump(known, fh, indent=0, sort_keys=True)
        Path(tmp).replace(folder / HASHES_FILE)
    return known


def wheel_hashes(files: list[Path]) -> dict[str, str]:
    """The recorded sha256 of each of ``files``, after checking each file still has it.

    Raises
    ------
    BuildError
        A wheel changed since it was fetched (``reason="hash-mismatch"``).
    """
    out: dict[str, str] = {}
    for path in files:
        recorded = _load_hashes(path.parent).get(path.name) or record_hashes(path.parent)[path.name]
        if _sha256(path) != recorded:
            raise BuildError(
                f"{path.name} in the wheel cache changed since it was fetched (sha256 mismatch)",
                step="wheels",
                reason="hash-mismatch",
                hint=f"delete {path} and build again: it will be fetched from the index",
            )
        out[path.name] = recorded
    return out


def check_lock_hashes(hashes: dict[str, str], expected: dict[str, list[str]]) -> None:
    """Fail when a fetched wheel's sha256 is not one the lock file recorded for its distribution.

    Raises
    ------
    BuildError
        ``reason="hash-mismatch"``, naming the wheel (the index serves other bytes than the
        author's, or the lock was edited).
    """
    allowed = {str(canonicalize_name(k)): set(v) for k, v in expected.items() if v}
    for filename, digest in sorted(hashes.items()):
        name = str(canonicalize_name(parse_wheel_filename(filename)[0]))
        if name in allowed and digest not in allowed[name]:
            raise BuildError(
                f"{filename} does not have a sha256 the lock file records for {name}",
                step="wheels",
                reason="hash-mismatch",
                hint="the index serves other bytes than the lock's author had: check the index, "
                "or write the lock again (jupyter envpack lock NB) if the change is expected",
            )


def hashed_lock(lock: list[str], hashes: dict[str, str]) -> list[str]:
    """``name==version --hash=sha256:...`` lines for ``lock`` (every wheel file of each pin)."""
    by_key: dict[tuple[str, Version], list[str]] = {}
    for name, digest in hashes.items():
        wname, version, _build, _tags = parse_wheel_filename(name)
        by_key.setdefault((str(wname), version), []).append(digest)
    lines = []
    for req in lock:
        digests = sorted(by_key.get(_key(req), []))
        lines.append(" ".join([req, *(f"--hash=sha256:{d}" for d in digests)]))
    return lines


def _pip_command(
    action: str,
    python_minor: str,
    arch: str,
    opts: BuildOptions,
    glibc_minor: int = DEFAULT_GLIBC_MINOR,
) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "pip",
        action,
        "--no-deps",
        "--progress-bar",
        "off",
        "--disable-pip-version-check",
    ]
    if action == "download":
        cmd += ["--only-binary=:all:", "--python-version", python_minor, "--implementation", "cp"]
        abi = "cp" + python_minor.replace(".", "")
        cmd += ["--abi", abi, "--abi", "abi3", "--abi", "none"]
        for tag in platform_tags(arch, glibc_minor):
            cmd += ["--platform", tag]
    return cmd


def pip_environment(opts: BuildOptions) -> dict[str, str]:
    """The environment of a host ``pip``: indexes and CA bundle as ``PIP_*`` variables.

    Index URLs may carry credentials; on a command line they would be readable by every user of
    the machine in ``/proc/*/cmdline``, the environment of a process is not (RELIABILITY L7).
    """
    index = IndexOptions(opts.index_url, tuple(opts.extra_index_urls), opts.ca_bundle)
    return dict(os.environ, PIP_NO_INPUT="1", PYTHONUNBUFFERED="1", **index.environment())


def _run_pip(
    cmd: list[str], reporter: Reporter, cancel: CancelToken | None, opts: BuildOptions
) -> tuple[int, list[str]]:
    lines: list[str] = []
    env = pip_environment(opts)
    with subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
    ) as proc:
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


_NO_MATCH = re.compile(r"No matching distribution found for (\S+)")
PARALLEL_DOWNLOADS = 4


def _download(
    missing: list[str],
    folder: Path,
    python_minor: str,
    arch: str,
    opts: BuildOptions,
    reporter: Reporter,
    cancel: CancelToken | None,
    glibc_minor: int = DEFAULT_GLIBC_MINOR,
) -> None:
    """Fetch wheels in a few parallel pip processes; build the ones without a wheel."""
    from concurrent.futures import ThreadPoolExecutor

    chunks = [missing[i::PARALLEL_DOWNLOADS] for i in range(PARALLEL_DOWNLOADS)]
    with ThreadPoolExecutor(PARALLEL_DOWNLOADS) as pool:
        failed = [
            r
            for part in pool.map(
                lambda chunk: _download_chunk(
                    chunk, folder, python_minor, arch, opts, reporter, cancel, glibc_minor
                ),
                [c for c in chunks if c],
            )
            for r in part
        ]
    for req in failed:
        _build_from_source(req, folder, python_minor, arch, opts, reporter, cancel)


def _download_chunk(
    reqs: list[str],
    folder: Path,
    python_minor: str,
    arch: str,
    opts: BuildOptions,
    reporter: Reporter,
    cancel: CancelToken | None,
    glibc_minor: int = DEFAULT_GLIBC_MINOR,
) -> list[str]:
    """pip download ``reqs``; drop those pip finds no wheel for and retry; return them."""
    todo, without_wheel = list(reqs), []
    while todo:
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as fh:
            fh.write("\n".join(todo) + "\n")
            req_file = fh.name
        try:
            cmd = [
                *_pip_command("download", python_minor, arch, opts, glibc_minor),
                "-d",
                str(folder),
                "-r",
                req_file,
            ]
            code, lines = _run_pip(cmd, reporter, cancel, opts)
        finally:
            Path(req_file).unlink(missing_ok=True)
        if code == 0:
            break
        culprits = {m.group(1) for ln in lines for m in [_NO_MATCH.search(ln)] if m}
        bad = [r for r in todo if r in culprits]
        if not bad:
            tail = [ln for ln in lines if "ERROR" in ln][-3:]
            raise BuildError(
                "pip could not fetch the wheels: " + (" | ".join(tail) or "failed"),
                step="wheels",
                log_tail=lines[-20:],
                reason="no-wheel",
                hint="check the package index settings (--index-url, --ca-bundle)",
            )
        without_wheel += bad
        todo = [r for r in todo if r not in bad]
    return without_wheel


def _build_from_source(
    req: str,
    folder: Path,
    python_minor: str,
    arch: str,
    opts: BuildOptions,
    reporter: Reporter,
    cancel: CancelToken | None,
) -> None:
    """A pin with no wheel for the target: build a pure-Python wheel from its sdist here."""
    reporter(
        ProgressEvent(
            "wheels", f"{req} has no wheel for the image; building it from source", "info"
        )
    )
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [*_pip_command("wheel", python_minor, arch, opts), "-w", tmp, req]
        code, lines = _run_pip(cmd, reporter, cancel, opts)
        built = list(Path(tmp).glob("*.whl"))
        if code != 0 or not built:
            tail = [ln for ln in lines if "ERROR" in ln or "error" in ln][-5:]
            raise BuildError(
                f"cannot fetch {req} for Python {python_minor} ({arch}): "
                + (" | ".join(tail) or "pip failed"),
                step="wheels",
                log_tail=lines[-20:],
                reason="no-wheel",
                hint="is the name and version right, and is it on your index?",
            )
        for w in built:
            tags = parse_wheel_filename(w.name)[3]
            if not any(t.platform == "any" for t in tags):
                raise BuildError(
                    f"{req} has no wheel for {arch} and compiles native code",
                    step="wheels",
                    reason="no-wheel",
                    hint="publish a manylinux wheel, or pin a version that has one",
                )
            shutil.move(str(w), folder / w.name)
