"""Add what the kernel's environment lacks but the image needs, pinned from the index.

ipykernel (``reason: runner``) so the image can always start a kernel, and exact ``%pip install
x==v`` pins the kernel never ran (``reason: pip-pin``). Each comes with its closure, resolved with
the packages already pinned as constraints so nothing already pinned changes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from packaging.utils import canonicalize_name

from ..errors import ProbeError
from .index import resolve_from_index
from .resolve import KERNEL_DISTRIBUTION, Resolution
from .spec import Finding, PinnedPackage

if TYPE_CHECKING:
    from . import SnapshotOptions


def _add(
    packages: list[PinnedPackage], found: dict[str, str], reason: str, requested: set[str]
) -> list[str]:
    have = {str(canonicalize_name(p.name)) for p in packages}
    added = [name for name in sorted(found) if name not in have]
    packages += [
        PinnedPackage(name, found[name], requested=name in requested, reason=reason)
        for name in added
    ]
    return added


def _pip_pins(
    res: Resolution, packages: list[PinnedPackage], minor: str, options: SnapshotOptions
) -> list[Finding]:
    reqs = [text for text, _cell in res.missing_pins]
    try:
        found = resolve_from_index(reqs, minor, [p.requirement for p in packages], options.index)
    except ProbeError as exc:
        return [
            Finding("pip-not-installed", f"{exc.message}; the %pip pins are not in the image", cell)
            for _text, cell in res.missing_pins[:1]
        ]
    names = {str(canonicalize_name(t.split("==")[0].split("[")[0])) for t in reqs}
    added = _add(packages, found, "pip-pin", names)
    return [
        Finding(
            "pip-pin-from-index",
            f"%pip installs {text!r}, which the kernel does not have; it is pinned in the image "
            f"from the package index ({len(added)} distributions added), not from what ran",
            cell=cell,
            hint="run the cell in the kernel, then snapshot again, to pin what really ran",
        )
        for text, cell in res.missing_pins
    ]


def _runner(
    res: Resolution, packages: list[PinnedPackage], minor: str, options: SnapshotOptions
) -> Finding:
    constraints = [p.requirement for p in packages]
    try:
        found = resolve_from_index([KERNEL_DISTRIBUTION], minor, constraints, options.index)
    except ProbeError as exc:
        return Finding(
            "no-ipykernel",
            f"ipykernel is not installed in the kernel's environment and could not be pinned "
            f"from the package index ({exc.message}); the image cannot start a kernel",
            hint="pip install ipykernel in the kernel's environment, or fix the index settings",
        )
    added = _add(packages, found, "runner", set())
    version = found.get(KERNEL_DISTRIBUTION, "?")
    return Finding(
        "runner-from-index",
        f"ipykernel is not installed in the kernel's environment; ipykernel=={version} and "
        f"its closure ({len(added)} distributions) are pinned from the index so the image can "
        "start a kernel (reason: runner)",
        hint="pip install ipykernel in the kernel's environment to pin what you use",
    )


def pin_from_index(
    res: Resolution, python_version: str, options: SnapshotOptions
) -> tuple[list[PinnedPackage], list[Finding]]:
    """The resolution's packages plus what the index adds; findings say what and why."""
    packages = list(res.packages)
    minor = ".".join(python_version.split(".")[:2])
    findings: list[Finding] = []
    if not options.from_index:
        findings += [
            Finding(
                "pip-not-installed",
                f"%pip installs {text!r}, but it is not installed in the kernel's environment",
                cell=cell,
                hint="run that cell, then snapshot again",
            )
            for text, cell in res.missing_pins
        ]
        if res.needs_kernel:
            findings.append(
                Finding(
                    "no-ipykernel",
                    "ipykernel is not installed in the kernel's environment; the image cannot "
                    "start a kernel",
                    hint="pip install ipykernel in that environment",
                )
            )
        return packages, findings
    if res.missing_pins:
        findings += _pip_pins(res, packages, minor, options)
    if res.needs_kernel:
        findings.append(_runner(res, packages, minor, options))
    return sorted(packages, key=lambda p: p.name.lower()), findings
