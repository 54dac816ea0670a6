"""Imports → distributions of the kernel's environment → the pinned transitive closure + warnings."""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from packaging.markers import InvalidMarker, UndefinedEnvironmentName
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from .probe import Distribution, Environment
from .spec import Finding, PinnedPackage

_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?\Z")
"""PEP 508 distribution name, full match (``\\Z`` so a trailing newline never passes)."""

FALLBACK_NAMES: dict[str, str] = {
    "sklearn": "scikit-learn",
    "cv2": "opencv-python",
    "yaml": "PyYAML",
    "PIL": "Pillow",
    "bs4": "beautifulsoup4",
    "skimage": "scikit-image",
    "dateutil": "python-dateutil",
    "dotenv": "python-dotenv",
    "jwt": "PyJWT",
    "Crypto": "pycryptodome",
    "serial": "pyserial",
    "attr": "attrs",
    "google.protobuf": "protobuf",
    "OpenSSL": "pyOpenSSL",
    "docx": "python-docx",
    "magic": "python-magic",
    "MySQLdb": "mysqlclient",
    "psycopg2": "psycopg2-binary",
    "gi": "PyGObject",
    "wx": "wxPython",
    "zmq": "pyzmq",
    "usb": "pyusb",
    "fitz": "PyMuPDF",
    "Bio": "biopython",
    "tensorflow_hub": "tensorflow-hub",
    "torchvision": "torchvision",
}
"""Import name → usual distribution, for suggestions when the kernel does not have it."""

KERNEL_DISTRIBUTION = "ipykernel"


def valid_name(name: str) -> bool:
    """True when ``name`` is a PEP 508 distribution name (full match, nothing else)."""
    return bool(_NAME.match(name)) and len(name) <= 200


def canonical_version(version: str) -> str | None:
    """``str(Version(v))`` or None when ``v`` is not PEP 440."""
    try:
        return str(Version(version))
    except (InvalidVersion, TypeError):
        return None


def redact_url(url: str) -> str:
    """Drop userinfo (tokens, passwords) from a URL."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if parts.username or parts.password:
        host = parts.hostname or ""
        if parts.port:
            host += f":{parts.port}"
        parts = parts._replace(netloc=host)
    return urlunsplit(parts)


@dataclass
class Resolution:
    """The pinned closure and what could not be pinned."""

    packages: list[PinnedPackage]
    findings: list[Finding]
    missing_pins: list[tuple[str, int]] = field(default_factory=list)
    """Exact ``%pip install x==v`` pins the kernel does not have (to pin from the index)."""
    needs_kernel: bool = False
    """True when the kernel's environment has no ipykernel."""


class Resolver:
    """Resolve import names against one probed environment."""

    def __init__(self, env: Environment) -> None:
        self.env = env
        self.by_name: dict[str, Distribution] = {
            str(canonicalize_name(d.name)): d for d in env.distributions
        }
        self.by_module: dict[str, list[Distribution]] = {}
        for d in env.distributions:
            for mod in d.top_level:
                self.by_module.setdefault(mod, []).append(d)

    def is_stdlib(self, module: str) -> bool:
        """True for a module of the kernel's standard library."""
        return module in self.env.stdlib or module == "__future__"

    def distributions_for(self, module: str) -> list[Distribution]:
        """Installed distributions that provide ``module`` (namespace packages give several)."""
        return list(self.by_module.get(module, []))

    def resolve(
        self,
        imports: list[tuple[str, int | None]],
        pip_requirements: list[tuple[str, int]],
        include_kernel: bool = True,
    ) -> Resolution:
        """Pin every requested distribution and its closure to the installed versions."""
        findings: list[Finding] = []
        missing_pins: list[tuple[str, int]] = []
        requested: dict[str, set[str]] = {}  # canonical name -> modules
        extras: dict[str, set[str]] = {}
        reported: set[str] = set()
        for module, cell in imports:
            if self.is_stdlib(module):
                continue
            dists = self.distributions_for(module)
            if not dists:
                if module in reported:
                    continue
                reported.add(module)
                suggestion = FALLBACK_NAMES.get(module)
                hint = (
                    f"install it in the kernel: %pip install {suggestion}"
                    if suggestion
                    else f"install the distribution that provides {module!r} in the kernel"
                )
                findings.append(
                    Finding(
                        "unresolved-import",
                        f"module {module!r} is imported but no installed distribution provides it",
                        cell=cell,
                        hint=hint,
                    )
                )
                continue
            if len(dists) > 1 and module not in reported:
                names = sorted(d.name for d in dists)
                if not self._namespace(module, dists):
                    reported.add(module)
                    findings.append(
                        Finding(
                            "ambiguous-import",
                            f"module {module!r} is provided by several "
                            f"installed distributions: {', '.join(names)}; all are pinned",
                            cell=cell,
                            hint="uninstall the ones the notebook does not use",
                        )
                    )
            for d in dists:
                requested.setdefault(str(canonicalize_name(d.name)), set()).add(module)
        for text, cell in pip_requirements:
            try:
                req = Requirement(text)
            except InvalidRequirement:
                continue  # a URL, a path or a typo: pip itself will have complained in the kernel
            key = str(canonicalize_name(req.name))
            if key in self.by_name:
                requested.setdefault(key, set())
                extras.setdefault(key, set()).update(req.extras)
            elif _exact_pin(req):
                missing_pins.append((str(req), cell))
            else:
                findings.append(
                    Finding(
                        "pip-not-installed",
                        f"%pip installs {req.name!r}, but it is not installed in "
                        "the kernel's environment",
                        cell=cell,
                        hint=f"pin an exact version (%pip install {req.name}==X.Y), "
                        "or run that cell, then snapshot again",
                    )
                )
        roots = dict(requested)
        if include_kernel and canonicalize_name(KERNEL_DISTRIBUTION) in self.by_name:
            roots.setdefault(str(canonicalize_name(KERNEL_DISTRIBUTION)), set())
        closure = self._closure(list(roots), extras, findings)
        packages: list[PinnedPackage] = []
        for key in sorted(closure):
            d = self.by_name[key]
            pinned = self._pin(d, findings)
            if pinned is None:
                continue
            packages.append(
                PinnedPackage(
                    d.name,
                    pinned,
                    requested=key in requested,
                    modules=tuple(sorted(requested.get(key, ()))),
                )
            )
        needs_kernel = include_kernel and canonicalize_name(KERNEL_DISTRIBUTION) not in self.by_name
        return Resolution(packages, findings, missing_pins, needs_kernel)

    @staticmethod
    def _namespace(module: str, dists: list[Distribution]) -> bool:
        # namespace packages (google.*, jupyter_*) are shared on purpose: not an ambiguity
        return module in {"google", "jupyter", "azure", "zope", "sphinxcontrib", "backports"}

    def _closure(
        self, roots: list[str], extras: dict[str, set[str]], findings: list[Finding]
    ) -> set[str]:
        processed: dict[str, set[str]] = {}
        queue: deque[tuple[str, frozenset[str]]] = deque(
            (r, frozenset(extras.get(r, ()))) for r in roots
        )
        while queue:
            key, want = queue.popleft()
            if key not in processed:
                base, new = True, set(want)
                processed[key] = set()
            else:
                base, new = False, set(want) - processed[key]
                if not new:
                    continue
            processed[key] |= new
            dist = self.by_name.get(key)
            if dist is None:
                continue
            for text in dist.requires:
                try:
                    req = Requirement(text)
                except InvalidRequirement:
                    continue
                if not self._applies(req, base, new):
                    continue
                dep = str(canonicalize_name(req.name))
                if dep not in self.by_name:
                    findings.append(
                        Finding(
                            "missing-dependency",
                            f"{dist.name} requires {req.name}, which is not "
                            "installed in the kernel's environment; it is not pinned",
                            hint=f"pip install {req.name} in the kernel, or ignore if unused",
                        )
                    )
                    continue
                queue.append((dep, frozenset(req.extras)))
        return set(processed)

    def _applies(self, req: Requirement, base: bool, extras: set[str]) -> bool:
        if req.marker is None:
            return base
        env: dict[str, str] = dict(self.env.markers)
        try:
            if base and req.marker.evaluate({**env, "extra": ""}):
                return True
            return any(req.marker.evaluate({**env, "extra": e}) for e in extras)
        except (InvalidMarker, UndefinedEnvironmentName):
            return False

    def _pin(self, d: Distribution, findings: list[Finding]) -> str | None:
        if not valid_name(d.name):
            findings.append(
                Finding(
                    "invalid-version",
                    f"distribution name {d.name!r} is not a valid PEP 508 name; it is not pinned",
                )
            )
            return None
        version = canonical_version(d.version)
        if version is None:
            findings.append(
                Finding(
                    "invalid-version",
                    f"{d.name} has version {d.version!r}, which is not PEP 440; it is not pinned",
                    hint="reinstall it from a package index",
                )
            )
            return None
        self._direct_url_findings(d, findings)
        if d.installer and d.installer.strip() not in {"pip", "uv", "poetry", "pdm", "pipenv"}:
            findings.append(
                Finding(
                    "not-from-index",
                    f"{d.name}=={version} was installed by {d.installer}, not from a "
                    "Python package index; the pin may not be installable with pip",
                    hint="check that this version is on PyPI, or pip install it in the kernel",
                )
            )
        if Version(version).local:
            findings.append(
                Finding(
                    "local-version",
                    f"{d.name}=={version} has a local version label; it needs a "
                    "custom index (for example the PyTorch index)",
                    hint="pass --extra-index-url with the index that serves it",
                )
            )
        return version

    @staticmethod
    def _direct_url_findings(d: Distribution, findings: list[Finding]) -> None:
        info = d.direct_url
        if not isinstance(info, dict):
            return
        url = redact_url(str(info.get("url", "")))
        raw_dir_info = info.get("dir_info")
        dir_info: dict[str, Any] = raw_dir_info if isinstance(raw_dir_info, dict) else {}
        if dir_info.get("editable"):
            findings.append(
                Finding(
                    "editable-install",
                    f"{d.name} is an editable install ({_short(url)}); its "
                    "released version is pinned instead, which may differ from your working copy",
                    hint="publish it, or copy the code beside the notebook",
                )
            )
        elif "vcs_info" in info:
            findings.append(
                Finding(
                    "vcs-install",
                    f"{d.name} was installed from version control ({_short(url)}); "
                    "its released version is pinned instead",
                    hint="pin a released version",
                )
            )
        elif url.startswith("file:"):
            findings.append(
                Finding(
                    "local-path-install",
                    f"{d.name} was installed from a local path; its released "
                    "version is pinned instead",
                    hint="publish it to an index you can reach",
                )
            )


def _exact_pin(req: Requirement) -> bool:
    specs = list(req.specifier)
    return len(specs) == 1 and specs[0].operator in {"==", "==="} and "*" not in specs[0].version


def _short(url: str) -> str:
    if url.startswith("file:"):
        return "a local folder"
    return url[:120]
