"""GPUs: which notebooks need one (CUDA wheels in the closure), and how a run asks for one.

Pure helpers shared by the snapshot (:func:`cuda_packages` → the ``gpu`` field and a finding),
the build (:func:`cuda_base_advice`: warning text only) and the runs (:func:`parse_gpus`,
:func:`device_requests`, :func:`gpu_start_error`). A notebook whose packages bundle CUDA (torch
``+cu121``, ``nvidia-*-cu12``, ``cupy-cuda12x``, ``jax-cuda12-plugin``...) still imports without a
GPU, but then runs on the CPU or fails: the snapshot says so, so nobody is surprised.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from .errors import InputError, NoGpuRuntimeError

_CUDA_NAME = re.compile(
    r"^(?:nvidia-[a-z0-9-]+-cu(?P<a>\d+)|cupy-cuda(?P<b>\d+)[a-z]*"
    r"|jax-cuda(?P<c>\d+)-(?:plugin|pjrt)|jaxlib-cuda(?P<d>\d+)|tensorflow-cuda)$"
)
_CUDA_LOCAL = re.compile(r"\+cu(?:da)?(?P<v>\d+)")
#: Image labels / environment that say a base image carries CUDA's user-space libraries.
_CUDA_BASE_ENV = ("CUDA_VERSION=", "NV_CUDA_LIB_VERSION=", "NVIDIA_REQUIRE_CUDA=")
_CUDA_BASE_LABELS = (
    "com.nvidia.cuda.version",
    "com.nvidia.cudnn.version",
    "org.jupyter.envpack.cuda",
)
CUDA_BASE_SUGGESTION = "nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04"
#: Wheels that bundle the CUDA runtime themselves (only the driver comes from the host).
_SELF_CONTAINED = re.compile(r"^(torch|torchvision|torchaudio|nvidia-.*|jax-cuda.*|jaxlib)$")


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def cuda_packages(packages: Iterable[tuple[str, str]]) -> list[str]:
    """``name==version`` of every (name, version) that is a CUDA build, sorted."""
    found = []
    for name, version in packages:
        if _CUDA_NAME.match(_normal(name)) or _CUDA_LOCAL.search(version):
            found.append(f"{_normal(name)}=={version}")
    return sorted(found)


def cuda_major(requirements: Iterable[str]) -> str | None:
    """The CUDA major version the wheels were built for (``"12"``), when they say."""
    for req in requirements:
        name, _, version = req.partition("==")
        match = _CUDA_NAME.match(name)
        digits = next((g for g in (match.groupdict().values() if match else ()) if g), None)
        local = _CUDA_LOCAL.search(version)
        digits = digits or (local.group("v") if local else None)
        if digits:
            return digits[:2] if len(digits) >= 3 else digits  # cu121 → 12, cu12 → 12
    return None


def gpu_summary(packages: Iterable[tuple[str, str]]) -> dict[str, Any] | None:
    """The snapshot's ``gpu`` field: ``{"required": True, "cuda": "12", "packages": [...]}``."""
    found = cuda_packages(packages)
    if not found:
        return None
    return {"required": True, "cuda": cuda_major(found), "packages": found}


def cuda_base_advice(
    base: str,
    attrs: Mapping[str, Any],
    gpu: Mapping[str, Any],
    sonames: Iterable[str] = (),
) -> str | None:
    """A warning when a GPU notebook's base image has no CUDA user-space (None when it has:
    ``libcudart``/``libcuda`` among its ``sonames``, a CUDA env variable or label; or when every
    CUDA wheel brings its own runtime)."""
    config = attrs.get("Config") or {}
    env, labels = config.get("Env") or [], config.get("Labels") or {}
    if any(e.startswith(_CUDA_BASE_ENV) for e in env) or any(
        k in labels for k in _CUDA_BASE_LABELS
    ):
        return None
    if any(s.startswith(("libcudart.so", "libcuda.so")) for s in sonames):
        return None
    needing = [
        p for p in gpu.get("packages", []) if not _SELF_CONTAINED.match(p.partition("==")[0])
    ]
    if not needing:
        return None
    return (
        f"{base} has no CUDA user-space libraries (no CUDA_VERSION, no com.nvidia.* label) and "
        f"{', '.join(needing)} need them: build on a CUDA base such as --base-image "
        f"{CUDA_BASE_SUGGESTION} (matching CUDA {gpu.get('cuda') or '12'})"
    )


def parse_gpus(value: str | int | None) -> int | str | None:
    """``--gpus``: ``None``/``0`` (none), a positive count, or ``"all"``."""
    if value is None or value == "" or value == 0 or value == "0":
        return None
    if isinstance(value, str) and value.strip().lower() == "all":
        return "all"
    try:
        count = int(value)
    except (TypeError, ValueError):
        count = -1
    if isinstance(value, bool) or count < 0:
        raise InputError(f"invalid --gpus {value!r}", hint="give a number of GPUs or 'all'")
    return count


def gpu_count(value: str | int | None) -> int | None:
    """A cluster job's GPU count (clusters schedule a number of GPUs, never "all")."""
    gpus = parse_gpus(value)
    if gpus == "all":
        raise InputError(
            "a cluster job needs a number of GPUs, not 'all' (from --gpus or c.EnvPack.gpus)",
            hint="e.g. --gpus 1 (the cluster picks a node with that many free)",
        )
    return gpus if isinstance(gpus, int) else None


def gpu_host_config(value: str | int | None, engine: str = "docker") -> dict[str, Any]:
    """``containers.create`` arguments that give the container ``--gpus N|all`` (none: ``{}``).

    Docker: a device request (served by the NVIDIA Container Toolkit). Podman's Docker API
    ignores device requests without a word (measured on 4.3), so there the GPUs are CDI device
    names (``nvidia.com/gpu=all``, ``=0``...), which need ``nvidia-ctk cdi generate``.
    """
    gpus = parse_gpus(value)
    if gpus is None:
        return {}
    if engine == "podman":
        names = ["all"] if gpus == "all" else [str(i) for i in range(int(gpus))]
        return {"devices": [f"nvidia.com/gpu={n}" for n in names]}
    from docker.types import DeviceRequest

    count = -1 if gpus == "all" else int(gpus)
    return {"device_requests": [DeviceRequest(count=count, capabilities=[["gpu"]])]}


def gpu_start_error(explanation: str) -> NoGpuRuntimeError | None:
    """The clear error for an engine that cannot give a container GPUs (None: another error)."""
    low = explanation.lower()
    if not ("device driver" in low or "nvidia.com/gpu" in low or "[[gpu]]" in low):
        return None
    return NoGpuRuntimeError(
        f"this container engine has no GPU runtime ({explanation.strip()})",
        hint="install the NVIDIA driver and the NVIDIA Container Toolkit on this machine "
        "(Docker: `nvidia-ctk runtime configure --runtime=docker`, then restart dockerd; "
        "Podman: `nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml`), or run without --gpus",
    )
