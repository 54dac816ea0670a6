"""EnvSpec: the pinned environment of one notebook, its JSON form and its content hash."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

SNAPSHOT_SCHEMA = "envpack.snapshot/1"


@dataclass(frozen=True)
class Finding:
    """A visible warning about the snapshot, with a stable ``code``.

    Codes: ``unresolved-import``, ``unparseable-cell``, ``editable-install``, ``vcs-install``,
    ``local-path-install``, ``not-from-index``, ``invalid-version``, ``local-version``,
    ``ambiguous-import``, ``missing-dependency``, ``pip-not-installed``, ``no-ipykernel``,
    ``assumed-python``, ``dynamic-import``, ``local-file-skipped``, ``local-files-capped``,
    ``secret-file-skipped``, ``missing-script``, ``external-data-file``, ``large-data-files``,
    ``unparseable-pip-requirement``, ``pip-pin-from-index``, ``runner-from-index``.
    """

    code: str
    message: str
    cell: int | None = None
    hint: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form (``cell`` and ``hint`` only when set)."""
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.cell is not None:
            out["cell"] = self.cell
        if self.hint:
            out["hint"] = self.hint
        return out


@dataclass(frozen=True)
class PinnedPackage:
    """One distribution of the closure, pinned to the version installed in the kernel."""

    name: str
    version: str
    requested: bool = False
    modules: tuple[str, ...] = ()
    reason: str | None = None
    """Why it is pinned when the kernel did not provide it: ``runner`` (ipykernel, added so the
    image can start a kernel) or ``pip-pin`` (an exact ``%pip install x==v`` the kernel lacks)."""

    @property
    def requirement(self) -> str:
        """The ``name==version`` line for a lock file (both already validated)."""
        return f"{self.name}=={self.version}"

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form."""
        out: dict[str, Any] = {
            "name": self.name,
            "version": self.version,
            "requested": self.requested,
            "modules": list(self.modules),
        }
        if self.reason:
            out["reason"] = self.reason
        return out


@dataclass(frozen=True)
class DataFile:
    """A data file shipped beside the notebook (path relative to its folder, size in bytes)."""

    path: str
    size: int

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form."""
        return {"path": self.path, "size": self.size}


@dataclass
class EnvSpec:
    """Everything needed to rebuild a notebook's environment.

    Parameters
    ----------
    notebook
        Path of the notebook (as given, relative to where it was read from).
    python_version
        Full version of the kernel's interpreter, e.g. ``3.11.7``.
    packages
        The pinned closure, sorted by name.
    local_files
        Files next to the notebook that its imports and ``%run`` scripts need, relative to the
        notebook's folder.
    data_files
        Files the notebook's code names (data it reads), shipped in their own image layer.
    warnings
        Everything that could not be pinned or resolved.
    interpreter
        Path of the interpreter that was probed.
    origin
        Where the pins come from: ``kernel`` (probed), ``lock`` (``NB.envpack.lock``) or
        ``reconstructed`` (an educated reconstruction, not what ran: issue 13.2).
    reconstruction
        With ``origin == "reconstructed"``: the date, Python, candidates and their evidence.
    """

    notebook: str
    python_version: str
    packages: list[PinnedPackage] = field(default_factory=list)
    local_files: list[str] = field(default_factory=list)
    warnings: list[Finding] = field(default_factory=list)
    interpreter: str = ""
    kernel_name: str | None = None
    data_files: list[DataFile] = field(default_factory=list)
    origin: str = "kernel"
    reconstruction: dict[str, Any] | None = None

    @property
    def reconstructed(self) -> bool:
        """Whether the pins are a reconstruction rather than what ran."""
        return self.origin == "reconstructed"

    @property
    def image_files(self) -> list[str]:
        """Every file of the notebook's folder that goes into the image (shown before a push)."""
        name = self.notebook.replace("\\", "/").rsplit("/", 1)[-1]
        return sorted({name, *self.local_files, *(d.path for d in self.data_files)})

    def files_summary(self, limit: int = 30) -> str:
        """One line naming the files of the notebook's folder that go into the image."""
        files = self.image_files
        data = sum(d.size for d in self.data_files)
        more = f", … {len(files) - limit} more" if len(files) > limit else ""
        return (
            f"{len(files)} files go into the image ({data / 2**20:.1f} MiB of data): "
            + ", ".join(files[:limit])
            + more
        )

    @property
    def gpu(self) -> dict[str, Any] | None:
        """``{"required": True, "cuda": "12", "packages": [...]}`` when the closure holds CUDA
        wheels (torch ``+cu121``, ``nvidia-*-cu12``, ``cupy-cuda12x``...), else ``None``."""
        from ..gpu import gpu_summary

        return gpu_summary((p.name, p.version) for p in self.packages)

    @property
    def python_minor(self) -> str:
        """``X.Y`` of the kernel's Python."""
        return ".".join(self.python_version.split(".")[:2])

    @property
    def hash(self) -> str:
        """sha256 of the environment's identity: Python ``X.Y`` and the pinned closure."""
        ident: dict[str, Any] = {
            "python": self.python_minor,
            "packages": sorted(p.requirement for p in self.packages),
        }
        if self.reconstructed:  # never shares an image (and its labels) with what ran
            ident["origin"] = self.origin
        blob = json.dumps(ident, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()

    def requirements_lines(self) -> list[str]:
        """The lock file's lines: one ``name==version`` per pinned package."""
        return [p.requirement for p in sorted(self.packages, key=lambda p: p.name.lower())]

    def to_json(self) -> dict[str, Any]:
        """Return the ``envpack.snapshot/1`` JSON object (the CLI's ``--json`` output)."""
        return {
            "schema": SNAPSHOT_SCHEMA,
            "notebook": self.notebook,
            "python": {"version": self.python_version, "interpreter": self.interpreter},
            "kernel": self.kernel_name,
            "packages": [p.to_json() for p in self.packages],
            "local_files": list(self.local_files),
            "data_files": [d.to_json() for d in self.data_files],
            "image_files": self.image_files,
            "warnings": [w.to_json() for w in self.warnings],
            "gpu": self.gpu,
            "hash": self.hash,
            "origin": self.origin,
            **({"reconstruction": self.reconstruction} if self.reconstruction else {}),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EnvSpec:
        """Rebuild an EnvSpec from :meth:`to_json` output."""
        if data.get("schema") != SNAPSHOT_SCHEMA:
            raise ValueError(f"not an {SNAPSHOT_SCHEMA} object")
        return cls(
            notebook=data["notebook"],
            python_version=data["python"]["version"],
            interpreter=data["python"].get("interpreter", ""),
            kernel_name=data.get("kernel"),
            packages=[
                PinnedPackage(
                    p["name"],
                    p["version"],
                    p.get("requested", False),
                    tuple(p.get("modules", ())),
                    p.get("reason"),
                )
                for p in data["packages"]
            ],
            local_files=list(data.get("local_files", [])),
            data_files=[DataFile(d["path"], int(d["size"])) for d in data.get("data_files", [])],
            warnings=[
                Finding(w["code"], w["message"], w.get("cell"), w.get("hint"))
                for w in data.get("warnings", [])
            ],
            origin=str(data.get("origin") or "kernel"),
            reconstruction=data.get("reconstruction"),
        )
