"""Heavy distributions in their own layers, in an order sibling notebooks can share.

A team's notebooks mostly run in one kernel environment: their closures overlap, and most of an
image's bytes are a few heavy wheels (numpy, scipy, pandas, …). Each distribution whose wheel is
at least :data:`HEAVY_WHEEL_BYTES` is installed in its own layer, before the light rest, the apt
layer and the notebook. The engine's build cache keys a layer on its parent chain, so a layer is
reused only when every layer under it is too: the order is chosen to extend the longest chain an
earlier build already wrote (:func:`layer_order`, from the ``org.jupyter.envpack.layers`` label
of the images on the engine), then canonical (dependencies before what the notebook imports, then
by name). The tag does not depend on that choice: it hashes the canonical rendering.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name, parse_wheel_filename

from ..snapshot.spec import EnvSpec

HEAVY_WHEEL_BYTES = 4 * 2**20
"""A distribution whose wheel files add up to this many bytes gets its own layer."""
MAX_HEAVY_LAYERS = 24
"""At most this many heavy layers (the largest); overlay2 allows 128 layers in an image."""
LAYERS_LABEL = "org.jupyter.envpack.layers"
"""Image label: the heavy layers' pins, in build order, separated by spaces."""
CHAIN_LABEL = "org.jupyter.envpack.chain"
"""Image label: hash of what lies under the heavy layers (base, user, runner venv, wheel URL)."""

_PIN = re.compile(r"[a-z0-9][a-z0-9.-]{0,99}==[A-Za-z0-9.+!_-]{1,60}\Z")


def heavy_pins(spec: EnvSpec, sizes: Mapping[str, int]) -> list[str]:
    """The pins of ``spec`` whose wheels (file name → bytes in ``sizes``) are heavy, canonically.

    Canonical order: distributions the notebook does not import itself (dependencies, the
    kernel's own) before those it does, then by name: the foundations siblings share come first.
    """
    total: dict[tuple[str, str], int] = {}
    for name, size in sizes.items():
        dist, version, _build, _tags = parse_wheel_filename(name)
        key = (str(dist), str(version))
        total[key] = total.get(key, 0) + size
    heavy = []
    for p in spec.packages:
        key = (str(canonicalize_name(p.name)), p.version)
        if total.get(key, 0) >= HEAVY_WHEEL_BYTES:
            heavy.append((p.requested, key[0], p.version, total[key]))
    kept = sorted(heavy, key=lambda h: -h[3])[:MAX_HEAVY_LAYERS]
    pins = [f"{n}=={v}" for _r, n, v, _s in sorted(kept, key=lambda h: (h[0], h[1]))]
    return [p for p in pins if _PIN.match(p)]


def wheel_sizes(folder: Path, names: Iterable[str]) -> dict[str, int]:
    """Bytes of each wheel of ``names`` present in ``folder`` (missing ones are left out)."""
    out = {}
    for name in names:
        try:
            out[name] = (folder / name).stat().st_size
        except OSError:
            continue
    return out


def layer_order(pins: list[str], chains: Iterable[list[str]]) -> list[str]:
    """``pins`` reordered to extend the longest prefix of an earlier build's chain.

    ``chains``: the heavy-layer lists of images already on the engine (same parent chain). The
    longest prefix made only of ``pins`` is kept as it is; the rest follows in canonical order.
    """
    wanted = set(pins)
    best: list[str] = []
    for chain in chains:
        prefix = []
        for pin in chain:
            if pin not in wanted:
                break
            prefix.append(pin)
        if len(prefix) > len(best):
            best = prefix
    return best + [p for p in pins if p not in best]


def built_chains(client: Any, chain: str) -> list[list[str]]:
    """Heavy-layer lists of the envpack images on the engine whose lower layers hash to ``chain``."""
    try:
        images = client.api.images(filters={"label": [f"{CHAIN_LABEL}={chain}"]})
    except Exception:  # no history is no error: the canonical order is used
        return []
    out = []
    for image in images or []:
        text = str((image.get("Labels") or {}).get(LAYERS_LABEL, ""))
        pins = text.split(" ")
        if text and all(_PIN.match(p) for p in pins):  # a label envpack did not write: ignored
            out.append(pins)
    return out
