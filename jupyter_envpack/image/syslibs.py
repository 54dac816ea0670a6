"""System packages an image needs: shared libraries its wheels link, programs its notebook runs.

For each wheel of the closure, the ``DT_NEEDED`` entries of its ELF files are read with
``pyelftools``; sonames shipped by a wheel of the closure (auditwheel's ``*.libs`` folders, any
``.so`` inside) and those the base image already has (``ldconfig -p`` in a throw-away container,
once per image id) are dropped. The rest, and the programs the notebook runs that the base image
lacks, are looked up in the base distribution's own file index (Debian/Ubuntu ``Contents-<arch>.gz``,
as ``apt-file`` uses it) and installed with ``apt-get`` in a layer before the environment.
"""

from __future__ import annotations

import configparser
import contextlib
import gzip
import hashlib
import io
import json
import os
import re
import ssl
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..events import ProgressEvent, Reporter, null_reporter
from ..snapshot.commands import CommandUse
from ..snapshot.spec import Finding
from .engine import base_labels
from .options import BuildOptions
from .wheels import cache_dir

MAX_ELF_BYTES = 512 * 1024 * 1024
"""Largest shared object read from a wheel (bounded read; larger ones are skipped)."""
MAX_CONTENTS_BYTES = 256 * 1024 * 1024
"""Largest compressed file index downloaded from a mirror."""
MAX_PROBE_BYTES = 8 * 1024 * 1024
_SONAME = re.compile(r"\.so(\.[^/]*)?\Z")
_PACKAGE = re.compile(r"[a-z0-9][a-z0-9+.-]{0,99}\Z")
_MIRROR = re.compile(r"https?://[A-Za-z0-9.:\[\]_-]+(/[A-Za-z0-9._~/-]*)?\Z")
_CODENAME = re.compile(r"[a-z][a-z0-9-]{1,30}\Z")
_DEBIAN_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "armhf", "ppc64le": "ppc64el"}
_DEFAULT_MIRRORS = {
    "debian": "http://deb.debian.org/debian",
    "ubuntu": "http://archive.ubuntu.com/ubuntu",
}
_VENV_PROGRAMS = frozenset({"python", "python3", "activate"})
"""What every environment's ``bin`` has (uv venv); the rest comes from the wheels' scripts."""
_LIB_DIRS = ("lib/", "usr/lib/", "lib64/", "usr/lib64/")
_BIN_DIRS = frozenset({"bin", "usr/bin", "sbin", "usr/sbin"})
_PROBE = (
    "( cat /etc/os-release; echo @@; ldconfig -p || /sbin/ldconfig -p; echo @@; "
    "cat /etc/apt/sources.list /etc/apt/sources.list.d/*; echo @@; "
    "for d in /usr/local/sbin /usr/local/bin /usr/sbin /usr/bin /sbin /bin; do ls -1 $d; done; "
    f"echo @@; command -v apt-get ) 2>/dev/null | head -c {MAX_PROBE_BYTES}"
)


@dataclass
class BaseFacts:
    """What a base image provides (from one probe, cached by image id)."""

    image_id: str
    os_id: str = ""
    codename: str = ""
    mirror: str = ""
    has_sources: bool = False
    has_apt: bool = False
    sonames: frozenset[str] = frozenset()
    programs: frozenset[str] = frozenset()


@dataclass
class SystemNeeds:
    """The apt packages an image needs, why, and what could not be mapped."""

    packages: list[str] = field(default_factory=list)
    reasons: dict[str, list[str]] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    sources: str | None = None
    """An apt sources line to write first (the base image has none)."""

    def to_json(self) -> dict[str, Any]:
        """JSON form (build results)."""
        return {
            "packages": list(self.packages),
            "reasons": {k: list(v) for k, v in self.reasons.items()},
            "warnings": [f.to_json() for f in self.findings],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SystemNeeds:
        """Inverse of :meth:`to_json` (plus ``sources``)."""
        return cls(
            packages=[p for p in data.get("packages", []) if _PACKAGE.match(p)],
            reasons={k: list(v) for k, v in data.get("reasons", {}).items()},
            findings=[
                Finding(w["code"], w["message"], w.get("cell"), w.get("hint"))
                for w in data.get("warnings", [])
            ],
            sources=data.get("sources"),
        )


def _cache_root() -> Path:
    return cache_dir("any", "any").parent


def _load_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _save_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` atomically (a private temporary file, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh)
    Path(tmp).replace(path)


# -- wheels ----------------------------------------------------------------------------------------


def _elf_needed(data: bytes) -> tuple[list[str], str | None]:
    """``DT_NEEDED`` entries and ``DT_SONAME`` of one ELF file (empty when not a dynamic ELF)."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.dynamic import DynamicSection
    from elftools.elf.elffile import ELFFile

    try:
        elf = ELFFile(io.BytesIO(data))
        needed: list[str] = []
        soname = None
        for section in elf.iter_sections():
            if isinstance(section, DynamicSection):
                for tag in section.iter_tags():
                    if tag.entry.d_tag == "DT_NEEDED":
                        needed.append(str(tag.needed))  # type: ignore[attr-defined]
                    elif tag.entry.d_tag == "DT_SONAME":
                        soname = str(tag.soname)  # type: ignore[attr-defined]
    except (ELFError, ValueError, OSError, KeyError):
        return [], None
    return needed, soname


def _scripts(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> set[str]:
    """Programs a wheel puts on the environment's ``PATH`` (entry points, ``.data/scripts``)."""
    name = info.filename
    if "/" not in name.rstrip("/"):
        return set()
    folder, base = name.rsplit("/", 1)
    if folder.endswith(".data/scripts") and base:
        return {base}
    if not (folder.endswith(".dist-info") and base == "entry_points.txt"):
        return set()
    parser = configparser.ConfigParser(interpolation=None, delimiters=("=",))
    with contextlib.suppress(configparser.Error, UnicodeDecodeError):
        parser.read_string(zf.read(info)[: 1 << 20].decode())
    return {
        key.strip()
        for section in ("console_scripts", "gui_scripts")
        if parser.has_section(section)
        for key in parser.options(section)
    }


def scan_wheel(wheel: Path) -> dict[str, list[str]]:
    """Sonames the wheel's ELF files link (``needed``) and ship (``provided``), its ``scripts``."""
    needed: set[str] = set()
    provided: set[str] = set()
    scripts: set[str] = set()
    with zipfile.ZipFile(wheel) as zf:
        for info in zf.infolist():
            scripts |= _scripts(zf, info)
            base = info.filename.rsplit("/", 1)[-1]
            if not _SONAME.search(base) or info.file_size > MAX_ELF_BYTES:
                continue
            with zf.open(info) as fh:
                if fh.read(4) != b"\x7fELF":
                    continue
                data = b"\x7fELF" + fh.read(MAX_ELF_BYTES)
            links, soname = _elf_needed(data)
            needed.update(links)
            provided.add(base)
            if soname:
                provided.add(soname)
    return {"needed": sorted(needed), "provided": sorted(provided), "scripts": sorted(scripts)}


def wheel_sonames(wheels: list[Path]) -> dict[str, dict[str, list[str]]]:
    """:func:`scan_wheel` of each wheel, cached by file name and size (wheels are immutable)."""
    cache_path = _cache_root() / "wheel-scan.json"
    known = _load_json(cache_path)
    out: dict[str, dict[str, list[str]]] = {}
    for wheel in wheels:
        key = f"{wheel.name}:{wheel.stat().st_size}"
        if key not in known:
            known[key] = scan_wheel(wheel)
        out[wheel.name] = known[key]
    _save_json(cache_path, known)
    return out


# -- the base image --------------------------------------------------------------------------------


def _parse_probe(image_id: str, text: str) -> BaseFacts:
    parts = ([*text.split("@@\n"), "", "", "", "", ""])[:5]
    release = dict(
        (k, v.strip().strip('"'))
        for k, _, v in (ln.partition("=") for ln in parts[0].splitlines())
        if v
    )
    os_id = release.get("ID", "")
    codename = release.get("VERSION_CODENAME", "")
    mirrors = re.findall(r"^\s*(?:deb\s+(?:\[[^\]]*\]\s+)?|URIs:\s*)(\S+)", parts[2], re.M)
    mirror = next((m for m in mirrors if _MIRROR.match(m)), "")
    return BaseFacts(
        image_id=image_id,
        os_id=os_id if os_id in _DEFAULT_MIRRORS else os_id[:30],
        codename=codename if _CODENAME.match(codename) else "",
        mirror=(mirror or _DEFAULT_MIRRORS.get(os_id, "")).rstrip("/"),
        has_sources=bool(mirrors),
        has_apt=bool(parts[4].strip()),
        sonames=frozenset(re.findall(r"^\s+(\S+) \(", parts[1], re.M)),
        programs=frozenset(ln.strip() for ln in parts[3].splitlines() if ln.strip()),
    )


def probe_base(client: Any, image: str) -> BaseFacts | None:
    """Ask ``image`` once what it has (labelled, network-less container); ``None`` if not local."""
    try:
        image_id = str(client.api.inspect_image(image)["Id"])
    except Exception:
        return None
    cache_path = _cache_root() / "base-probe.json"
    known = _load_json(cache_path)
    if image_id not in known:
        try:
            out = _run_probe(client, image)
        except Exception:  # a base without sh or ldconfig (distroless, scratch): nothing known
            return None
        known[image_id] = out[:MAX_PROBE_BYTES].decode("utf-8", "replace")
        _save_json(cache_path, known)
    return _parse_probe(image_id, str(known[image_id]))


def _run_probe(client: Any, image: str) -> bytes:
    out = client.containers.run(
        image,
        ["sh", "-c", _PROBE],
        remove=True,
        entrypoint=[],
        user="0",
        network_disabled=True,
        mem_limit="256m",
        pids_limit=64,
        labels=base_labels("probe"),
    )
    return bytes(out)


# -- the distribution's file index -----------------------------------------------------------------


def contents_url(facts: BaseFacts, arch: str) -> str | None:
    """URL of the distribution's ``Contents-<arch>.gz`` (Debian: per component ``main``)."""
    deb_arch = _DEBIAN_ARCH.get(arch, arch)
    if not facts.codename or not facts.mirror:
        return None
    if facts.os_id == "debian":
        return f"{facts.mirror}/dists/{facts.codename}/main/Contents-{deb_arch}.gz"
    if facts.os_id == "ubuntu":
        return f"{facts.mirror}/dists/{facts.codename}/Contents-{deb_arch}.gz"
    return None


def _download(url: str, target: Path, opts: BuildOptions) -> None:
    context = ssl.create_default_context(cafile=opts.ca_bundle) if url.startswith("https") else None
    request = urllib.request.urlopen(url, timeout=120, context=context)  # noqa: S310 - http(s) only
    with request as resp, target.open("wb") as out:
        copied = 0
        while chunk := resp.read(1 << 20):
            copied += len(chunk)
            if copied > MAX_CONTENTS_BYTES:
                raise OSError(f"{url} is larger than {MAX_CONTENTS_BYTES} bytes")
            out.write(chunk)


def parse_contents(stream: Any) -> dict[str, dict[str, list[str]]]:
    """``{"libs": {soname: [pkg]}, "bins": {program: [pkg]}}`` from a Contents file (streamed)."""
    libs: dict[str, list[str]] = {}
    bins: dict[str, list[str]] = {}
    for raw in stream:
        line = raw.decode("utf-8", "replace").rstrip()
        path, _, where = line.rpartition(" ")
        path = path.rstrip()
        folder, _, name = path.rpartition("/")
        if folder in _BIN_DIRS:
            table = bins
        elif path.startswith(_LIB_DIRS) and _SONAME.search(name) and folder.count("/") <= 2:
            table = libs
        else:
            continue
        pkgs = [p.rsplit("/", 1)[-1] for p in where.split(",")]
        table.setdefault(name, []).extend(p for p in pkgs if _PACKAGE.match(p))
    return {"libs": libs, "bins": bins}


def file_index(facts: BaseFacts, arch: str, opts: BuildOptions) -> dict[str, dict[str, list[str]]]:
    """The base distribution's file index (downloaded once, parsed, cached under the user cache)."""
    url = contents_url(facts, arch)
    if url is None:
        return {"libs": {}, "bins": {}}
    key = hashlib.sha256(url.encode()).hexdigest()[:16]
    cached = _cache_root() / "contents" / f"{facts.os_id}-{facts.codename}-{arch}-{key}.json"
    index = _load_json(cached)
    if index:
        return index
    cached.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cached.parent) as tmp:
        gz = Path(tmp) / "Contents.gz"
        _download(url, gz, opts)
        with gzip.open(gz, "rb") as stream:
            index = parse_contents(stream)
    _save_json(cached, index)
    return index


def _choose(candidates: list[str]) -> str:
    """One package among those shipping a file: no debug or dev package when avoidable, shortest."""
    usable = [p for p in candidates if not p.endswith(("-dbg", "-dbgsym"))] or candidates
    return sorted(set(usable), key=lambda p: (p.endswith("-dev"), len(p), p))[0]


def _records() -> Path:
    return _cache_root() / "plans" / "system-by-environment.json"


def record_system(env_hash: str, needs: SystemNeeds) -> None:
    """Remember the apt packages the last build of environment ``env_hash`` installed."""
    known = _load_json(_records())
    known[env_hash] = needs.packages
    _save_json(_records(), known)


def recorded_system(env_hash: str) -> list[str]:
    """The apt packages recorded by the last build of ``env_hash`` here (``[]`` if never built)."""
    found = _load_json(_records()).get(env_hash, [])
    return [p for p in found if isinstance(p, str) and _PACKAGE.match(p)]


# -- the plan ----------------------------------------------------------------------------------------


def plan_system(
    wheels: list[Path],
    commands: list[CommandUse],
    facts: BaseFacts | None,
    arch: str,
    opts: BuildOptions,
    reporter: Reporter = null_reporter,
    on_path: frozenset[str] | None = None,
) -> SystemNeeds:
    """The apt packages for the wheels' missing sonames and the notebook's missing programs.

    ``on_path``: names of the wheels whose scripts are on the image's ``PATH`` (the notebook's
    environment; default: all of ``wheels``).
    """
    needs = SystemNeeds()
    if facts is None:
        return needs
    scanned = wheel_sonames(wheels)
    shipped = {s for info in scanned.values() for s in info["provided"]}
    missing: dict[str, list[str]] = {}
    for wheel, info in sorted(scanned.items()):
        for soname in info["needed"]:
            if soname not in shipped and soname not in facts.sonames:
                missing.setdefault(soname, []).append(wheel)
    in_env = _VENV_PROGRAMS | {
        s
        for name, info in scanned.items()
        if on_path is None or name in on_path
        for s in info.get("scripts", [])
    }
    programs = [c for c in commands if c.program not in facts.programs | in_env]
    if not missing and not programs:
        return needs
    if not facts.has_apt:
        needs.findings.append(
            Finding(
                "no-package-manager",
                f"the base image has no apt-get; cannot install {', '.join(sorted(missing)) or 'programs'}",
                hint="choose a Debian or Ubuntu base image (--base-image)",
            )
        )
        return needs
    reporter(
        ProgressEvent(
            "build", "looking up system packages in the distribution's file index", "info"
        )
    )
    index = file_index(facts, arch, opts)
    _map_libraries(needs, missing, index["libs"])
    _map_programs(needs, programs, index["bins"])
    needs.packages = sorted(needs.reasons)
    if needs.packages and not facts.has_sources and contents_url(facts, arch):
        needs.sources = f"deb {facts.mirror} {facts.codename} main"
    return needs


def _map_libraries(
    needs: SystemNeeds, missing: dict[str, list[str]], libs: dict[str, list[str]]
) -> None:
    for soname, wheels in sorted(missing.items()):
        if soname in libs:
            needs.reasons.setdefault(_choose(libs[soname]), []).append(soname)
            continue
        needs.findings.append(
            Finding(
                "unmapped-library",
                f"{', '.join(wheels)} needs {soname}, which neither the base image nor a package "
                "of its distribution provides",
                hint="choose a base image that has it, or install it in your own base image",
            )
        )


def _map_programs(
    needs: SystemNeeds, programs: list[CommandUse], bins: dict[str, list[str]]
) -> None:
    for use in programs:
        if use.program in bins:
            needs.reasons.setdefault(_choose(bins[use.program]), []).append(use.program)
            continue
        needs.findings.append(
            Finding(
                "missing-command",
                f"the notebook runs `{use.program}`, which the base image lacks and no package of "
                "its distribution provides",
                cell=use.cell,
                hint="use a base image that has it, or install it from the notebook",
            )
        )
    for pkg, why in needs.reasons.items():
        needs.reasons[pkg] = list(dict.fromkeys(why))
