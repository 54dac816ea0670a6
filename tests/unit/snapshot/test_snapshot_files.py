"""What a notebook needs besides packages: data files, %run scripts, reachable local code (issue 9, 10.5)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from jupyter_envpack.snapshot import (
    DataOptions,
    EnvSpec,
    SnapshotOptions,
    localfiles,
    take_snapshot,
)
from jupyter_envpack.snapshot.notebook import pip_arguments
from jupyter_envpack.snapshot.sources import scan_source

OFFLINE = SnapshotOptions(from_index=False)


def snap(nb: Path, **data: object) -> EnvSpec:
    opts = SnapshotOptions(data=DataOptions(**data), from_index=False)  # type: ignore[arg-type]
    return take_snapshot(nb, python=sys.executable, options=opts)


def codes(spec: EnvSpec) -> list[str]:
    return [w.code for w in spec.warnings]


def write(path: Path, text: str = "x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# ------------------------------------------------------------------ scanning the source
def test_path_literals_in_joins_path_division_and_fstrings() -> None:
    scan = scan_source(
        "import os\nfrom pathlib import Path\n"
        "open(os.path.join('inputs', 'table.txt'))\n"
        "os.path.join('inputs', name)\n"
        "Path('inputs') / 'a.txt'\n"
        "Path('in', 'b') / sub / 'c'\n"
        "Path('x').joinpath('y', 'z')\n"
        "f'data/run_{i}.csv'\n"
    )
    found = {(p.text, p.prefix) for p in scan.paths}
    assert {
        ("inputs/table.txt", False),
        ("inputs", True),
        ("inputs/a.txt", False),
        ("in/b", True),
        ("x/y/z", False),
        ("data/run_", True),
    } <= found


@pytest.mark.reliability("C6")
def test_run_load_and_exec_name_scripts_and_modules(make_notebook) -> None:
    from jupyter_envpack.snapshot.notebook import analyse_notebook

    nb = make_notebook(
        [
            "%run -i helpers/setup.py arg1",
            "%run -m tools.report",
            "%load -r 1-5 snippet.py",
            "exec(open('extra.py').read())",
            "%load https://example.org/x.py",
        ]
    )
    analysis, _ = analyse_notebook(nb)
    assert [s for s, _ in analysis.scripts] == ["helpers/setup.py", "snippet.py", "extra.py"]
    assert analysis.run_modules == [("tools.report", 1)]


@pytest.mark.reliability("C6", "D1")
def test_pip_arguments_with_shell_syntax_are_unparseable_never_dropped() -> None:
    reqs, bad = pip_arguments(
        "%pip install 'requests$(touch x)'\n"
        "%pip install `id`pkg\n"
        '%pip install "numpy; echo hi"\n'
        "!pip install tabulate==0.9.0 ./local-dir 'x; python_version>\"3\"'\n"
        "!pip install rich; rm -rf /\n"
    )
    assert reqs == ["tabulate==0.9.0", 'x; python_version>"3"']
    assert bad == [
        "requests$(touch x)",
        "`id`pkg",
        "numpy; echo hi",
        "./local-dir",
        "rich;",  # everything after shell syntax is another command: never a requirement
        "rm",
        "-rf",
        "/",
    ]


@pytest.mark.reliability("C6", "D1")
def test_unparseable_pip_requirement_is_a_warning_on_its_cell(make_notebook, tmp_path) -> None:
    nb = make_notebook(["print(1)", "%pip install 'requests$(touch x)'"])
    spec = take_snapshot(nb, python=sys.executable, options=OFFLINE)
    found = [w for w in spec.warnings if w.code == "unparseable-pip-requirement"]
    assert [w.cell for w in found] == [1]
    assert not (tmp_path / "x").exists()  # never executed


# ------------------------------------------------------------------ data files
def test_data_files_named_by_the_code_are_listed_with_sizes(make_notebook, tmp_path) -> None:
    write(tmp_path / "data" / "x.csv", "a,b\n1,2\n")
    write(tmp_path / "inputs" / "table.txt", "hello")
    write(tmp_path / "inputs" / "other.txt", "o")
    write(tmp_path / "runs" / "run_1.csv", "1")
    write(tmp_path / "runs" / "run_2.csv", "22")
    write(tmp_path / "runs" / "notes.md", "n")
    write(tmp_path / "unused.txt")
    nb = make_notebook(
        [
            "import csv\nrows = list(csv.reader(open('data/x.csv')))",
            "import os\nopen(os.path.join('inputs', 'table.txt')).read()",
            "[open(f'runs/run_{i}.csv').read() for i in (1, 2)]",
        ]
    )
    spec = snap(nb)
    assert [(d.path, d.size) for d in spec.data_files] == [
        ("data/x.csv", 8),
        ("inputs/table.txt", 5),
        ("runs/run_1.csv", 1),
        ("runs/run_2.csv", 2),
    ]
    again = EnvSpec.from_json(spec.to_json())
    assert again.data_files == spec.data_files
    assert "data/x.csv" in spec.to_json()["image_files"]
    assert spec.files_summary().startswith("5 files go into the image")
    assert "data/x.csv" in spec.files_summary() and "nb.ipynb" in spec.files_summary()


@pytest.mark.reliability("B3", "B4", "L5")
def test_a_folder_ships_without_hidden_secret_or_symlinked_files(make_notebook, tmp_path) -> None:
    outside = write(tmp_path.parent / f"{tmp_path.name}-outside" / "canary.txt", "CANARY")
    root = tmp_path / "proj"
    write(root / "inputs" / "a.txt", "a")
    write(root / "inputs" / ".env", "TOKEN=CANARY")
    write(root / "inputs" / "server.pem", "CANARY")
    write(root / "inputs" / "credentials.json", "CANARY")
    write(root / "inputs" / ".git" / "config", "CANARY")
    write(root / "inputs" / "nb.envpack.ipynb", "{}")
    (root / "inputs" / "link.txt").symlink_to(outside)
    (root / "linked").symlink_to(outside.parent)
    nb = make_notebook(
        ["from pathlib import Path\nPath('inputs') / name\nopen('linked/canary.txt')"],
        folder=root,
    )
    spec = snap(nb)
    assert [d.path for d in spec.data_files] == ["inputs/a.txt"]
    skipped = [w.message for w in spec.warnings if w.code == "secret-file-skipped"]
    assert any("server.pem" in m for m in skipped)
    assert any("credentials.json" in m for m in skipped)


def test_size_cap_include_and_exclude(make_notebook, tmp_path) -> None:
    write(tmp_path / "data" / "a.bin", "a" * 600)
    write(tmp_path / "data" / "b.bin", "b" * 600)
    write(tmp_path / "data" / "skip.log", "l")
    write(tmp_path / "extra" / "lookup.json", "{}")
    nb = make_notebook(["open('data/' + name)\nsrc = 'data'"])
    spec = snap(nb, max_bytes=1000)
    assert [d.path for d in spec.data_files] == ["data/a.bin", "data/skip.log"]
    assert "large-data-files" in codes(spec)
    assert "max_data_bytes" in next(w.hint for w in spec.warnings if w.code == "large-data-files")
    spec = snap(nb, exclude=("*.bin",), include=("extra/*.json",))
    assert [d.path for d in spec.data_files] == ["data/skip.log", "extra/lookup.json"]
    spec = snap(nb, exclude=("data",))
    assert spec.data_files == []


def test_absolute_and_outside_paths_are_external_with_a_fix(make_notebook, tmp_path) -> None:
    far = write(tmp_path.parent / f"{tmp_path.name}-far" / "big.csv")
    nb = make_notebook(
        [
            f"open({str(far)!r})",
            f"open('../../{far.parent.name}/big.csv')",
            "open('/etc/hostname')",
        ],
        folder=tmp_path / "nbdir",
    )
    spec = snap(nb)
    external = [w for w in spec.warnings if w.code == "external-data-file"]
    assert [w.cell for w in external] == [0, 1]
    assert all("relative path" in (w.hint or "") for w in external)
    assert spec.data_files == []


# ------------------------------------------------------------------ local code
@pytest.mark.reliability("C8")
def test_run_scripts_are_local_files_scanned_in_turn(make_notebook, tmp_path) -> None:
    write(
        tmp_path / "scripts" / "setup.py", "import yaml\nfrom helper import f\nopen('cfg/a.ini')\n"
    )
    write(tmp_path / "helper.py", "def f():\n    return open('lookup.txt').read()\n")
    write(tmp_path / "cfg" / "a.ini", "[a]")
    write(tmp_path / "lookup.txt", "l")
    write(tmp_path / "tools" / "__init__.py", "")
    write(tmp_path / "tools" / "report.py", "from . import fmt\n")
    write(tmp_path / "tools" / "fmt.py", "import packaging\n")
    write(tmp_path / "tools" / "unused.py", "")
    nb = make_notebook(["%run scripts/setup.py", "%run -m tools.report", "%run missing.py"])
    spec = snap(nb)
    assert spec.local_files == [
        "helper.py",
        "scripts/setup.py",
        "tools/__init__.py",
        "tools/fmt.py",
        "tools/report.py",
    ]
    assert [d.path for d in spec.data_files] == ["cfg/a.ini", "lookup.txt"]
    names = {p.name.lower() for p in spec.packages}
    assert {"pyyaml", "packaging"} <= names
    assert "missing-script" in codes(spec)


@pytest.mark.reliability("L5", "C8")
def test_only_what_an_import_reaches_is_collected_never_secrets(tmp_path, make_notebook) -> None:
    write(tmp_path / "pkg" / "__init__.py", "from .core import run\n")
    write(tmp_path / "pkg" / "core.py", "from pkg.sub import deep\n")
    write(tmp_path / "pkg" / "sub" / "__init__.py", "")
    write(tmp_path / "pkg" / "sub" / "deep.py", "X = 1\n")
    for i in range(50):
        write(tmp_path / "pkg" / "bulk" / f"m{i}.py", "CANARY = 1\n")
    write(tmp_path / "pkg" / "credentials.py", "TOKEN = 'CANARY'\n")
    write(tmp_path / "pkg" / ".env", "CANARY")
    nb = make_notebook(["import pkg\nfrom pkg import credentials"])
    spec = snap(nb)
    assert spec.local_files == [
        "pkg/__init__.py",
        "pkg/core.py",
        "pkg/sub/__init__.py",
        "pkg/sub/deep.py",
    ]
    assert "secret-file-skipped" in codes(spec)


@pytest.mark.reliability("L5")
def test_local_code_is_capped_with_a_warning(tmp_path, make_notebook, monkeypatch) -> None:
    monkeypatch.setattr(localfiles, "MAX_LOCAL_FILES", 3)
    for i in range(6):
        write(tmp_path / f"m{i}.py", f"import m{i + 1}\n" if i < 5 else "")
    nb = make_notebook(["import m0"])
    spec = snap(nb)
    assert len(spec.local_files) == 3
    assert "local-files-capped" in codes(spec)


def test_cli_include_exclude_and_cap(make_notebook, tmp_path, capsys) -> None:
    import json

    from jupyter_envpack.cli import main

    write(tmp_path / "data" / "a.csv", "a" * 10)
    write(tmp_path / "data" / "b.log", "b" * 10)
    write(tmp_path / "extra" / "lookup.json", "{}")
    nb = make_notebook(["import os\nos.listdir('data')"])
    argv = ["snapshot", str(nb), "--python", sys.executable, "--json"]
    assert main([*argv, "--exclude", "*.log", "--include", "extra/*.json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [d["path"] for d in out["data_files"]] == ["data/a.csv", "extra/lookup.json"]
    assert main([*argv, "--max-data-bytes", "15"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [d["path"] for d in out["data_files"]] == ["data/a.csv"]
    assert "large-data-files" in [w["code"] for w in out["warnings"]]


def test_a_huge_tree_is_not_walked_to_the_end(make_notebook, tmp_path, monkeypatch) -> None:
    from jupyter_envpack.snapshot import datafiles

    monkeypatch.setattr(datafiles, "MAX_VISITED", 5)
    for i in range(20):
        write(tmp_path / "tree" / f"f{i:02}.txt", "x")
    spec = snap(make_notebook(["import os\nos.listdir('tree')"]))
    assert len(spec.data_files) == 4  # the folder itself is the first entry visited
    assert "large-data-files" in codes(spec)


@pytest.mark.reliability("C6")
def test_hostile_literals_and_a_run_notebook(make_notebook, tmp_path) -> None:
    """NUL bytes, unknown ~users, recursive globs: no crash, no walk; %run x.ipynb is scanned."""
    write(tmp_path / "deep" / "a" / "b.txt", "b")
    make_notebook(["import yaml\nopen('from_other.txt')"], name="other.ipynb")
    write(tmp_path / "from_other.txt", "o")
    nb = make_notebook(
        [
            "open('a\\x00b')\nopen('~no-such-user-xyz/f')\nglob('**/*.txt')",
            "%run ~no-such-user-xyz/s.py",
            "%run 'bad\\x00name.py'",
            "%run other.ipynb",
        ]
    )
    spec = snap(nb)
    assert "other.ipynb" in spec.local_files
    assert [d.path for d in spec.data_files] == ["from_other.txt"]
    assert "pyyaml" in {p.name.lower() for p in spec.packages}


def test_the_magics_view_names_runner_packages_and_data_files() -> None:
    from jupyter_envpack.snapshot.spec import DataFile, PinnedPackage
    from jupyter_envpack.widgets import SnapshotView

    spec = EnvSpec("nb.ipynb", "3.11.7", [PinnedPackage("ipykernel", "6.29.0", reason="runner")])
    spec.data_files = [DataFile("data/<x>.csv", 3)]
    text, html = repr(SnapshotView(spec)), SnapshotView(spec)._repr_html_()
    assert "ipykernel==6.29.0  (added to run the kernel)" in text and "data/<x>.csv" in text
    assert "data/&lt;x&gt;.csv" in html
