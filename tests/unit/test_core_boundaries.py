"""The core is a plain library: no server, no IPython, no heavy imports until a verb needs them."""

from __future__ import annotations

import subprocess
import sys


def test_core_and_cli_import_no_server_ipython_or_docker() -> None:
    code = (
        "import sys\n"
        "import jupyter_envpack.snapshot, jupyter_envpack.image, jupyter_envpack.execute\n"
        "import jupyter_envpack.pipeline, jupyter_envpack.cli\n"
        "jupyter_envpack.cli.build_parser()\n"
        "print(sorted(m for m in ('tornado', 'jupyter_server', 'IPython', 'docker', 'nbformat',"
        " 'kubernetes') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_builtin_verb_does_not_import_the_plugins() -> None:
    # Given the CLI parsing a built-in verb, When it is done, Then no plugin module was imported
    code = (
        "import sys, jupyter_envpack.cli as c\n"
        "c.build_parser(plugins=c._needs_plugins(['build', 'x.ipynb'])).parse_args(['build', 'x'])\n"
        "print(sorted(m for m in c.PLUGINS if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    # and a plugin verb still parses
    proc = subprocess.run(
        [sys.executable, "-m", "jupyter_envpack.cli", "jobs", "--help"], capture_output=True
    )
    assert proc.returncode == 0, proc.stderr


def test_cli_usage_errors_exit_2_with_a_message(tmp_path) -> None:
    bad = tmp_path / "bad.ipynb"
    bad.write_text("not json")
    for argv, needle in (
        (["snapshot", str(bad)], "not a readable notebook"),
        (["snapshot", str(tmp_path / "missing.ipynb")], "notebook not found"),
        (["build", str(bad), "--base-image", "Bad:Ref"], "invalid base image"),
        (["run", str(bad), "-p", "class", "1"], "invalid parameter name"),
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "jupyter_envpack.cli", *argv], capture_output=True, text=True
        )
        assert proc.returncode == 2, (argv, proc.stderr)
        assert needle in proc.stderr and "Traceback" not in proc.stderr


def test_snapshot_json_contract(make_notebook) -> None:
    import json

    nb = make_notebook(["import yaml\nimport sklearn"])
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "jupyter_envpack.cli",
            "snapshot",
            str(nb),
            "--json",
            "--python",
            sys.executable,
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["schema"] == "envpack.snapshot/1" and data["python"]["version"]
    assert {"name": "PyYAML", "requested": True}.items() <= next(
        p for p in data["packages"] if p["name"] == "PyYAML"
    ).items()
    assert any(w["code"] == "unresolved-import" and w["cell"] == 0 for w in data["warnings"])
    assert len(data["hash"]) == 64
