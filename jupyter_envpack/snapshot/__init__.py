"""Snapshot: a notebook + the kernel's interpreter → a pinned :class:`EnvSpec`."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .notebook import DEFAULT_MAX_BYTES, analyse_notebook, find_local_modules
from .probe import Environment, probe_interpreter, resolve_kernel_python
from .resolve import Resolver
from .spec import EnvSpec, Finding, PinnedPackage

__all__ = ["EnvSpec", "Finding", "PinnedPackage", "select_interpreter", "take_snapshot"]


def select_interpreter(
    python: str | None, kernel: str | None, notebook_kernel: str | None
) -> tuple[str, str | None]:
    """Pick the interpreter to probe: ``--python``, else ``--kernel``, else the notebook's kernel.

    Returns ``(interpreter, kernel_name)``. A notebook kernelspec that is not installed here falls
    back to the current interpreter (the usual case for ``python3``).
    """
    from ..errors import InputError

    if python and kernel:
        raise InputError("give either --python or --kernel, not both")
    if python:
        return python, None
    if kernel:
        return resolve_kernel_python(kernel), kernel
    if notebook_kernel:
        try:
            return resolve_kernel_python(notebook_kernel), notebook_kernel
        except InputError:
            pass
    return sys.executable, notebook_kernel


def take_snapshot(
    path: str | os.PathLike[str],
    python: str | None = None,
    kernel: str | None = None,
    probe: Environment | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> EnvSpec:
    """Read ``path``, find its imports and pin them against the kernel's environment."""
    nb_path = Path(path)
    analysis, _nb = analyse_notebook(nb_path, max_bytes=max_bytes)
    if probe is None:
        interpreter, kernel_name = select_interpreter(python, kernel, analysis.kernel_name)
        env = probe_interpreter(interpreter)
    else:
        env, kernel_name = probe, kernel or analysis.kernel_name
    resolver = Resolver(env)
    folder = nb_path.parent if str(nb_path.parent) else Path()
    candidates = {
        u.module for u in analysis.imports if u.local_hint or not resolver.is_stdlib(u.module)
    }
    wanted = set(candidates)
    local, local_findings = find_local_modules(folder, wanted)
    imports: list[tuple[str, int | None]] = [
        (u.module, u.cell) for u in analysis.imports if u.module not in local and not u.local_hint
    ]
    imports += [(m, None) for m in sorted(wanted - candidates) if m not in local]
    resolution = resolver.resolve(imports, analysis.pip_requirements)
    local_files = sorted({str(f.relative_to(folder)) for files in local.values() for f in files})
    return EnvSpec(
        notebook=str(nb_path),
        python_version=env.python_version,
        packages=resolution.packages,
        local_files=local_files,
        warnings=analysis.findings + local_findings + resolution.findings,
        interpreter=env.executable,
        kernel_name=kernel_name,
    )
