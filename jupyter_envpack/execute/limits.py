"""Resource limits of a rerun container, on by default (RELIABILITY L4).

A notebook from someone else may allocate without end, fork without end or write outside its
folder. Every rerun therefore gets a memory limit (no swap), a CPU quota, a pids limit, a
read-only root filesystem with a writable home (an anonymous volume: the work folder is in it,
the executed notebook comes back from it) and ``/tmp`` as a size-limited tmpfs, no new
privileges and no capabilities. The limits are written into the report, and a cell stopped by
one is reported by name: ``out-of-memory``, ``pids-limit`` or ``read-only``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .. import defaults
from ..contract import HOME, LABEL
from ..errors import InputError
from ..gpu import gpu_host_config, parse_gpus

DEFAULT_MEMORY = defaults.RUN_MEMORY
DEFAULT_CPUS = defaults.RUN_CPUS
DEFAULT_PIDS = defaults.RUN_PIDS
DEFAULT_TMP_SIZE = "256m"
LOG_CONFIG = {"type": "json-file", "config": {"max-size": "16m", "max-file": "2"}}
MIN_MEMORY = 32 * 2**20
_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*(?:([kmgt])i?)?b?", re.IGNORECASE)


def parse_memory(text: str | int, minimum: int = MIN_MEMORY) -> int:
    """Return a memory size in bytes: the one grammar of every surface and backend.

    Parameters
    ----------
    text
        Bytes as an integer, or a number with an optional unit: ``512m``, ``2g``, ``1.5G``,
        ``1Gi``, ``4096``. Docker's ``k``/``m``/``g``/``t`` are binary units like
        ``docker run -m`` reads them, and so are Kubernetes' ``Ki``/``Mi``/``Gi``/``Ti``; a
        trailing ``b`` is allowed.
    minimum
        The smallest size accepted (32 MiB for a container's memory limit by default).

    Returns
    -------
    int
        The size in bytes.
    """
    if isinstance(text, int) and not isinstance(text, bool):
        size: float = text
    elif isinstance(text, str) and (match := _SIZE.fullmatch(text.strip())):
        size = float(match.group(1)) * _UNITS[(match.group(2) or "").lower()]
    else:
        raise InputError(f"invalid memory size {text!r}", hint="use e.g. 512m, 2g or 1Gi")
    least = max(minimum, 1)
    if size < least:
        shown = f"{least // 2**20} MiB" if least % 2**20 == 0 else f"{least} bytes"
        raise InputError(f"memory size {text!r} is below {shown}", hint="give more memory")
    return int(size)


@dataclass(frozen=True)
class RunLimits:
    """What one rerun container may use.

    Parameters
    ----------
    memory
        Memory limit (``2g``, ``512m`` or bytes); swap is not allowed on top.
    cpus
        CPU quota in cores.
    pids
        Most processes and threads at once.
    read_only
        Read-only root filesystem (the home folder, with the work folder, and ``/tmp`` stay
        writable).
    tmp_size
        Size of the ``/tmp`` tmpfs (it counts against ``memory``).
    gpus
        GPUs the container gets (``"all"`` or a count; ``None``: none), as engine device
        requests (Docker with the NVIDIA Container Toolkit; Podman's Docker API).
    """

    memory: str = DEFAULT_MEMORY
    cpus: float = DEFAULT_CPUS
    pids: int = DEFAULT_PIDS
    read_only: bool = True
    tmp_size: str = DEFAULT_TMP_SIZE
    gpus: str | int | None = None

    def validate(self) -> None:
        """Raise :class:`InputError` for limits no container can have."""
        parse_memory(self.memory)
        parse_memory(self.tmp_size)
        if not 0 < self.cpus <= 1024:
            raise InputError(f"invalid CPU limit {self.cpus!r}", hint="use e.g. 1 or 0.5")
        if not 16 <= int(self.pids) <= 1_000_000:
            raise InputError(f"invalid pids limit {self.pids!r}", hint="use at least 16")
        parse_gpus(self.gpus)

    def host_config(self, engine: str = "docker") -> dict[str, Any]:
        """Keyword arguments of ``containers.create`` that enforce these limits (and give the
        GPUs asked for, the way ``engine``, ``docker`` or ``podman``, understands)."""
        memory = parse_memory(self.memory)
        tmp = f"rw,nosuid,nodev,size={parse_memory(self.tmp_size)},mode=1777"
        config: dict[str, Any] = {
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"],
            "pids_limit": int(self.pids),
            "mem_limit": memory,
            "memswap_limit": memory,
            "nano_cpus": int(self.cpus * 1e9),
            "log_config": LOG_CONFIG,
            "read_only": self.read_only,
            "tmpfs": {"/tmp": tmp},  # noqa: S108 - the container's own /tmp
        }
        if self.read_only:  # anonymous volume: filled from the image, removed with the container
            from docker.types import Mount

            config["mounts"] = [Mount(HOME, None, type="volume", labels={LABEL: "1"})]
        return {**config, **gpu_host_config(self.gpus, engine)}

    def to_json(self) -> dict[str, Any]:
        """The limits as the report shows them."""
        return {
            "memory": parse_memory(self.memory),
            "cpus": self.cpus,
            "pids": int(self.pids),
            "read_only_root": self.read_only,
            "tmp_size": parse_memory(self.tmp_size),
            **({"gpus": parse_gpus(self.gpus)} if parse_gpus(self.gpus) is not None else {}),
        }


_CAUSES = (
    ("out-of-memory", ("MemoryError",), ()),
    ("pids-limit", ("BlockingIOError",), ("Resource temporarily unavailable",)),
    ("read-only", ("OSError", "PermissionError"), ("Read-only file system",)),
)


def limit_cause(executed: Any) -> str | None:
    """``out-of-memory`` / ``pids-limit`` / ``read-only`` when a cell of the executed notebook
    failed on that limit (read from its error outputs: a cell never run before has no verdict)."""
    for cell in executed.get("cells", []):
        for out in cell.get("outputs", []) if cell.get("cell_type") == "code" else []:
            if out.get("output_type") != "error":
                continue
            ename, evalue = str(out.get("ename")), str(out.get("evalue"))
            for cause, names, words in _CAUSES:
                if ename in names and (not words or any(w in evalue for w in words)):
                    return cause
    return None
