"""Read a notebook safely and find what its code needs: imports, ``%pip`` requirements, local modules.

Imports are parsed, never grepped: IPython syntax is transformed first (magics, shell escapes,
``x?``), then the ``ast`` is walked for ``import``/``from`` at any depth and
``importlib.import_module("x")``/``__import__("x")`` with literal names. A cell that does not parse
is reported with its index; the other cells are still analysed.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import stat
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement

from ..errors import NotebookError, NotebookTooLargeError, NotFoundError, UnsupportedLanguageError
from .localfiles import LocalCode
from .sources import PathLiteral, parse_python, scan_source
from .spec import Finding

DEFAULT_MAX_BYTES = 50 * 2**20
"""Notebooks larger than this are refused before parsing (RELIABILITY C4)."""

_PIP_LINE = re.compile(r"^\s*[%!]\s*(?:pip|pip3|python3?\s+-m\s+pip)\s+install\s+(.*)$")


@dataclass
class ImportUse:
    """One imported top-level module and where it was seen."""

    module: str
    cell: int | None
    local_hint: bool = False  # a relative import: always local code


@dataclass
class NotebookAnalysis:
    """What a notebook's code cells need."""

    path: Path
    kernel_name: str | None
    language: str | None
    imports: list[ImportUse] = field(default_factory=list)
    pip_requirements: list[tuple[str, int]] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    code_cells: int = 0
    modules: list[tuple[str, int, int]] = field(default_factory=list)
    """``(dotted name, relative level, cell)`` of every import (finds local submodules)."""
    paths: list[tuple[PathLiteral, int]] = field(default_factory=list)
    scripts: list[tuple[str, int]] = field(default_factory=list)
    """Files run or loaded by ``%run``/``%load``/``exec(open(...).read())``, with their cell."""
    run_modules: list[tuple[str, int]] = field(default_factory=list)


def read_notebook_bytes(path: str | os.PathLike[str], max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """Read a notebook file once into memory after checking it is a regular, small-enough file.

    ``lstat`` + ``S_ISREG`` before ``open`` so a FIFO or device never blocks (RELIABILITY B6).
    """
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise NotFoundError(f"notebook not found: {p}") from None
    except OSError as exc:
        raise NotFoundError(f"notebook cannot be read: {p} ({exc.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise NotebookError(f"not a regular file: {p}", hint="give the path of an .ipynb file")
    if st.st_size > max_bytes:
        raise NotebookTooLargeError(
            f"notebook is {st.st_size / 2**20:.1f} MiB, over the {max_bytes / 2**20:.0f} MiB limit: {p}",
            hint="clear large outputs, or raise the limit (--max-notebook-size / c.EnvPack)",
        )
    try:
        with p.open("rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise NotFoundError(f"notebook cannot be read: {p} ({exc.strerror})") from None
    if len(data) > max_bytes:
        raise NotebookTooLargeError(f"notebook grew past the size limit while reading: {p}")
    return data


def parse_notebook(data: bytes, name: str = "notebook") -> Any:
    """Parse notebook bytes into a v4 notebook (plain dicts) or raise :class:`NotebookError`.

    v4 is read with :mod:`json` directly (importing nbformat's validator costs seconds on some
    machines); v2/v3 go through ``nbformat.reads(as_version=4)``. A UTF-8 BOM is tolerated;
    anything else that is not a notebook gives one clear error (RELIABILITY C1, C2).
    """
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NotebookError(
            f"{name} is not a readable notebook: not UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from None
    try:
        nb = json.loads(text)
    except (ValueError, RecursionError) as exc:
        detail = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise NotebookError(
            f"{name} is not a readable notebook: {detail}",
            hint="open it in JupyterLab and save it again",
        ) from None
    if not isinstance(nb, dict):
        raise NotebookError(f"{name} is not a readable notebook: not a JSON object")
    major = nb.get("nbformat")
    if major in {1, 2, 3}:
        nb = _upgrade(text, name)
    elif major != 4:
        raise NotebookError(
            f"{name} has unsupported nbformat version {major!r}",
            hint="nbformat 2, 3 and 4 are supported",
        )
    if not isinstance(nb.get("cells"), list):
        raise NotebookError(f"{name} is not a readable notebook: no list of cells")
    if not isinstance(nb.get("metadata"), dict):
        nb["metadata"] = {}
    nb["cells"] = [c for c in nb["cells"] if isinstance(c, dict)]
    return nb


def _upgrade(text: str, name: str) -> Any:
    import nbformat

    try:
        old = nbformat.reads(text, as_version=4, capture_validation_error={})  # type: ignore[no-untyped-call]
    except Exception as exc:
        detail = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise NotebookError(f"{name} is not a readable notebook: {detail}") from None
    return json.loads(json.dumps(old))


def dumps_notebook(nb: Any) -> str:
    """Serialise like ``nbformat.writes`` (indent 1, sorted keys, trailing newline)."""
    return json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def cell_source(cell: Any) -> str:
    """A cell's source as one string (tolerating a list of lines or junk)."""
    src = cell.get("source", "") if isinstance(cell, dict) else ""
    if isinstance(src, list):
        return "".join(s for s in src if isinstance(s, str))
    return src if isinstance(src, str) else ""


def notebook_language(nb: Any) -> tuple[str | None, str | None]:
    """Return ``(kernel_name, language)`` from the notebook's metadata."""
    meta = nb.get("metadata") or {}
    ks = meta.get("kernelspec") or {}
    li = meta.get("language_info") or {}
    kernel = ks.get("name") if isinstance(ks, dict) else None
    lang = (ks.get("language") if isinstance(ks, dict) else None) or (
        li.get("name") if isinstance(li, dict) else None
    )
    return (kernel if isinstance(kernel, str) else None, lang if isinstance(lang, str) else None)


_transformer: Any = None


def _plain_tree(source: str) -> ast.Module | None:
    """The tree of ``source`` when it already parses as Python: IPython's transforms only rewrite
    syntax Python rejects (magics, ``!`` escapes, ``?`` help, prompts), so it can be left as it
    is and IPython need not be imported (~0.1 s per process)."""
    try:
        return parse_python(source)
    except (SyntaxError, ValueError):
        return None


def _python_tree(source: str) -> tuple[str, ast.Module]:
    """``source`` as plain Python and its tree, parsed once when it needs no transform."""
    tree = _plain_tree(source)
    if tree is not None:
        return source, tree
    python = _transform(source)
    return python, parse_python(python)


def _transform(source: str) -> str:
    """Turn IPython syntax into plain Python (lazy import of IPython's transformer)."""
    global _transformer
    if _plain_tree(source) is not None:
        return source
    if _transformer is None:
        try:
            from IPython.core.inputtransformer2 import TransformerManager
        except ImportError:  # pragma: no cover - IPython is a dependency
            _transformer = False
        else:
            _transformer = TransformerManager()  # type: ignore[no-untyped-call]
    if _transformer is False:
        return source
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # odd line endings make IPython warn; ast decides
        return str(_transformer.transform_cell(source))


def python_source(source: str) -> str:
    """``source`` with IPython syntax (magics, shell escapes) turned into plain Python."""
    return _transform(source)


_PIP_OPTIONS_WITH_VALUE = {
    "-r",
    "-c",
    "-e",
    "-i",
    "--index-url",
    "--extra-index-url",
    "-f",
    "--find-links",
    "--target",
    "-t",
    "--prefix",
    "--root",
}
_SHELL = re.compile(r"[$`;|&<>(){}\n]")


def pip_arguments(source: str) -> tuple[list[str], list[str]]:
    """``(requirements, unparseable)`` of ``%pip install`` / ``!pip install`` lines.

    Options and their values are skipped. An argument that is not a valid requirement, or carries
    shell syntax, is unparseable; so is everything after shell syntax (another command).
    """
    reqs: list[str] = []
    bad: list[str] = []
    for line in source.splitlines():
        m = _PIP_LINE.match(line)
        if not m:
            continue
        try:
            words = shlex.split(m.group(1), comments=True)
        except ValueError:
            bad.append(m.group(1).strip())
            continue
        skip_next = shell = False
        for w in words:
            if skip_next:
                skip_next = False
            elif shell or (_SHELL.search(w) and not _requirement(w, strict=True)):
                shell = True
                bad.append(w)
            elif w.startswith("-"):
                skip_next = w in _PIP_OPTIONS_WITH_VALUE
            elif _requirement(w):
                reqs.append(w)
            else:
                bad.append(w)
    return reqs, bad


def _requirement(text: str, strict: bool = False) -> bool:
    if strict and re.search(r"[$`]", text):
        return False
    try:
        Requirement(text)
    except InvalidRequirement:
        return False
    return True


def _pip_findings(source: str, index: int, result: NotebookAnalysis) -> None:
    reqs, bad = pip_arguments(source)
    result.pip_requirements += [(req, index) for req in reqs]
    for word in bad:
        result.findings.append(
            Finding(
                "unparseable-pip-requirement",
                f"cell {index} installs {word[:120]!r}, which is not a requirement envpack can "
                "pin (or carries shell syntax); it is neither pinned nor run",
                cell=index,
                hint="write one plain requirement per argument, e.g. %pip install name==1.2",
            )
        )


class _ImportVisitor(ast.NodeVisitor):
    def __init__(self) -> None:
        self.found: list[tuple[str, bool]] = []
        self.dynamic = 0

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.found.append((alias.name.split(".")[0], False))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level and node.level > 0:
            if node.module:
                self.found.append((node.module.split(".")[0], True))
            else:
                for alias in node.names:
                    self.found.append((alias.name, True))
        elif node.module:
            self.found.append((node.module.split(".")[0], False))

    def visit_Call(self, node: ast.Call) -> None:
        f = node.func
        name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None
        if name in {"import_module", "__import__"}:
            arg = node.args[0] if node.args else None
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                if not arg.value.startswith("."):
                    self.found.append((arg.value.split(".")[0], False))
            else:
                self.dynamic += 1
        self.generic_visit(node)


def imports_in_source(
    source: str, tree: ast.Module | None = None
) -> tuple[list[tuple[str, bool]], int]:
    """Return ``([(top_level_module, is_relative)], dynamic_imports)`` for Python source (or its
    ``tree`` when parsed already).

    Raises ``SyntaxError``/``ValueError``/``RecursionError``/``MemoryError`` for source that
    does not parse.
    """
    tree = tree if tree is not None else parse_python(source)
    visitor = _ImportVisitor()
    visitor.visit(tree)
    return (
        [(m, rel) for m, rel in visitor.found if all(p.isidentifier() for p in m.split("."))],
        visitor.dynamic,
    )


def analyse_notebook(
    path: str | os.PathLike[str],
    max_bytes: int = DEFAULT_MAX_BYTES,
    allow_other_languages: bool = False,
) -> tuple[NotebookAnalysis, Any]:
    """Read and analyse a notebook; return the analysis and the parsed notebook."""
    p = Path(path)
    nb = parse_notebook(read_notebook_bytes(p, max_bytes), name=p.name)
    kernel, language = notebook_language(nb)
    result = NotebookAnalysis(path=p, kernel_name=kernel, language=language)
    if language is None:
        result.findings.append(
            Finding(
                "assumed-python",
                "the notebook does not say its language; assuming Python",
                hint="save it from a Python kernel to record its kernelspec",
            )
        )
    elif language.lower() != "python" and not allow_other_languages:
        raise UnsupportedLanguageError(
            f"{p.name} is a {language} notebook (kernel {kernel!r}); envpack supports Python kernels",
            hint="only notebooks with a Python kernel can be containerised",
        )
    for index, cell in enumerate(nb.get("cells", [])):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        result.code_cells += 1
        source = cell_source(cell)
        if not source.strip():
            continue
        _pip_findings(source, index, result)
        try:
            python, tree = _python_tree(source)  # parsed once, read by both visitors
            found, dynamic = imports_in_source(python, tree)
            _scan_cell(scan_source(python, tree), index, result)
        except (SyntaxError, ValueError, RecursionError, MemoryError, TypeError) as exc:
            detail = f"{type(exc).__name__}: {getattr(exc, 'msg', None) or exc}"
            result.findings.append(
                Finding(
                    "unparseable-cell",
                    f"cell {index} does not parse ({detail[:160]}); its imports were not analysed",
                    cell=index,
                    hint="fix the cell or run it once to check it",
                )
            )
            continue
        for module, relative in found:
            result.imports.append(ImportUse(module, index, relative))
        if dynamic:
            result.findings.append(
                Finding(
                    "dynamic-import",
                    f"cell {index} imports a module whose name is computed at run "
                    "time; it cannot be detected",
                    cell=index,
                    hint="import it with a literal name, or add it with %pip install",
                )
            )
    return result, nb


def _scan_cell(scan: Any, index: int, result: NotebookAnalysis) -> None:
    result.modules += [(name, level, index) for name, level in scan.modules]
    result.paths += [(lit, index) for lit in scan.paths]
    result.scripts += [(script, index) for script in scan.scripts]
    result.run_modules += [(mod, index) for mod in scan.run_modules]


def code_cell_sources(data: bytes, name: str) -> list[str]:
    """Plain-Python source of each code cell of a notebook (IPython syntax transformed)."""
    nb = parse_notebook(data, name=name)
    sources = [cell_source(c) for c in nb["cells"] if c.get("cell_type") == "code"]
    return [_transform(s) for s in sources if s.strip()]


def find_local_modules(
    folder: Path, modules: set[str]
) -> tuple[dict[str, list[Path]], list[Finding]]:
    """Find modules/packages named in ``modules`` beside the notebook, scanning them in turn.

    Returns ``{module: [files]}`` (only the files an import reaches) and findings for files that
    were skipped. Modules the local files import are added to ``modules`` (mutated).
    """
    code = LocalCode(folder, is_stdlib=lambda _name: False)
    for name in sorted(modules):
        code.add_module(name)
    modules |= code.external | code.tops
    found: dict[str, list[Path]] = {}
    for rel, path in code.files.items():
        found.setdefault(rel.split("/")[0].removesuffix(".py"), []).append(path)
    return found, code.findings
