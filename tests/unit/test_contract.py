"""The image contract is declared once (``contract.py``); the in-image runner's copy agrees.

The runner script runs inside the image without this package, so it cannot import the contract:
these tests read its source and fail when a marker, the parameters variable or an exit code
drifts from :mod:`jupyter_envpack.contract`.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import jupyter_envpack
from jupyter_envpack import contract
from jupyter_envpack.cluster.base import JobSpec, status_from_exit_code
from jupyter_envpack.errors import InputError
from jupyter_envpack.execute.limits import parse_memory

PACKAGE = Path(jupyter_envpack.__file__).parent
RUNNER = PACKAGE / "execute" / "_runner_script.py"


def _runner_tree() -> ast.Module:
    return ast.parse(RUNNER.read_text(encoding="utf-8"))


def _assigned_strings(tree: ast.Module) -> dict[str, str]:
    out: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            for target in node.targets:
                if isinstance(target, ast.Name) and isinstance(node.value.value, str):
                    out[target.id] = node.value.value
    return out


def _exit_codes(tree: ast.Module) -> set[int]:
    """Every integer the runner exits with: ``sys.exit(N)``, ``return N`` in main, ``code = N``."""
    codes: set[int] = set()
    for node in ast.walk(tree):
        value = None
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "exit" and node.args:
            value = node.args[0]
        elif isinstance(node, ast.Return) or (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "code" for t in node.targets)
        ):
            value = node.value
        if isinstance(value, ast.Constant) and type(value.value) is int:
            codes.add(value.value)
    return codes


@pytest.mark.reliability("L6")
def test_runner_markers_match_the_contract() -> None:
    strings = _assigned_strings(_runner_tree())
    assert strings["BEGIN"] == contract.RESULT_BEGIN
    assert strings["END"] == contract.RESULT_END


def test_runner_reads_the_contract_parameters_variable() -> None:
    source = RUNNER.read_text(encoding="utf-8")
    assert re.findall(r"ENVPACK_[A-Z_]+", source) != []
    assert set(re.findall(r"os\.environ\.get\(\"(\w+)\"\)", source)) == {contract.PARAMETERS_ENV}


def test_every_runner_exit_code_has_a_reason() -> None:
    codes = _exit_codes(_runner_tree())
    assert {2, 3, 4, 5} <= codes  # the walk finds them (a refactor of the script shows here)
    assert codes <= set(contract.EXIT_REASONS), codes - set(contract.EXIT_REASONS)
    for code in codes - {contract.EXIT_OK}:
        assert status_from_exit_code(code).reason == contract.EXIT_REASONS[code]


def test_no_module_redeclares_the_contract() -> None:
    """The contract's literals appear in ``contract.py`` and the runner script only."""
    literals = [
        contract.RUNNER_SCRIPT,
        contract.RESULT_BEGIN,
        f'"{contract.PARAMETERS_ENV}"',
        f'= "{contract.LABEL}"',
        f'"{contract.LABEL}": "1"',
        "USER_ID = ",
        "IMAGE_USER",
    ]
    allowed = {PACKAGE / "contract.py", RUNNER}
    for path in PACKAGE.rglob("*.py"):
        if path in allowed:
            continue
        text = path.read_text(encoding="utf-8")
        found = [lit for lit in literals if lit in text]
        assert not found, f"{path.relative_to(PACKAGE)} re-declares {found}"


def test_a_cluster_job_runs_the_contract_runner() -> None:
    spec = JobSpec(job_id="j", name="n", image="i", parameters_cell="a = 1", cell_timeout=5)
    assert spec.command()[:2] == [contract.RUNNER_PYTHON, contract.RUNNER_SCRIPT]
    assert spec.environment() == {"HOME": contract.HOME, contract.PARAMETERS_ENV: "a = 1"}
    assert spec.all_labels()[contract.LABEL] == "1"


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("512m", 512 * 2**20),
        ("512MB", 512 * 2**20),
        ("2g", 2 * 2**30),
        ("1Gi", 2**30),
        ("1.5g", int(1.5 * 2**30)),
        (str(2**26), 2**26),
        (2**26, 2**26),
    ],
)
def test_one_memory_grammar(text: str | int, size: int) -> None:
    assert parse_memory(text) == size


@pytest.mark.parametrize("text", ["lots", "-1g", "1 GB of RAM", "1e9", True, "16m", 2**20])
def test_one_memory_grammar_refuses(text: str | int) -> None:
    with pytest.raises(InputError):
        parse_memory(text)


def test_no_other_memory_grammar() -> None:
    """``parse_memory`` is defined once; no module keeps its own size regex or unit table."""
    pattern = re.compile(r"def parse_memory|_MEMORY_RE|MEMORY_RE|\[bkmgBKMG\]|_MEM = ")
    hits = [
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if pattern.search(path.read_text(encoding="utf-8"))
    ]
    assert hits == ["execute/limits.py"]
