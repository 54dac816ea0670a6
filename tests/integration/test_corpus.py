"""Real notebooks written by other people (issue 9.9), used as the corpus README says.

A kernel virtualenv with pinned (not newest) numpy, pandas, scipy and matplotlib is made once and
cached under the temp folder, keyed by the pins and this Python. Each notebook of
``<corpus>/whirlwind`` is executed twice natively with nbclient; cells whose outputs differ between
the two native runs are nondeterministic and left out. Then ``jupyter envpack run NB --python
<kernel venv>`` (snapshot, ONE image on the offline base, rerun in the container) must reproduce
every remaining cell of the native run.

The corpus is found with ``$ENVPACK_TEST_CORPUS``, else ``shared/corpus`` beside the repository or one
of its parents (CI: ``../shared/corpus``). Under ``CI=true`` a missing corpus is a failure.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
import shared_corpus
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

from jupyter_envpack.execute.compare import compare_notebooks

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parents[2]
PINS = (
    "numpy==1.26.4",
    "pandas==2.1.4",
    "scipy==1.11.4",
    "matplotlib==3.8.2",
    "ipykernel==6.29.5",
)
MATCHING = frozenset({"same", "error"})  # same outputs, or the same exception as natively
CELL_TIMEOUT = 300


@pytest.fixture(scope="session")
def corpus_kernel() -> Path:
    """The pinned kernel venv's interpreter (made once, cached by pins + Python, file-locked)."""
    key = hashlib.sha256(json.dumps([PINS, sys.version]).encode()).hexdigest()[:16]
    venv = Path(tempfile.gettempdir()) / f"envpack-corpus-kernel-{key}"
    python = venv / "bin" / "python"
    with open(f"{venv}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (venv / ".complete").is_file():
            shutil.rmtree(venv, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
            pip = [str(python), "-m", "pip", "install", "-q", *PINS]
            subprocess.run(pip, check=True, timeout=1800)
            (venv / ".complete").write_text("\n".join(PINS))
    return python


def _kernel_manager(python: Path, home: Path) -> KernelManager:
    """A kernel of ``python`` (an absolute argv: ipykernel's own kernel.json says ``python``)."""
    spec_dir = home / "kernels" / "corpus"
    spec_dir.mkdir(parents=True, exist_ok=True)
    argv = [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    spec = {"argv": argv, "display_name": "corpus", "language": "python"}
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    ksm = KernelSpecManager(kernel_dirs=[str(home / "kernels")], ensure_native_kernel=False)
    return KernelManager(kernel_name="corpus", kernel_spec_manager=ksm)


def _native_run(source: Path, folder: Path, python: Path) -> Any:
    nb = nbformat.read(source, as_version=4)
    km = _kernel_manager(python, folder.parent / "jupyter")
    client = NotebookClient(
        nb,
        km=km,
        allow_errors=True,
        timeout=CELL_TIMEOUT,
        resources={"metadata": {"path": str(folder)}},
    )
    try:
        client.execute()
    finally:  # nbclient leaves a kernel it was given running
        if km.has_kernel:
            km.shutdown_kernel(now=True)
    return nb


@pytest.fixture
def corpus_notebook(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    """A copy of the corpus notebook in its own folder (never edited in place)."""
    source: Path = request.param
    folder = tmp_path / "nb"
    folder.mkdir()
    target = folder / source.name
    shutil.copyfile(source, target)
    yield target


def _envpack_run(notebook: Path, python: Path, base: str) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "jupyter_envpack.cli", "run", str(notebook), "-q", "--json"]
    cmd += ["--python", str(python), "--base-image", base, "--cell-timeout", str(CELL_TIMEOUT)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, cwd=notebook.parent)
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    report: dict[str, Any] = json.loads(proc.stdout)
    return report


def test_the_corpus_is_there() -> None:
    # fails under CI when the corpus is missing
    shared_corpus.corpus_notebook("06-Built-in-Data-Structures.ipynb")
    assert len(shared_corpus.corpus_notebooks()) >= 5


@pytest.mark.timeout(3600)
@pytest.mark.parametrize(
    "corpus_notebook", shared_corpus.corpus_notebooks(), indirect=True, ids=lambda p: p.stem
)
def test_real_notebook_reproduces_every_deterministic_cell(
    corpus_notebook: Path, corpus_kernel: Path, test_base_image: str
) -> None:
    folder = corpus_notebook.parent
    first = _native_run(corpus_notebook, folder, corpus_kernel)
    second = _native_run(corpus_notebook, folder, corpus_kernel)
    native = compare_notebooks(first, second)
    deterministic = {c.index for c in native.cells if c.status in MATCHING}
    nbformat.write(first, corpus_notebook)  # the user's notebook: outputs of the native run

    report = _envpack_run(corpus_notebook, corpus_kernel, test_base_image)
    assert report["run_status"] == "completed", report
    verdicts = {c["index"]: c for c in report["cells"]}
    broken = {
        i: verdicts.get(i)
        for i in deterministic
        if verdicts.get(i, {}).get("status") not in MATCHING
    }
    print(
        f"{corpus_notebook.name}: {len(deterministic) - len(broken)}/{len(deterministic)} "
        f"deterministic cells reproduced ({len(native.cells) - len(deterministic)} of "
        f"{len(native.cells)} code cells nondeterministic natively)"
    )
    assert not broken, broken
    assert len(deterministic) >= len(native.cells) // 2  # the comparison is not vacuous
