"""Probe run by the KERNEL's interpreter: print what is installed there as one JSON object.

This file is executed as ``python -I -S? _probe_script.py`` with the kernel's interpreter, so it
uses the standard library only and stays compatible with Python 3.8+. Keep it self-contained.
"""

import json
import os
import platform
import sys

try:
    import importlib.metadata as md
except ImportError:  # pragma: no cover - Python < 3.8 has no importlib.metadata
    print(json.dumps({"error": "importlib.metadata is missing (Python >= 3.8 is required)"}))
    sys.exit(0)


def _top_levels(dist):
    """Top-level import names a distribution provides (what packages_distributions() does)."""
    text = dist.read_text("top_level.txt")
    if text:
        return sorted({line.strip() for line in text.split() if line.strip()})
    names = set()
    for f in dist.files or ():
        parts = f.parts
        if not parts or parts[0].endswith((".dist-info", ".egg-info")) or parts[0] == "..":
            continue
        if len(parts) == 1:
            name = parts[0]
            if name.endswith(".py"):
                names.add(name[:-3])
            elif name.endswith((".so", ".pyd")):
                names.add(name.split(".")[0])
            elif name.endswith(".pth"):
                continue
        else:
            if parts[0] != "__pycache__" and "." not in parts[0]:
                names.add(parts[0])
    return sorted(names)


def _direct_url(dist):
    text = dist.read_text("direct_url.json")
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return {"url": "", "invalid": True}


def _marker_environment():
    """The PEP 508 marker environment of this interpreter (as packaging computes it)."""
    impl = sys.implementation
    info = impl.version
    iver = "{0.major}.{0.minor}.{0.micro}".format(info)
    if info.releaselevel != "final":
        iver += info.releaselevel[0] + str(info.serial)
    return {
        "implementation_name": impl.name,
        "implementation_version": iver,
        "os_name": os.name,
        "platform_machine": platform.machine(),
        "platform_release": platform.release(),
        "platform_system": platform.system(),
        "platform_version": platform.version(),
        "python_full_version": platform.python_version(),
        "platform_python_implementation": platform.python_implementation(),
        "python_version": ".".join(platform.python_version_tuple()[:2]),
        "sys_platform": sys.platform,
    }


def main():
    dists = []
    seen = set()
    for dist in md.distributions():
        name = dist.metadata["Name"]
        if not name:
            continue
        key = name.lower().replace("_", "-").replace(".", "-")
        if key in seen:  # shadowed copy later on sys.path: the first one is what imports
            continue
        seen.add(key)
        installer = (dist.read_text("INSTALLER") or "").strip() or None
        dists.append(
            {
                "name": name,
                "version": dist.version,
                "requires": list(dist.requires or []),
                "top_level": _top_levels(dist),
                "installer": installer,
                "direct_url": _direct_url(dist),
                "path": str(getattr(dist, "_path", "")),
            }
        )
    stdlib = sorted(getattr(sys, "stdlib_module_names", ()) or sys.builtin_module_names)
    print(
        json.dumps(
            {
                "python": {
                    "version": platform.python_version(),
                    "implementation": platform.python_implementation(),
                    "executable": sys.executable,
                    "prefix": sys.prefix,
                    "platform": sys.platform,
                    "machine": platform.machine(),
                    "conda": os.path.exists(os.path.join(sys.prefix, "conda-meta")),
                },
                "markers": _marker_environment(),
                "stdlib": stdlib,
                "builtin": sorted(sys.builtin_module_names),
                "path": [p for p in sys.path if p],
                "distributions": dists,
            }
        )
    )


if __name__ == "__main__":
    main()
