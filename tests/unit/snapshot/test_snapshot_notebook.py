"""Reading notebooks and finding imports (RELIABILITY C1-C8, B6)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jupyter_envpack.errors import (
    NotebookError,
    NotebookTooLargeError,
    NotFoundError,
    UnsupportedLanguageError,
)
from jupyter_envpack.snapshot.notebook import (
    analyse_notebook,
    find_local_modules,
    imports_in_source,
    parse_notebook,
    pip_arguments,
    read_notebook_bytes,
)

GOOD = nbformat.writes(nbformat.v4.new_notebook()).encode()


@pytest.mark.reliability("C1")
@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b"[1, 2]",
        b'"a string"',
        b"[" * 200000,
        GOOD[: len(GOOD) // 2],
        b"\xff\xfe\x00garbage",
        "{}".encode("utf-16"),
        b"{}",
        b'{"cells": 3, "nbformat": 4}',
    ],
)
def test_unreadable_notebooks_give_one_clear_error(data: bytes) -> None:
    with pytest.raises(NotebookError, match=r"not a readable notebook|unsupported nbformat"):
        parse_notebook(data, "bad.ipynb")


@pytest.mark.reliability("C1")
def test_utf8_bom_is_tolerated() -> None:
    nb = parse_notebook(b"\xef\xbb\xbf" + GOOD)
    assert nb["nbformat"] == 4


@pytest.mark.reliability("C1")
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_arbitrary_bytes_never_crash(data: bytes) -> None:
    try:
        parse_notebook(data)
    except NotebookError:
        pass


@pytest.mark.reliability("C2")
def test_v3_notebook_is_upgraded(tmp_path: Path) -> None:
    v3 = nbformat.v3.new_notebook(
        worksheets=[
            nbformat.v3.new_worksheet(
                cells=[nbformat.v3.new_code_cell(input="import yaml\nimport os")]
            )
        ]
    )
    v3.metadata["name"] = "old"
    path = tmp_path / "old.ipynb"
    path.write_text(nbformat.v3.writes_json(v3))
    analysis, nb = analyse_notebook(path)
    assert nb["nbformat"] == 4
    assert [u.module for u in analysis.imports] == ["yaml", "os"]


@pytest.mark.reliability("C2")
def test_future_nbformat_version_is_named(tmp_path: Path) -> None:
    data = json.dumps({"nbformat": 99, "nbformat_minor": 0, "cells": [], "metadata": {}})
    with pytest.raises(NotebookError, match="99"):
        parse_notebook(data.encode())


@pytest.mark.reliability("C4")
def test_size_limit_is_checked_before_reading(tmp_path: Path) -> None:
    big = tmp_path / "big.ipynb"
    with big.open("wb") as fh:
        fh.truncate(60 * 2**20)  # sparse: no memory, no disk
    with pytest.raises(NotebookTooLargeError) as info:
        read_notebook_bytes(big)
    assert info.value.status == 413


@pytest.mark.reliability("B6")
@pytest.mark.timeout(10)
def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.ipynb"
    os.mkfifo(fifo)
    with pytest.raises(NotebookError, match="not a regular file"):
        read_notebook_bytes(fifo)


@pytest.mark.reliability("B6")
def test_missing_and_directory_paths(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        read_notebook_bytes(tmp_path / "nope.ipynb")
    with pytest.raises(NotebookError):
        read_notebook_bytes(tmp_path)


@pytest.mark.reliability("C5")
def test_r_notebook_is_unsupported(make_notebook) -> None:
    path = make_notebook(["library(ggplot2)"], kernel="ir", language="R")
    with pytest.raises(UnsupportedLanguageError, match="R notebook"):
        analyse_notebook(path)


@pytest.mark.reliability("C5")
def test_missing_language_assumes_python_with_a_warning(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import yaml")])
    path = tmp_path / "bare.ipynb"
    nbformat.write(nb, path)
    analysis, _ = analyse_notebook(path)
    assert [f.code for f in analysis.findings] == ["assumed-python"]
    assert [u.module for u in analysis.imports] == ["yaml"]


@pytest.mark.reliability("C6")
def test_ipython_syntax_and_broken_cells(make_notebook) -> None:
    path = make_notebook(
        [
            "%matplotlib inline\nimport numpy as np\n!ls\nx = np?",
            "%%bash\necho hi",
            "def f(:\n    import never_seen",
            "await something()\nimport json",
            "x = " + "(" * 300 + ")" * 300,
            "%pip install requests==2.31.0 'PyYAML>=6' -q\n!pip install -r reqs.txt --index-url http://x",
            "a = 1\x00",
        ]
    )
    analysis, _ = analyse_notebook(path)
    modules = {u.module for u in analysis.imports}
    assert {"numpy", "json"} <= modules
    assert "never_seen" not in modules
    bad = {f.cell for f in analysis.findings if f.code == "unparseable-cell"}
    assert 2 in bad and 6 in bad
    assert [r for r, _ in analysis.pip_requirements] == ["requests==2.31.0", "PyYAML>=6"]


@pytest.mark.reliability("C6")
@settings(
    max_examples=200,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(st.text(max_size=200))
def test_analysis_never_raises_on_any_cell_source(tmp_path_factory, source: str) -> None:
    folder = tmp_path_factory.mktemp("h")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "p"}
    path = folder / "h.ipynb"
    path.write_text(nbformat.writes(nb), encoding="utf-8", errors="surrogatepass")
    try:
        analyse_notebook(path)
    except NotebookError:
        pass  # e.g. lone surrogates make the file itself unreadable: a clear error is fine


@pytest.mark.reliability("C7")
def test_imports_at_any_depth_and_literal_dynamic_imports() -> None:
    found, dynamic = imports_in_source(
        "import importlib\n"
        "def f():\n    import scipy.stats\n"
        "try:\n    import ujson as json\nexcept ImportError:\n    import json\n"
        "if True:\n    from sklearn.model_selection import train_test_split\n"
        "m = importlib.import_module('yaml')\n__import__('toml')\n"
        "importlib.import_module(name)\n"
        "from . import sibling\nfrom .pkg import x\n"
    )
    assert [m for m, rel in found if not rel] == [
        "importlib",
        "scipy",
        "ujson",
        "json",
        "sklearn",
        "yaml",
        "toml",
    ]
    assert [m for m, rel in found if rel] == ["sibling", "pkg"]
    assert dynamic == 1


def test_pip_lines_skip_options_and_their_values() -> None:
    assert pip_arguments("!pip3 install -U --index-url http://i a b==1 -e . # c")[0] == [
        "a",
        "b==1",
    ]
    assert pip_arguments("%pip install -r r.txt")[0] == []
    assert pip_arguments("!python -m pip install 'x[y]>=1'")[0] == ["x[y]>=1"]


@pytest.mark.reliability("C8")
def test_local_modules_are_found_and_scanned_in_turn(tmp_path: Path) -> None:
    (tmp_path / "helpers.py").write_text("import yaml\nfrom pkg import util\n")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "util.py").write_text("import toml\n")
    (tmp_path / ".hidden").mkdir()
    modules = {"helpers", "numpy"}
    found, findings = find_local_modules(tmp_path, modules)
    assert set(found) == {"helpers", "pkg"}
    assert {"yaml", "toml", "pkg"} <= modules
    assert findings == []


@pytest.mark.reliability("B3")
def test_local_module_symlinked_outside_is_skipped(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.py").write_text("CANARY = 1\n")
    root = tmp_path / "root"
    root.mkdir()
    (root / "secret.py").symlink_to(outside / "secret.py")
    found, findings = find_local_modules(root, {"secret"})
    assert found == {}
    assert [f.code for f in findings] == ["local-file-skipped"]


def test_plain_python_cells_do_not_import_ipython(tmp_path: Path) -> None:
    # Given a notebook without IPython syntax, and one with a magic
    code = (
        "import sys, json, pathlib\n"
        "from jupyter_envpack.snapshot.notebook import analyse_notebook\n"
        "def nb(src):\n"
        "    cell = {'cell_type': 'code', 'source': src, 'metadata': {}, 'outputs': [],"
        " 'execution_count': None}\n"
        "    return json.dumps({'cells': [cell], 'metadata': {}, 'nbformat': 4,"
        " 'nbformat_minor': 5})\n"
        "p = pathlib.Path(sys.argv[1])\n"
        "p.write_text(nb('import yaml\\nx = 1'))\n"
        "a, _ = analyse_notebook(p)\n"
        "print([u.module for u in a.imports], 'IPython' in sys.modules)\n"
        "p.write_text(nb('!ls\\nimport requests'))\n"
        "a, _ = analyse_notebook(p)\n"
        "print([u.module for u in a.imports], 'IPython' in sys.modules)\n"
    )
    # When each is analysed in a fresh interpreter
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "n.ipynb")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    # Then the plain one never imported IPython, and the magic was still understood
    assert out == ["['yaml'] False", "['requests'] True"]
