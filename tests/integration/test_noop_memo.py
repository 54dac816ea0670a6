"""The no-op build memo (jupyter_envpack.buildmemo) on the real engine, through the CLI process.

A remembered build is only handed back while nothing it came from changed: each invalidation
(notebook bytes, a new data file, the kernel's environment, a removed image) takes the full path,
and what that path builds is checked inside the image.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import venv
from pathlib import Path
from typing import Any

import nbformat
import pytest

from jupyter_envpack.buildmemo import image_id, memo_dir, unix_socket_path
from jupyter_envpack.image.engine import engine_address

pytestmark = pytest.mark.docker
LABEL = "org.jupyter.envpack"
HIT = "unchanged since the last build"


def cli_build(nb: Path, base: str, python: str = sys.executable) -> tuple[str, str]:
    """``jupyter-envpack build`` as a process: (image printed last, stderr)."""
    cmd = [sys.executable, "-m", "jupyter_envpack.cli", "build", str(nb), "--python", python]
    proc = subprocess.run(
        [*cmd, "--base-image", base],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().splitlines()[-1], proc.stderr


def hit(nb: Path, base: str, python: str = sys.executable) -> tuple[str, bool]:
    """Build again expecting the memo: (image, whether it answered). A second try is allowed:
    other engineers' installs into the shared interpreter's folders are a real change (a miss)."""
    image, err = cli_build(nb, base, python)
    if HIT not in err:
        image, err = cli_build(nb, base, python)
    return image, HIT in err


def cat_in_image(client: Any, image: str, path: str) -> bytes:
    labels = {LABEL: "1", f"{LABEL}.test": "noop-memo"}
    out: bytes = client.containers.run(image, ["cat", path], remove=True, labels=labels)
    return out


def test_image_ids_over_the_socket_match_the_sdk(docker_client, test_base_image) -> None:
    sock = unix_socket_path(engine_address())
    assert sock is not None
    assert image_id(sock, test_base_image) == docker_client.images.get(test_base_image).id
    assert image_id(sock, "envpack-test/no-such-image:0") is None
    assert unix_socket_path("tcp://127.0.0.1:2375") is None  # no fast path over TCP/TLS/ssh


@pytest.mark.reliability("L8")
def test_noop_memo_hits_and_every_invalidation_rebuilds(
    docker_client, test_base_image, make_notebook, tmp_path
) -> None:
    folder = tmp_path / "proj"
    nb = make_notebook(
        [
            "import yaml\nprint(open('data.csv').read() if __import__('os').path.exists('data.csv') else 0)"
        ],
        name="memo.ipynb",
        folder=folder,
    )
    first, err = cli_build(nb, test_base_image)
    assert HIT not in err and "time: " in err  # the per-stage timing line ends a full build
    assert hit(nb, test_base_image) == (first, True)
    entries = [p for p in memo_dir().glob("*.json") if str(folder) in p.read_text()]
    assert entries and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in entries)
    assert stat.S_IMODE(memo_dir().stat().st_mode) == 0o700

    (folder / "data.csv").write_text("a\n1\n")  # a data file the notebook names appears
    with_data, err = cli_build(nb, test_base_image)
    assert HIT not in err and with_data != first
    assert cat_in_image(docker_client, with_data, "/home/envpack/work/data.csv") == b"a\n1\n"
    assert hit(nb, test_base_image) == (with_data, True)

    book = nbformat.read(nb, as_version=4)  # the notebook's bytes change
    book.cells[0].source += "\nprint(2)"
    nbformat.write(book, nb)
    edited, err = cli_build(nb, test_base_image)
    assert HIT not in err and edited != with_data
    assert b"print(2)" in cat_in_image(docker_client, edited, "/home/envpack/work/memo.ipynb")

    docker_client.images.remove(edited)  # the image went away: built again under its tag
    rebuilt, err = cli_build(nb, test_base_image)
    assert HIT not in err and rebuilt == edited
    docker_client.images.get(rebuilt)


def test_a_changed_kernel_environment_is_not_served_from_the_memo(
    test_base_image, make_notebook, tmp_path
) -> None:
    env = tmp_path / "kernel-env"
    venv.create(env, system_site_packages=True, with_pip=False)
    python = str(env / "bin" / "python")
    nb = make_notebook(["import yaml\nprint(1)"], name="envnb.ipynb", folder=tmp_path / "p")
    image, _ = cli_build(nb, test_base_image, python)
    assert hit(nb, test_base_image, python) == (image, True)
    site = next((env / "lib").glob("python3*/site-packages"))
    (site / "planted_module.py").write_text("X = 1\n")  # what any install into it does
    os.utime(site, ns=(site.stat().st_atime_ns, site.stat().st_mtime_ns + 10**9))
    _, err = cli_build(nb, test_base_image, python)
    assert HIT not in err and "cached" in err  # probed again; same closure, same image
