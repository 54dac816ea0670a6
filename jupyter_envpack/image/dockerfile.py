"""EnvSpec → Dockerfile text (pure).

Nothing user-derived is ever written into a ``RUN`` line: requirements live in lock files, the base
image is a validated reference, and label values are percent-encoded (RELIABILITY D1, D6, D7).
"""

from __future__ import annotations

import re
from urllib.parse import quote

from ..contract import HOME, RUNNER_PREFIX, RUNNER_SCRIPT, USER_ID, WORKDIR
from ..snapshot.spec import EnvSpec
from .layers import CHAIN_LABEL, LAYERS_LABEL
from .options import UV_VERSION, BuildOptions
from .refs import REFERENCE
from .syslibs import SystemNeeds

try:
    from .._version import __version__
except ImportError:  # pragma: no cover - a source tree that was never installed
    __version__ = "0+unknown"

ENV_PREFIX = "/opt/envpack/env"
KERNEL_NAME = "envpack"
DATA_DIR = "data"
"""Context folder of the notebook's data files: copied into the work folder in their own layer."""

_SAFE_LABEL = re.compile(r"[A-Za-z0-9 ._@+=,/:-]{0,300}\Z")

DOCKERIGNORE = """\
# jupyter-envpack builds from an explicit allowlist: only these paths are ever sent to the engine.
*
!Dockerfile
!envpack/
!work/
!data/
**/.git
**/.env
**/.ipynb_checkpoints
"""


def label_value(text: str) -> str:
    """A label value that cannot break out of its quotes (percent-encoded when unusual)."""
    if _SAFE_LABEL.match(text):
        return text
    return quote(text, safe="/ ._@+=,:-")


def _base_labels(base: str, image_id: str | None) -> list[tuple[str, str]]:
    """``org.opencontainers.image.base.digest`` when pinned, else the local image id if known."""
    m = REFERENCE.match(base)
    if m is not None and m.group("digest"):
        return [("org.opencontainers.image.base.digest", m.group("digest"))]
    if image_id and _SAFE_LABEL.match(image_id):
        return [("org.jupyter.envpack.base.id", image_id)]
    return []


def _labels(
    spec: EnvSpec, base: str, notebook_name: str, base_id: str | None = None
) -> list[tuple[str, str]]:
    return [
        *_base_labels(base, base_id),
        ("org.opencontainers.image.title", label_value(f"{notebook_name} (jupyter-envpack)")),
        (
            "org.opencontainers.image.description",
            label_value(f"Reproducible environment of {notebook_name}, Python {spec.python_minor}"),
        ),
        ("org.opencontainers.image.base.name", base),
        ("org.opencontainers.image.vendor", "jupyter-envpack"),
        ("org.opencontainers.image.version", spec.hash[:20]),
        ("org.jupyter.envpack", "1"),
        ("org.jupyter.envpack.kind", "build"),
        ("org.jupyter.envpack.snapshot", spec.hash),
        ("org.jupyter.envpack.notebook", label_value(notebook_name)),
        ("org.jupyter.envpack.python", spec.python_minor),
        ("org.jupyter.envpack.version", __version__),
        *_origin_labels(spec),
    ]


def _origin_labels(spec: EnvSpec) -> list[tuple[str, str]]:
    """``org.jupyter.envpack.origin=reconstructed`` (+ its date) on a reconstruction's image."""
    if not spec.reconstructed:
        return []
    as_of = str((spec.reconstruction or {}).get("as_of_used", ""))
    return [("org.jupyter.envpack.origin", "reconstructed")] + (
        [("org.jupyter.envpack.as-of", as_of)] if _SAFE_LABEL.match(as_of) else []
    )


def _origin_comment(spec: EnvSpec) -> str:
    """A header line saying plainly that a reconstruction is not what ran."""
    if not spec.reconstructed:
        return ""
    rec = spec.reconstruction or {}
    as_of = str(rec.get("as_of_used", "?"))
    as_of = as_of if _SAFE_LABEL.match(as_of) else "?"
    return (
        f"# RECONSTRUCTED environment (packages as of {as_of}): an educated guess, not what ran.\n"
    )


USER_SETUP = f"""\
RUN (command -v useradd >/dev/null \\
      && useradd --uid {USER_ID} --user-group --no-create-home --home-dir {HOME} envpack \\
      || true) \\
 && mkdir -p {WORKDIR} && chown -R {USER_ID}:{USER_ID} {HOME}
"""
"""The unprivileged user (numeric 1000, also where the base has no useradd) and its home."""


def _data_layer(spec: EnvSpec) -> str:
    """The data files' own layer, before the notebook's (which changes more often)."""
    if not spec.data_files:
        return ""
    size = sum(d.size for d in spec.data_files) / 2**20
    return (
        f"# {len(spec.data_files)} data files the notebook reads ({size:.1f} MiB)\n"
        f"COPY --chown={USER_ID}:{USER_ID} {DATA_DIR}/ {WORKDIR}/\n"
    )


def _final_layers(labels: str, data_layer: str = "") -> str:
    """Runner, kernelspec, environment, user, data files, the notebook layer (last), labels, CMD."""
    return f"""\
COPY envpack/run_notebook.py {RUNNER_SCRIPT}
COPY envpack/kernel.json /opt/envpack/share/jupyter/kernels/{KERNEL_NAME}/kernel.json
ENV PATH={ENV_PREFIX}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    VIRTUAL_ENV={ENV_PREFIX} JUPYTER_PATH=/opt/envpack/share/jupyter HOME={HOME} \\
    PYTHONUNBUFFERED=1 MPLBACKEND=Agg
WORKDIR {WORKDIR}
USER {USER_ID}:{USER_ID}
{data_layer}COPY --chown={USER_ID}:{USER_ID} work/ {WORKDIR}/
LABEL {labels}
CMD ["{RUNNER_PREFIX}/bin/python", "{RUNNER_SCRIPT}"]
"""


_WHEEL_URL = re.compile(r"http://[0-9.]{7,15}:[0-9]{1,5}/[0-9a-f]{32}/\Z")
_UV_VERSION = re.compile(r"[0-9]+(?:\.[0-9]+){1,3}\Z")


_APT_NAME = re.compile(r"[a-z0-9][a-z0-9+.-]{0,99}\Z")
_APT_SOURCE = re.compile(r"deb https?://[A-Za-z0-9.:_/-]+ [a-z][a-z0-9-]{1,30} main\Z")
_REASON = re.compile(r"[A-Za-z0-9._+-]{1,100}\Z")


def apt_layer(system: SystemNeeds | None) -> str:
    """The ``RUN apt-get install`` layer for ``system`` (before the environment; "" when none).

    Package names come from the distribution's file index and are checked against Debian's
    package-name syntax; the comment lists why each is there (sonames, programs).
    """
    names = [p for p in (system.packages if system else []) if _APT_NAME.match(p)]
    if system is None or not names:
        return ""
    why = [
        f"#   {p}: {', '.join(r for r in system.reasons.get(p, []) if _REASON.match(r))}"
        for p in names
    ]
    sources = ""
    if system.sources and _APT_SOURCE.match(system.sources):
        sources = f"echo '{system.sources}' > /etc/apt/sources.list \\\n && "
    return (
        "# System packages the wheels' shared libraries and the notebook's commands need (looked\n"
        "# up in the distribution's file index, not guessed):\n"
        + "\n".join(why)
        + f"\nRUN {sources}apt-get update -qq \\\n"
        " && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \\\n"
        f"      {' '.join(names)} \\\n"
        " && apt-get clean && rm -rf /var/lib/apt/lists/*\n"
    )


def render_dockerfile(
    spec: EnvSpec,
    opts: BuildOptions | None = None,
    notebook_name: str | None = None,
    wheel_url: str | None = None,
    system: SystemNeeds | None = None,
    hashed: bool = False,
    heavy: list[str] | None = None,
    chain: str = "",
    digests: dict[str, str] | None = None,
) -> str:
    """The Dockerfile of ``spec``.

    With ``wheel_url`` (the host's wheelhouse served over the Docker bridge, see
    :mod:`.wheelserver`) the environment is installed in one step and one layer; without it, the
    wheels travel in the context and a first stage installs them (what ``dockerfile -o DIR`` writes,
    buildable anywhere with ``docker build``). ``system``: apt packages installed in a layer
    before the environment (:func:`apt_layer`). ``hashed``: the lock files carry ``--hash`` lines,
    so uv installs with ``--require-hashes`` and the uv wheel is checked before it runs.
    ``heavy``: with ``wheel_url``, the pins installed in a layer each, in this order
    (:mod:`.layers`), each named in its ``RUN`` line only by the sha256 of its wheel (``digests``,
    pin → sha256: a digest, never user text); ``chain``: the hash of what lies under them (a
    label later builds look for).
    """
    opts = opts or BuildOptions()
    base = opts.resolved_base_image(spec.python_minor)
    name = notebook_name or spec.notebook.replace("\\", "/").rsplit("/", 1)[-1]
    pairs = _labels(spec, base, name, opts.base_image_id)
    if wheel_url is not None and heavy:
        pairs += [(LAYERS_LABEL, label_value(" ".join(heavy))), (CHAIN_LABEL, label_value(chain))]
    labels = " \\\n      ".join(f'{k}="{v}"' for k, v in pairs)
    if wheel_url is not None:
        if not _WHEEL_URL.match(wheel_url) or not _UV_VERSION.match(UV_VERSION):
            raise ValueError("invalid wheelhouse URL")
        apt = apt_layer(system)
        return _served(spec, base, labels, wheel_url, apt, heavy or [], digests or {})
    uv = "/usr/local/bin/uv"
    install = (
        f"{uv} pip install --no-deps --no-index --compile-bytecode --find-links /tmp/envpack/wheels"
    )
    check_uv = copy_sum = ""
    if hashed:
        copy_sum = "COPY envpack/uv.sha256 /tmp/envpack/uv.sha256\n"
        install += " --require-hashes"
        check_uv = "cd /tmp/envpack/wheels && sha256sum -c /tmp/envpack/uv.sha256 \\\n && "
    return f"""\
# Generated by jupyter-envpack {__version__}: the environment of one notebook, pinned.
# Snapshot {spec.hash[:20]} - Python {spec.python_minor}, {len(spec.packages)} pinned distributions.
{_origin_comment(spec)}# Build it yourself with:  docker build -t my-notebook .
# Layers: base -> runner venv -> notebook's venv (envpack/requirements.lock) -> notebook + local files.

# Stage 1: install the pinned wheels with uv, offline (no resolution: exactly what ran).
FROM {base} AS envpack-deps
USER 0:0
ENV UV_NO_CACHE=1 UV_PYTHON_DOWNLOADS=never UV_LINK_MODE=copy PIP_NO_INPUT=1
COPY envpack/wheels/ /tmp/envpack/wheels/
{copy_sum}RUN {check_uv}python3 -m zipfile -e /tmp/envpack/wheels/uv-*.whl /tmp/envpack/uv \\
 && install -m 0755 /tmp/envpack/uv/uv-*.data/scripts/uv {uv}
COPY envpack/runner.lock /tmp/envpack/runner.lock
RUN {uv} venv --quiet --python python3 {RUNNER_PREFIX} \\
 && {install} --python {RUNNER_PREFIX}/bin/python -r /tmp/envpack/runner.lock
COPY envpack/requirements.lock /tmp/envpack/requirements.lock
RUN {uv} venv --quiet --python python3 {ENV_PREFIX} \\
 && {install} --python {ENV_PREFIX}/bin/python -r /tmp/envpack/requirements.lock

# Stage 2: the image: base + the two venvs + the notebook, run as an unprivileged user.
FROM {base}
USER 0:0
{apt_layer(system)}{USER_SETUP}COPY --from=envpack-deps /opt/envpack /opt/envpack
{_final_layers(labels, _data_layer(spec))}"""


_SHA256 = re.compile(r"[0-9a-f]{64}\Z")


def _layers_comment(heavy: int) -> str:
    """The Dockerfile's line about its layers (heavy ones only with ``layers = "shared"``)."""
    if not heavy:
        return (
            "# Layers: base -> user -> runner venv -> system packages -> environment"
            " -> data files -> notebook.\n"
        )
    return (
        f"# Layers: base -> user -> runner venv -> {heavy} heavy distributions, one layer each, in"
        " an\n# order sibling notebooks share -> system packages -> the rest -> data files ->"
        " notebook.\n"
    )


def _served(
    spec: EnvSpec,
    base: str,
    labels: str,
    wheel_url: str,
    apt: str,
    heavy: list[str],
    digests: dict[str, str],
) -> str:
    install = f"RUN python3 /tmp/envpack/install_env.py {wheel_url} {UV_VERSION}"
    if not all(_SHA256.match(digests.get(pin, "")) for pin in heavy):
        raise ValueError("a heavy layer needs the sha256 of its one wheel")
    layers = "".join(f"{install} layer {digests[pin]}\n" for pin in heavy)
    return f"""\
# Generated by jupyter-envpack {__version__}: the environment of one notebook, pinned.
# Snapshot {spec.hash[:20]} - Python {spec.python_minor}, {len(spec.packages)} pinned distributions.
{_origin_comment(spec)}# The pinned wheels come from this machine's wheelhouse, served to the build over the Docker bridge
# and installed by a pinned uv with no resolution; neither the wheels nor uv stay in the image.
# (`jupyter envpack dockerfile -o DIR` writes a self-contained variant that carries the wheels.)
{_layers_comment(len(heavy))}FROM {base}
USER 0:0
{USER_SETUP}COPY envpack/runner.lock envpack/tools.lock envpack/install_env.py /tmp/envpack/
{install} runner
{layers}{apt}COPY envpack/requirements.lock envpack/rest.lock /tmp/envpack/
{install} rest
{_final_layers(labels, _data_layer(spec))}"""
