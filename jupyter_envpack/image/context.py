"""The build context: an explicit allowlist of files, its content hash (the image tag), and a tar.

Only these ever reach the engine: the Dockerfile, the lock files, the runner, the outputs-stripped
notebook, the local modules and scripts the notebook reaches, its data files (``data/``, their own
layer) and the wheels. Symlinks that leave the notebook's
folder are never followed (RELIABILITY B3, B4, E5).
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import sys
import tarfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from packaging.utils import canonicalize_name, parse_wheel_filename

from ..errors import InputError
from ..safefs import refuse_symlink, safe_write
from ..snapshot.localfiles import MAX_LOCAL_FILE_BYTES, hidden, looks_secret, read_inside
from ..snapshot.notebook import dumps_notebook, parse_notebook, read_notebook_bytes
from ..snapshot.spec import EnvSpec
from .dockerfile import (
    DATA_DIR,
    DOCKERIGNORE,
    ENV_PREFIX,
    USER_SETUP,
    render_dockerfile,
)
from .layers import heavy_pins, layer_order, wheel_sizes
from .options import UV_VERSION, BuildOptions
from .refs import slug
from .syslibs import SystemNeeds
from .wheels import cache_dir, hashed_lock, target_arch

RUNNER_REQUIREMENTS = ("nbclient",)
_RUNNER_SCRIPT = Path(__file__).resolve().parent.parent / "execute" / "_runner_script.py"
_INSTALL_SCRIPT = Path(__file__).resolve().parent / "_install_env.py"


def strip_outputs(nb: Any) -> Any:
    """A copy of ``nb`` without outputs, execution counts or widget state (RELIABILITY E5)."""
    clean = copy.deepcopy(nb)
    for cell in clean.get("cells", []):
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
            md = cell.get("metadata", {})
            md.pop("execution", None)
    clean.get("metadata", {}).pop("widgets", None)
    return clean


def notebook_bytes(nb: Any) -> bytes:
    """Canonical bytes of a notebook (stable for the same content)."""
    return dumps_notebook(nb).encode("utf-8")


def runner_lock() -> list[str]:
    """Pinned closure of the runner (nbclient) from this process's environment."""
    from ..snapshot.probe import probe_interpreter
    from ..snapshot.resolve import Resolver

    global _runner_lock
    env = probe_interpreter(sys.executable)  # memoised while the environment is unchanged
    if _runner_lock is None or _runner_lock[0] is not env:
        res = Resolver(env).resolve(
            [(m, None) for m in RUNNER_REQUIREMENTS], [], include_kernel=False
        )
        _runner_lock = (env, [p.requirement for p in res.packages])
    return list(_runner_lock[1])


_runner_lock: tuple[Any, list[str]] | None = None


@dataclass
class BuildContext:
    """Files of a build context (path → bytes), without the wheels, plus the wheels' locks."""

    files: dict[str, bytes]
    repository: str
    env_lock: list[str]
    runner_lock: list[str]
    python_minor: str
    wheels: list[Path] = field(default_factory=list)
    canonical_dockerfile: bytes | None = None
    chain: str = ""
    """Hash of the layers under the heavy ones ("" when there are none), see :mod:`.layers`."""
    """The Dockerfile with the heavy layers in canonical order, when the build reorders them."""

    @property
    def tag_hash(self) -> str:
        """sha256 over every file of the context (the wheels are determined by the locks).

        The heavy layers' order (chosen from what the engine already has) is not part of it.
        """
        files = dict(self.files)
        if self.canonical_dockerfile is not None:
            files["Dockerfile"] = self.canonical_dockerfile
        h = hashlib.sha256()
        for name in sorted(files):
            h.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
        return h.hexdigest()

    @property
    def image(self) -> str:
        """``envpack/<slug>:<hash20>``: content-addressed, so unchanged means already built."""
        return f"{self.repository}:{self.tag_hash[:20]}"

    def write(self, folder: Path, wheels: bool = True) -> None:
        """Write the context into ``folder`` (``docker build folder`` then works by hand)."""
        for name, data in self.files.items():
            safe_write(_make_parents(folder, name), data)
        for w in self.wheels if wheels else []:  # one wheel in memory at a time
            safe_write(_make_parents(folder, f"envpack/wheels/{w.name}"), w.read_bytes())

    def tar(self) -> io.BytesIO:
        """An uncompressed tar of the context (fixed mtimes and owners)."""
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            entries = [(n, d) for n, d in sorted(self.files.items())]
            for name, data in entries:
                _add(tar, name, data)
            for w in sorted(self.wheels, key=lambda p: p.name):
                info = tarfile.TarInfo(f"envpack/wheels/{w.name}")
                info.size = w.stat().st_size
                info.mtime = 0
                info.mode = 0o644
                with w.open("rb") as fh:
                    tar.addfile(info, fh)
        buf.seek(0)
        return buf


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def _read_inside(folder: Path, rel: str, limit: int) -> bytes | None:
    """Bytes of ``folder/rel`` unless it is hidden, secret-looking, reached through a symlink, not
    a regular file or over ``limit`` bytes (RELIABILITY B3, B4, L5)."""
    path = PurePosixPath(rel)
    if hidden(path) or looks_secret(path.name):
        return None
    return read_inside(folder, path, limit)


def _local_files(nb_path: Path, spec: EnvSpec) -> dict[str, bytes]:
    folder = nb_path.parent.resolve()
    out: dict[str, bytes] = {}
    for rel in spec.local_files:
        data = _read_inside(folder, rel, MAX_LOCAL_FILE_BYTES)
        if data is not None:
            out[f"work/{rel}"] = data
    for item in spec.data_files:
        data = _read_inside(folder, item.path, item.size)
        if data is None or len(data) != item.size:
            raise InputError(
                f"data file {item.path} changed or disappeared since the snapshot",
                hint="take the snapshot again",
            )
        out[f"{DATA_DIR}/{item.path}"] = data
    return out


def make_context(
    spec: EnvSpec,
    nb_path: str | Path,
    opts: BuildOptions,
    runner: list[str] | None = None,
    wheel_url: str | None = None,
    system: SystemNeeds | None = None,
    hashes: dict[str, str] | None = None,
    history: list[list[str]] | None = None,
) -> BuildContext:
    """Assemble the context of ``spec`` for the notebook at ``nb_path`` (no wheels yet).

    ``wheel_url``: the wheelhouse is served to the build (one install layer, no wheels in the
    context); without it the wheels are added to the context by the caller. ``system``: apt
    packages for a layer before the environment. ``hashes``: wheel file name → sha256 recorded at
    fetch time; the locks then carry ``--hash`` lines and are installed with ``--require-hashes``.
    With both, heavy distributions get a layer each (:mod:`.layers`), ordered to extend the
    longest of ``history`` (heavy-layer lists of earlier builds with the same lower layers).
    """
    opts.validate()
    path = Path(nb_path)
    nb = parse_notebook(read_notebook_bytes(path), name=path.name)
    name = path.name
    if "/" in name or name.startswith(".") or "\0" in name:
        raise InputError(f"unsupported notebook file name: {name!r}")
    runner = runner if runner is not None else runner_lock()
    env_lock = spec.requirements_lines()
    lock_header = (
        f"# Pinned by jupyter-envpack from the kernel's environment (Python "
        f"{spec.python_minor}). Installed with uv --no-deps: exactly these.\n"
        f"# Base image: {opts.resolved_base_image(spec.python_minor)}"
        + (f" (local image id {opts.base_image_id})" if opts.base_image_id else "")
        + "\n"
    )
    kernel = {
        "argv": [f"{ENV_PREFIX}/bin/python", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python (envpack)",
        "language": "python",
    }
    tools = [f"uv=={UV_VERSION}"]
    pinned = [env_lock, runner, tools]
    if hashes:
        pinned = [hashed_lock(lock, hashes) for lock in pinned]
    files: dict[str, bytes] = {
        "Dockerfile": b"",  # rendered below, once the heavy layers are known; written first
        ".dockerignore": DOCKERIGNORE.encode(),
        "envpack/requirements.lock": (lock_header + "\n".join(pinned[0]) + "\n").encode(),
        "envpack/runner.lock": (
            "# The runner's own venv (nbclient); never mixed with the notebook's.\n"
            + "\n".join(pinned[1])
            + "\n"
        ).encode(),
        "envpack/tools.lock": ("\n".join(pinned[2]) + "\n").encode(),
        "envpack/run_notebook.py": _RUNNER_SCRIPT.read_bytes(),
        "envpack/install_env.py": _INSTALL_SCRIPT.read_bytes(),
        "envpack/kernel.json": json.dumps(kernel, indent=1).encode(),
        f"work/{name}": notebook_bytes(strip_outputs(nb)),
    }
    heavy: list[str] = []
    digests: dict[str, str] = {}
    if wheel_url and hashes:
        if opts.layers == "shared":
            sizes = wheel_sizes(cache_dir(spec.python_minor, target_arch()), hashes)
            digests = _one_wheel_digests(heavy_pins(spec, sizes), hashes)
            heavy = [pin for pin in heavy_pins(spec, sizes) if pin in digests]
        files["envpack/rest.lock"] = _rest_lock(pinned[0], heavy)
    chain = _chain(files, opts, wheel_url) if heavy else ""

    def render(order: list[str]) -> bytes:
        return render_dockerfile(
            spec, opts, name, wheel_url, system, bool(hashes), order, chain, digests
        ).encode()

    files["Dockerfile"] = render(heavy)
    order = layer_order(heavy, history or [])
    canonical = None
    if order != heavy:
        canonical, files["Dockerfile"] = files["Dockerfile"], render(order)
    files.update(_local_files(path, spec))
    uv_sums = [
        f"{d}  {n}\n" for n, d in (hashes or {}).items() if n.startswith(f"uv-{UV_VERSION}-")
    ]
    if uv_sums:
        files["envpack/uv.sha256"] = "".join(sorted(uv_sums)).encode()
    return BuildContext(
        files=files,
        repository=f"envpack/{slug(path.stem)}",
        env_lock=env_lock,
        runner_lock=runner,
        python_minor=spec.python_minor,
        canonical_dockerfile=canonical,
        chain=chain,
    )


def _one_wheel_digests(pins: list[str], hashes: dict[str, str]) -> dict[str, str]:
    """pin → sha256 of its wheel, for the pins that have exactly one wheel file."""
    found: dict[str, list[str]] = {}
    for name, digest in hashes.items():
        dist, version, _build, _tags = parse_wheel_filename(name)
        found.setdefault(f"{dist}=={version}", []).append(digest)
    return {pin: found[pin][0] for pin in pins if len(found.get(pin, [])) == 1}


def _rest_lock(lines: list[str], heavy: list[str]) -> bytes:
    """The lock lines not installed by a heavy layer."""
    skip = {_pin_key(p) for p in heavy}
    return "".join(f"{ln}\n" for ln in lines if _pin_key(ln.split(" ", 1)[0]) not in skip).encode()


def _pin_key(pin: str) -> str:
    name, _, version = pin.partition("==")
    return f"{canonicalize_name(name)}=={version}"


def _chain(files: dict[str, bytes], opts: BuildOptions, wheel_url: str | None) -> str:
    """Hash of what the build writes under the heavy layers (see :data:`.layers.CHAIN_LABEL`)."""
    h = hashlib.sha256()
    parts = [opts.base_image or "", opts.base_image_id or "", wheel_url or "", UV_VERSION]
    for part in [*parts, USER_SETUP]:
        h.update(part.encode() + b"\0")
    for name in ("envpack/runner.lock", "envpack/tools.lock", "envpack/install_env.py"):
        h.update(hashlib.sha256(files[name]).digest())
    return h.hexdigest()[:32]


def _make_parents(folder: Path, name: str) -> Path:
    """``folder/name`` with its folders created; a planted link on the way is refused (L1)."""
    target = folder
    for part in Path(name).parts[:-1]:
        target = target / part
        refuse_symlink(target)
        target.mkdir(exist_ok=True)
    return target / Path(name).name
