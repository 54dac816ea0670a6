"""Rerun a notebook without any container engine: a fresh virtualenv built from the lock with uv.

The venv holds exactly the snapshot's pins (``uv pip install --no-deps --no-index
--require-hashes`` from the same host wheel cache the image build uses), is keyed by the lock's
hash under the envpack cache directory (0700) and reused. The notebook runs through the same
runner script as in the image, on the host's nbclient, with a temporary kernelspec whose kernel
sets ``RLIMIT_AS`` before it starts. The result is the same ``envpack.report/1`` with
``engine: "venv"``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

from ..contract import PARAMETERS_ENV
from ..errors import CancelledError, RunError
from ..events import CancelToken, ProgressEvent, Reporter, null_reporter
from ..image.context import _RUNNER_SCRIPT, _local_files, notebook_bytes, strip_outputs
from ..image.dockerfile import DATA_DIR
from ..image.options import BuildOptions
from ..image.wheels import ensure_wheels
from ..snapshot.notebook import parse_notebook, read_notebook_bytes
from ..snapshot.spec import EnvSpec
from .run import (
    RunnerLog,
    RunOptions,
    RunResult,
    check_exit,
    finish_run,
    has_errors,
    parse_memory,
)

ENGINE = "venv"
_COMPLETE = ".envpack-complete"
_KERNEL_BOOT = (
    "import resource, runpy, sys\n"
    "limit = int(sys.argv.pop(1))\n"
    "if limit > 0:\n"
    "    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))\n"
    "sys.argv[0] = 'ipykernel_launcher'\n"
    "runpy.run_module('ipykernel_launcher', run_name='__main__', alter_sys=True)\n"
)


def uv_binary() -> str:
    """Path of the ``uv`` executable of the ``uv`` package (a dependency), else on ``PATH``."""
    try:
        from uv import find_uv_bin

        return str(find_uv_bin())
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
    if not found:
        raise RunError(
            "uv is not installed",
            reason="no-uv",
            hint="pip install uv (a jupyter-envpack dependency)",
        )
    return found


def venv_available() -> bool:
    """True when a fresh-venv rerun can be attempted here (uv found, POSIX resource limits)."""
    try:
        uv_binary()
    except RunError:
        return False
    return os.name == "posix"


def venv_root() -> Path:
    """``$ENVPACK_VENV_CACHE`` or ``~/.cache/jupyter-envpack/venvs`` (created 0700)."""
    base = os.environ.get("ENVPACK_VENV_CACHE") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        / "jupyter-envpack"
        / "venvs"
    )
    root = Path(base)
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    root.chmod(0o700)
    return root


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(2**20), b""):
            h.update(chunk)
    return h.hexdigest()


def lock_key(spec: EnvSpec, recorded: dict[str, list[str]] | None = None) -> str:
    """The venv's cache key: Python X.Y, platform, the lock's lines and its recorded hashes."""
    hashes = [f"{k}:{','.join(sorted(v))}" for k, v in sorted((recorded or {}).items())]
    text = "\n".join([spec.python_minor, sys.platform, *spec.requirements_lines(), *hashes])
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def find_python(minor: str, hint_interpreter: str = "") -> str:
    """An interpreter of Python ``minor`` (X.Y) on this machine.

    Tries uv's interpreter discovery (PATH, pyenv, uv-managed), then the snapshot's interpreter.
    Raises :class:`RunError` with how to install one when none is found.
    """
    proc = subprocess.run(
        [uv_binary(), "python", "find", "--no-project", minor],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if proc.returncode == 0 and proc.stdout.strip():
        return proc.stdout.strip().splitlines()[-1]
    if hint_interpreter and _version_of(hint_interpreter) == minor:
        return hint_interpreter
    raise RunError(
        f"no Python {minor} interpreter on this machine for the fresh environment",
        reason="no-python",
        hint=f"install one with `uv python install {minor}` (or pyenv install {minor}) and rerun",
    )


def _version_of(interpreter: str) -> str | None:
    try:
        proc = subprocess.run(
            [interpreter, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except OSError:
        return None
    return proc.stdout.strip() or None


def _uv(args: list[str], step: str, timeout: float) -> None:
    proc = subprocess.run(
        [uv_binary(), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "UV_NO_CONFIG": "1"},
    )
    if proc.returncode != 0:
        raise RunError(
            f"uv failed to {step}: {proc.stderr.strip()[-2000:]}",
            reason="venv-failed",
            hint="check the wheel cache and the lock; rerun with -v",
        )


def ensure_venv(
    spec: EnvSpec,
    build: BuildOptions | None = None,
    reporter: Reporter = null_reporter,
    cancel: CancelToken | None = None,
    recorded: dict[str, list[str]] | None = None,
) -> tuple[Path, bool]:
    """The venv of ``spec``'s lock (created or reused) and whether it was reused.

    ``recorded``: sha256 hashes per distribution from the notebook's lock file; a cached wheel
    that matches none of them fails the install (else the cached wheels' own hashes are used).
    """
    root = venv_root()
    target = root / lock_key(spec, recorded)
    if (target / _COMPLETE).is_file() and not (target / _COMPLETE).is_symlink():
        reporter(ProgressEvent("venv", f"reusing the environment {target.name}", "info"))
        return target, True
    lines = spec.requirements_lines()
    wheels = ensure_wheels(lines, spec.python_minor, build or BuildOptions(), reporter, cancel)
    python = find_python(spec.python_minor, spec.interpreter)
    reporter(ProgressEvent("venv", f"creating a fresh environment with {python}", "step"))
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=root))
    try:
        _uv(
            ["venv", "--quiet", "--relocatable", "--python", python, str(work / "env")],
            "create",
            300,
        )
        lock = work / "requirements.lock"
        lock.write_text(_hashed_lock(lines, wheels, recorded or {}))
        folder = wheels[0].parent if wheels else work
        install = ["pip", "install", "--quiet", "--no-deps", "--no-index", "--require-hashes"]
        install += ["--find-links", str(folder), "--python", str(work / "env" / "bin" / "python")]
        _uv([*install, "-r", str(lock)], "install the lock", 1800)
        (work / "env" / _COMPLETE).write_text(json.dumps({"lock": lines}))
        if target.exists():
            shutil.rmtree(target)
        (work / "env").rename(target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target, False


def _hashed_lock(lines: list[str], wheels: list[Path], recorded: dict[str, list[str]]) -> str:
    """``name==version --hash=sha256:…`` for every pin: the lock file's hashes when it has them,
    else those of the cached wheels it may use."""
    known = {str(canonicalize_name(k)): v for k, v in recorded.items() if v}
    hashes: dict[tuple[str, str], list[str]] = {}
    for w in wheels:
        wname, wversion, _build, _tags = parse_wheel_filename(w.name)
        hashes.setdefault((str(wname), str(wversion)), []).append(_sha256(w))
    out = []
    for line in lines:
        name, _, version = line.partition("==")
        key = (str(canonicalize_name(name)), str(Version(version)))
        chosen = known.get(key[0]) or hashes.get(key, [])
        out.append(line + "".join(f" --hash=sha256:{h}" for h in chosen))
    return "\n".join(out) + "\n"


def run_notebook_venv(
    spec: EnvSpec,
    nb_path: str | Path,
    options: RunOptions | None = None,
    reporter: Reporter = null_reporter,
    cancel: CancelToken | None = None,
    build: BuildOptions | None = None,
    files_from: str | Path | None = None,
) -> RunResult:
    """Execute ``nb_path`` in a fresh venv of ``spec``'s lock and report cell by cell.

    ``files_from``: the notebook whose folder holds the local and data files (default
    ``nb_path``; the pytest plugin runs a prepared copy of the notebook from elsewhere).

    The same call shape as :func:`~jupyter_envpack.execute.run_notebook`, with the snapshot in
    place of the image. Raises :class:`RunError` (``no-python``, ``venv-failed``, ``timeout``…).
    """
    started = time.monotonic()
    opts = options or RunOptions()
    opts.validate()
    path = Path(nb_path)
    original = parse_notebook(read_notebook_bytes(path), name=path.name)
    allow_errors = opts.allow_errors if opts.allow_errors is not None else has_errors(original)
    env_dir, _reused = ensure_venv(spec, build, reporter, cancel, _recorded_hashes(path))
    with tempfile.TemporaryDirectory(prefix="envpack-venv-run-") as tmp:
        work = _stage(Path(tmp), path, spec, original, Path(files_from or path))
        code, executed_text = _execute(
            work, env_dir, path.name, opts, allow_errors, reporter, cancel
        )
    result = finish_run(
        path,
        code,
        executed_text,
        opts,
        None,
        f"venv:{env_dir.name}",
        allow_errors,
        original,
        reporter,
        engine=ENGINE,
    )
    result.duration = time.monotonic() - started
    return result


def _recorded_hashes(nb_path: Path) -> dict[str, list[str]]:
    """Hashes of ``<stem>.envpack.lock`` beside the notebook, when there is one."""
    from ..snapshot.lock import lock_path, read_lock

    path = lock_path(nb_path)
    return read_lock(path).hashes if path.is_file() and not path.is_symlink() else {}


def _stage(tmp: Path, path: Path, spec: EnvSpec, original: Any, files_from: Path) -> Path:
    """The run's working folder: outputs-stripped notebook, local and data files, kernelspec."""
    work = tmp / "work"
    work.mkdir(mode=0o700)
    (work / path.name).write_bytes(notebook_bytes(strip_outputs(original)))
    for name, data in _local_files(files_from, spec).items():
        rel = name.split("/", 1)[1] if name.startswith(("work/", f"{DATA_DIR}/")) else name
        target = work / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return work


def _kernelspec(tmp: Path, env_dir: Path, mem_limit: str | None) -> Path:
    """A temporary Jupyter data dir holding the ``envpack`` kernelspec of ``env_dir``."""
    limit = parse_memory(mem_limit) if mem_limit else 0
    folder = tmp / "jupyter" / "kernels" / "envpack"
    folder.mkdir(parents=True)
    argv = [
        str(env_dir / "bin" / "python"),
        "-c",
        _KERNEL_BOOT,
        str(limit),
        "-f",
        "{connection_file}",
    ]
    spec = {"argv": argv, "display_name": "Python (envpack venv)", "language": "python"}
    (folder / "kernel.json").write_text(json.dumps(spec))
    return tmp / "jupyter"


def _execute(
    work: Path,
    env_dir: Path,
    name: str,
    opts: RunOptions,
    allow_errors: bool,
    reporter: Reporter,
    cancel: CancelToken | None,
) -> tuple[int, str]:
    """Run the runner script on the host's nbclient against the venv's kernel."""
    data_dir = _kernelspec(work.parent, env_dir, opts.mem_limit)
    out = work.parent / "executed.ipynb"
    argv = [sys.executable, str(_RUNNER_SCRIPT), "--input", str(work / name), "--output", str(out)]
    argv += ["--cell-timeout", str(opts.cell_timeout)] + (
        ["--allow-errors"] if allow_errors else []
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("JUPYTER", "PYTHON", "VIRTUAL_ENV"))
    }
    env.update(JUPYTER_PATH=str(data_dir), JUPYTER_DATA_DIR=str(data_dir), PYTHONUNBUFFERED="1")
    env["JUPYTER_RUNTIME_DIR"] = str(work.parent / "runtime")
    if opts.parameters:
        from .parameters import parameters_cell_source

        env[PARAMETERS_ENV] = parameters_cell_source(opts.parameters)
    reporter(ProgressEvent("run", f"starting the kernel in {env_dir.name}", "step", 0.0))
    proc = subprocess.Popen(
        argv,
        cwd=work,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    tail = _follow(proc, opts.deadline, reporter, cancel)
    check_exit(proc.returncode, tail)
    if not out.is_file():
        raise RunError(
            "the runner wrote no executed notebook: " + " | ".join(tail[-5:]), reason="no-result"
        )
    return proc.returncode, out.read_text(encoding="utf-8")


def _follow(
    proc: subprocess.Popen[str], deadline: float, reporter: Reporter, cancel: CancelToken | None
) -> list[str]:
    """Relay the runner's progress until it exits; kill its process group on deadline/cancel."""
    tail: list[str] = []
    log = RunnerLog(reporter)

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            tail.append(line.rstrip("\n")[:4096])
            del tail[:-50]
            log.line(tail[-1])

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    end = time.monotonic() + deadline
    while proc.poll() is None:
        if cancel is not None and cancel.cancelled:
            _kill(proc)
            raise CancelledError("run cancelled")
        if time.monotonic() > end:
            _kill(proc)
            raise RunError(
                f"the notebook did not finish within {deadline:.0f} s",
                reason="timeout",
                hint="raise --deadline, or look for a hanging cell",
            )
        time.sleep(0.2)
    reader.join(timeout=5)
    return tail


def _kill(proc: subprocess.Popen[str]) -> None:
    """SIGKILL the runner and its kernel (its own session / process group)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)
