"""Kernelspecs are read from the Jupyter paths without importing jupyter_client (or IPython)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from jupyter_envpack.errors import InputError
from jupyter_envpack.snapshot.probe import resolve_kernel_python

CODE = """
import sys
from jupyter_envpack.snapshot.probe import resolve_kernel_python
print(resolve_kernel_python(sys.argv[1]))
print(sorted(m for m in ('jupyter_client', 'IPython', 'ipykernel') if m in sys.modules))
"""


def kernel(root: Path, name: str, argv: list[str], language: str = "python") -> None:
    folder = root / "kernels" / name
    folder.mkdir(parents=True)
    (folder / "kernel.json").write_text(
        json.dumps({"argv": argv, "language": language, "display_name": name})
    )


def test_a_kernel_json_names_its_interpreter_without_jupyter_client(tmp_path: Path) -> None:
    # Given a kernelspec on JUPYTER_PATH that runs /opt/x/bin/python
    kernel(tmp_path, "myenv", ["/opt/x/bin/python", "-m", "ipykernel_launcher", "-f", "{c}"])
    env = {"JUPYTER_PATH": str(tmp_path), "PATH": "/usr/bin:/bin"}
    # When it is resolved in a fresh interpreter
    out = subprocess.run(
        [sys.executable, "-c", CODE, "myenv"],
        capture_output=True,
        text=True,
        check=True,
        env={**env, "PYTHONPATH": ":".join(sys.path)},
    ).stdout.splitlines()
    # Then its argv[0] comes back and no kernel machinery was imported
    assert out == ["/opt/x/bin/python", "[]"]


def test_python3_without_a_file_is_this_interpreter(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    monkeypatch.setattr("jupyter_envpack.snapshot.probe._kernelspec_file", lambda k: None)
    assert resolve_kernel_python("python3") == sys.executable


def test_a_non_python_kernel_is_refused(monkeypatch, tmp_path: Path) -> None:
    kernel(tmp_path, "ir", ["R", "--slave"], language="R")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    with pytest.raises(InputError, match="runs R, not Python"):
        resolve_kernel_python("ir")


def test_an_unknown_kernel_says_how_to_list_them(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    with pytest.raises(InputError) as err:
        resolve_kernel_python("no-such-kernel-xyz")
    assert "jupyter kernelspec list" in (err.value.hint or "")
