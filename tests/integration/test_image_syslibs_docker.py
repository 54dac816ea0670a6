"""System libraries, commands and the promise inside the image, on the real engine (issue 9.5, 9.7).

Each kernel is a real venv with real wheels from the index; each image is built on the offline
Debian base and checked from the inside (``import cv2``, ``file --version``, versions of the pins).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from wheel_builder import write_wheel

from jupyter_envpack.errors import BuildError
from jupyter_envpack.events import ProgressEvent
from jupyter_envpack.image import BuildOptions, build_image
from jupyter_envpack.image.build import image_reference
from jupyter_envpack.image.dockerfile import ENV_PREFIX
from jupyter_envpack.image.verify import inspect_environment
from jupyter_envpack.share.binder import binder_files
from jupyter_envpack.snapshot import take_snapshot
from jupyter_envpack.snapshot.spec import EnvSpec, PinnedPackage

pytestmark = pytest.mark.docker
LABEL = "org.jupyter.envpack"


def kernel_env(tmp_path: Path, *requirements: str) -> str:
    """A real venv holding ``requirements`` (from the index); return its interpreter."""
    venv = tmp_path / "kernel-env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", python, "install", "-q", *requirements],
        check=True,
        timeout=900,
    )
    return python


def run_in(client: Any, image: str, argv: list[str], labels: dict[str, str]) -> str:
    out = client.containers.run(
        image,
        argv,
        remove=True,
        entrypoint=[],
        network_disabled=True,
        labels={LABEL: "1", **labels},
    )
    return str(out.decode())


def _build(client: Any, base: str, path: Path, python: str) -> tuple[Any, Any, list[str]]:
    spec = take_snapshot(path, python=python)
    events: list[ProgressEvent] = []
    result = build_image(
        spec, path, BuildOptions(base_image=base), reporter=events.append, client=client
    )
    return spec, result, [e.message for e in events]


@pytest.mark.timeout(1800)
@pytest.mark.parametrize(
    ("wheel", "needs_gl"),
    [("opencv-python-headless", False), ("opencv-python", True)],
)
def test_opencv_imports_in_the_image_built_on_the_slim_base(
    docker_client, test_base_image, make_notebook, tmp_path, test_labels, wheel, needs_gl
) -> None:
    python = kernel_env(tmp_path, f"{wheel}<5.1")
    path = make_notebook(["import cv2\nprint(cv2.__version__)"], name="cv.ipynb")
    spec, result, _log = _build(docker_client, test_base_image, path, python)
    system = result.system or {}
    apt_txt = binder_files(spec).get("apt.txt", "").splitlines()[1:]
    assert apt_txt == system["packages"]  # the same list goes to binder/apt.txt
    if needs_gl:  # libGL.so.1 and glib come from Debian's own packages, found in Contents
        assert {"libgl1", "libglib2.0-0"} <= set(system["packages"])
        assert "libGL.so.1" in system["reasons"]["libgl1"]
    else:  # headless vendors everything it needs beyond the base image
        assert system["packages"] == []
    assert not [w for w in system["warnings"] if w["code"] == "unmapped-library"]
    dockerfile = docker_client.api.history(result.image)
    apt_steps = [h["CreatedBy"] for h in dockerfile if "apt-get install" in h["CreatedBy"]]
    assert bool(apt_steps) == needs_gl
    out = run_in(
        docker_client,
        result.image,
        [f"{ENV_PREFIX}/bin/python", "-c", "import cv2; print('cv2', cv2.__version__)"],
        test_labels,
    )
    assert out.startswith("cv2 ")


@pytest.mark.timeout(1200)
def test_old_pins_and_commands_are_what_the_image_holds(
    docker_client, test_base_image, make_notebook, tmp_path, test_labels
) -> None:
    """Deliberately old pins (not the newest) are the versions inside; `!file` gets its package."""
    python = kernel_env(tmp_path, "six==1.15.0", "tabulate==0.8.10")
    path = make_notebook(
        [
            "import six, tabulate",
            "!file cv.ipynb",
            "import subprocess\nsubprocess.run(['envpack-no-such-program-x', '-v'])",
        ],
        name="pins.ipynb",
    )
    spec, result, log = _build(docker_client, test_base_image, path, python)
    version, inside = inspect_environment(docker_client, result.image)
    assert inside["six"] == "1.15.0" and inside["tabulate"] == "0.8.10"
    # Debian's 3.11.2 in the offline base vs the kernel's own patch release: said, not hidden
    warned = any("python-version-differs" in line for line in log)
    assert warned == (version != spec.python_version), (version, spec.python_version)
    assert "file" in result.system["packages"]
    assert result.system["reasons"]["file"] == ["file"]
    missing = [w for w in result.system["warnings"] if w["code"] == "missing-command"]
    assert [(w["cell"], "envpack-no-such-program-x" in w["message"]) for w in missing] == [
        (2, True)
    ]
    assert any("missing-command" in line for line in log)
    out = run_in(docker_client, result.image, ["file", "--version"], test_labels)
    assert out.startswith("file-")
    again = build_image(
        take_snapshot(path, python=python),
        path,
        BuildOptions(base_image=test_base_image),
        client=docker_client,
    )
    assert again.cached and again.image == result.image
    assert again.system == result.system
    opts = BuildOptions(base_image=test_base_image)  # what `%envpack status` names, no build
    assert image_reference(take_snapshot(path, python=python), path, opts, docker_client) == (
        result.image
    )


def _smuggler_wheel(folder: Path) -> Path:
    """A wheel that also installs a second distribution (``extra-pkg 9.9``) through its data."""
    name, version = "envpack_smuggler", "1.0"
    extra = f"{name}-{version}.data/purelib/extra_pkg-9.9.dist-info"
    files = {
        f"{name}/__init__.py": b"",
        f"{extra}/METADATA": b"Metadata-Version: 2.1\nName: extra-pkg\nVersion: 9.9\n",
        f"{name}-{version}.dist-info/METADATA": (
            f"Metadata-Version: 2.1\nName: envpack-smuggler\nVersion: {version}\n".encode()
        ),
        f"{name}-{version}.dist-info/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    write_wheel(wheel, files)
    return wheel


@pytest.mark.timeout(900)
def test_an_image_whose_environment_is_not_the_lock_fails_the_build(
    docker_client, test_base_image, make_notebook, tmp_path, httpserver, monkeypatch
) -> None:
    """A wheel that smuggles a second distribution in: the check inside the image names it."""
    wheel = _smuggler_wheel(tmp_path)
    httpserver.expect_request("/simple/envpack-smuggler/").respond_with_data(
        f'<a href="/files/{wheel.name}">{wheel.name}</a>', content_type="text/html"
    )
    httpserver.expect_request(f"/files/{wheel.name}").respond_with_data(
        wheel.read_bytes(), content_type="application/octet-stream"
    )
    monkeypatch.setenv("ENVPACK_WHEEL_CACHE", str(tmp_path / "wheels"))
    path = make_notebook(["import envpack_smuggler"], name="smuggle.ipynb")
    spec = EnvSpec(
        notebook=str(path),
        python_version="3.11.7",
        packages=[PinnedPackage("envpack-smuggler", "1.0", True)],
    )
    index = f"http://127.0.0.1:{httpserver.port}/simple"
    with pytest.raises(BuildError) as info:
        build_image(
            spec,
            path,
            BuildOptions(base_image=test_base_image, extra_index_urls=(index,)),
            client=docker_client,
        )
    assert info.value.reason == "image-mismatch"
    assert "extra-pkg==9.9 (not in the lock)" in str(info.value)
    assert docker_client.images.list(name="envpack/smuggle") == []  # the bad image is untagged


@pytest.mark.timeout(900)
def test_a_base_without_apt_sources_gets_them_written(
    docker_client, test_base_image, make_notebook, tmp_path, test_labels
) -> None:
    """The apt layer writes the base distribution's sources when the base image has none."""
    import io

    dockerfile = (
        f"FROM {test_base_image}\n"
        "RUN rm -f /etc/apt/sources.list && rm -rf /etc/apt/sources.list.d/*\n"
    )
    base = "envpack-test/b-no-apt-sources:1"
    docker_client.images.build(
        fileobj=io.BytesIO(dockerfile.encode()),
        tag=base,
        rm=True,
        labels={LABEL: "1", **test_labels},
    )
    try:
        path = make_notebook(["!file --version"], name="nosources.ipynb")
        spec = EnvSpec(notebook=str(path), python_version="3.11.7", packages=[])
        result = build_image(spec, path, BuildOptions(base_image=base), client=docker_client)
        assert result.system["packages"] == ["file"]
        history = " ".join(h["CreatedBy"] for h in docker_client.api.history(result.image))
        assert "deb http://deb.debian.org/debian bookworm main" in history
        assert run_in(docker_client, result.image, ["file", "--version"], test_labels).startswith(
            "file-"
        )
    finally:
        for image in docker_client.images.list(filters={"label": f"{LABEL}.test"}):
            if set(test_labels.items()) <= set(image.labels.items()) or base in image.tags:
                docker_client.images.remove(image.id, force=True)
