"""Snapshot: a notebook + the kernel's interpreter → a pinned :class:`EnvSpec`."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .datafiles import DataOptions, find_data_files
from .index import IndexOptions
from .localfiles import LocalCode
from .notebook import DEFAULT_MAX_BYTES, NotebookAnalysis, analyse_notebook
from .pins import pin_from_index
from .probe import Environment, probe_interpreter, resolve_kernel_python
from .resolve import Resolver
from .spec import DataFile, EnvSpec, Finding, PinnedPackage

__all__ = [
    "DataFile",
    "DataOptions",
    "EnvSpec",
    "Finding",
    "IndexOptions",
    "PinnedPackage",
    "ReconstructOptions",
    "SnapshotOptions",
    "select_interpreter",
    "take_snapshot",
]


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


@dataclass(frozen=True)
class ReconstructOptions:
    """Ask for a reconstruction instead of a kernel's environment (:mod:`.reconstruct`; defined
    here so that a snapshot does not import the reconstruction machinery).

    Parameters
    ----------
    as_of
        Newest release date ``YYYY-MM-DD`` (default: last commit of the notebook, else mtime).
    python
        Target Python ``X.Y`` (default: :func:`.reconstruct.default_python`: the configured base
        image's, else the notebook's when a ``python:X.Y-slim`` exists, else the kernel's).
    base_image
        The configured base image, if any.
    """

    as_of: str | None = None
    python: str | None = None
    base_image: str | None = None


@dataclass(frozen=True)
class SnapshotOptions:
    """What a snapshot ships besides the environment, and where it may pin what the kernel lacks.

    Parameters
    ----------
    data
        Data-file size cap and ``--include``/``--exclude`` globs.
    index
        Package index settings for what is pinned from the index (default: the user's pip's).
    from_index
        Pin ipykernel (when the kernel's environment has none) and exact ``%pip`` pins the kernel
        lacks from the index; False leaves them as warnings (no network).
    reconstruct
        Reconstruct the environment instead of probing a kernel (issue 13.2): the pins are an
        educated guess as of a date, not what ran (``origin: "reconstructed"``).
    """

    data: DataOptions = field(default_factory=DataOptions)
    index: IndexOptions = field(default_factory=IndexOptions)
    from_index: bool = True
    reconstruct: ReconstructOptions | None = None


def take_snapshot(
    path: str | os.PathLike[str],
    python: str | None = None,
    kernel: str | None = None,
    probe: Environment | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    options: SnapshotOptions | None = None,
) -> EnvSpec:
    """Read ``path``, find its imports, local code and data files; pin the kernel's environment.

    With ``options.reconstruct`` the pins are reconstructed instead (no kernel is probed):
    :func:`~.reconstruct.reconstructed_spec`.
    """
    options = options or SnapshotOptions()
    if options.reconstruct is not None:
        from .reconstruct import reconstructed_spec

        return reconstructed_spec(path, options.reconstruct, options, kernel, python)
    nb_path = Path(path)
    analysis, _nb = analyse_notebook(nb_path, max_bytes=max_bytes)
    if probe is None:
        interpreter, kernel_name = select_interpreter(python, kernel, analysis.kernel_name)
        env = probe_interpreter(interpreter)
    else:
        env, kernel_name = probe, kernel or analysis.kernel_name
    resolver = Resolver(env)
    folder = nb_path.parent if str(nb_path.parent) else Path()
    code = local_code(folder, analysis, resolver.is_stdlib)
    direct = {u.module for u in analysis.imports}
    imports: list[tuple[str, int | None]] = [
        (u.module, u.cell)
        for u in analysis.imports
        if u.module not in code.tops and not u.local_hint
    ]
    imports += [(m, None) for m in sorted(code.external - direct - code.tops)]
    resolution = resolver.resolve(imports, analysis.pip_requirements)
    packages, index_findings = pin_from_index(resolution, env.python_version, options)
    literals = [*analysis.paths, *((lit, None) for lit in code.paths)]
    data, data_findings = find_data_files(
        folder, literals, nb_path.name, set(code.files), options.data
    )
    return EnvSpec(
        notebook=str(nb_path),
        python_version=env.python_version,
        packages=packages,
        local_files=sorted(code.files),
        data_files=data,
        warnings=[
            *analysis.findings,
            *code.findings,
            *resolution.findings,
            *index_findings,
            *data_findings,
            *gpu_findings(packages),
        ],
        interpreter=env.executable,
        kernel_name=kernel_name,
    )


def gpu_findings(packages: list[PinnedPackage]) -> list[Finding]:
    """A ``gpu-required`` finding when the closure holds CUDA wheels (see :mod:`..gpu`)."""
    from ..gpu import gpu_summary

    gpu = gpu_summary((p.name, p.version) for p in packages)
    if gpu is None:
        return []
    shown = ", ".join(gpu["packages"][:4]) + (", …" if len(gpu["packages"]) > 4 else "")
    return [
        Finding(
            "gpu-required",
            f"the notebook needs an NVIDIA GPU (CUDA {gpu['cuda'] or '?'} wheels: {shown})",
            hint="run it with --gpus all (or c.EnvPack.gpus); submit it with --gpus N",
        )
    ]


def local_code(
    folder: Path, analysis: NotebookAnalysis, is_stdlib: Callable[[str], bool]
) -> LocalCode:
    """The local modules and scripts the notebook reaches, scanned in turn."""
    code = LocalCode(folder, is_stdlib)
    for use in analysis.imports:
        code.add_module(use.module, 1 if use.local_hint else 0)
    for name, level, _cell in analysis.modules:
        code.add_module(name, level)
    for mod, _cell in analysis.run_modules:
        code.add_module(mod)
    for script, cell in analysis.scripts:
        code.add_script(script, cell)
    return code
