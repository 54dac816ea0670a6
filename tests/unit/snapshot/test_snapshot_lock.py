"""``<stem>.envpack.lock``: written from a real snapshot, read back, used instead of the kernel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jupyter_envpack.errors import InputError
from jupyter_envpack.snapshot import take_snapshot
from jupyter_envpack.snapshot.lock import (
    lock_from_spec,
    lock_path,
    parse_lock,
    read_lock,
    snapshot_from_lock,
    snapshot_or_lock,
    write_lock,
)

HASH = "a" * 64


def cli(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ENVPACK_BASE_IMAGE": ""}
    return subprocess.run(
        [sys.executable, "-m", "jupyter_envpack.cli", *argv],
        capture_output=True,
        text=True,
        env=env,
    )


def test_the_lock_round_trips_and_rebuilds_the_same_environment(
    make_notebook, kernel_python
) -> None:
    nb = make_notebook(["import yaml\nprint(yaml.__version__)"])
    spec = take_snapshot(nb, python=kernel_python)
    lock = lock_from_spec(spec, {"PyYAML": [HASH]}, "python:3.11-slim", "sha256:" + "b" * 64)
    path = write_lock(nb, lock)
    assert path == nb.with_name("nb.envpack.lock")
    text = path.read_text()
    yaml_pin = next(p for p in spec.packages if p.name == "PyYAML")
    assert f"PyYAML=={yaml_pin.version} --hash=sha256:{HASH} # imports: yaml" in text
    assert "# base-image: python:3.11-slim" in text and oct(path.stat().st_mode)[-3:] == "644"
    again = read_lock(path)
    assert again.dumps(nb.name) == text
    from_lock = snapshot_from_lock(nb, again)
    assert from_lock.hash == spec.hash  # the same image tag: CI rebuilds what the author had
    assert from_lock.python_version == spec.python_version and from_lock.warnings == []


def test_drift_between_notebook_and_lock_is_a_warning(make_notebook, kernel_python) -> None:
    nb = make_notebook(["import yaml"])
    write_lock(nb, lock_from_spec(take_snapshot(nb, python=kernel_python)))
    make_notebook(["import docker\nimport json\nimport packaging"])  # same path, new imports
    spec, lock = snapshot_or_lock(nb)
    assert lock is not None
    messages = sorted(w.message for w in spec.warnings if w.code == "lock-drift")
    assert messages == [
        "the lock file pins yaml for an import the notebook dropped",
        "the notebook imports docker, which the lock file does not pin",
    ]
    probed, none = snapshot_or_lock(nb, python=kernel_python, use_lock=False)
    assert none is None and any(p.name == "docker" for p in probed.packages)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("# python: 3.11.2\nrequests>=2\n", "line 2"),
        ("# python: 3.11.2\nx==1 ; rm -rf /\n", "line 2"),
        ("x==1\n", "names no Python version"),
        ("# python: 3.11.2\nx==1 --hash=sha256:abc\n", "line 2"),
    ],
)
def test_a_malformed_lock_says_which_line(text: str, needle: str) -> None:
    with pytest.raises(InputError, match=needle) as err:
        parse_lock(text)
    assert "jupyter envpack lock" in (err.value.hint or "regenerate")


@pytest.mark.reliability("L1")
def test_a_symlink_at_the_lock_name_is_refused_and_its_target_untouched(
    make_notebook, kernel_python, tmp_path
) -> None:
    nb = make_notebook(["import yaml"])
    canary = tmp_path / "outside.txt"
    canary.write_text("canary")
    lock_path(nb).symlink_to(canary)
    lock = lock_from_spec(take_snapshot(nb, python=kernel_python))
    with pytest.raises(InputError, match="symbolic link"):
        write_lock(nb, lock)
    with pytest.raises(InputError, match="not a regular file"):
        snapshot_or_lock(nb)
    assert canary.read_text() == "canary"
    assert [p.name for p in nb.parent.iterdir() if p.name.startswith(".envpack-lock")] == []


@pytest.mark.reliability("B6")
@pytest.mark.timeout(20)
def test_a_fifo_at_the_lock_name_does_not_hang(make_notebook) -> None:
    nb = make_notebook(["import yaml"])
    os.mkfifo(lock_path(nb))
    with pytest.raises(InputError, match="not a regular file"):
        snapshot_or_lock(nb)


def test_cli_lock_then_snapshot_uses_it_unless_no_lock(make_notebook, kernel_python) -> None:
    nb = make_notebook(["import yaml"])
    proc = cli("lock", str(nb), "--python", kernel_python, "--no-hashes", "-q")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(lock_path(nb))
    assert f"# python: {sys.version.split()[0]}\n" in lock_path(nb).read_text()
    locked = json.loads(cli("snapshot", str(nb), "--json").stdout)
    assert locked["python"]["interpreter"] == ""  # no kernel was probed
    assert "PyYAML" in [p["name"] for p in locked["packages"]]
    probed = json.loads(cli("snapshot", str(nb), "--json", "--no-lock").stdout)
    assert probed["python"]["interpreter"] and probed["hash"] == locked["hash"]


def test_the_lock_base_image_reaches_the_dockerfile(make_notebook, kernel_python) -> None:
    nb = make_notebook(["import yaml"])
    lock = lock_from_spec(take_snapshot(nb, python=kernel_python), base_image="example.org/py:3")
    write_lock(nb, lock)
    out = cli("dockerfile", str(nb)).stdout
    assert "FROM example.org/py:3" in out
    given = cli("dockerfile", str(nb), "--base-image", "python:3.11-slim").stdout
    assert "FROM python:3.11-slim" in given and "example.org" not in given


def test_lock_files_are_pip_requirements(make_notebook, kernel_python, tmp_path: Path) -> None:
    from packaging.requirements import Requirement

    nb = make_notebook(["import yaml"])
    path = write_lock(
        nb, lock_from_spec(take_snapshot(nb, python=kernel_python), {"PyYAML": [HASH]})
    )
    lines = [ln.split(" --hash")[0] for ln in path.read_text().splitlines() if ln[:1].isalnum()]
    assert len(lines) > 1 and all(str(Requirement(ln).specifier)[:2] == "==" for ln in lines)
