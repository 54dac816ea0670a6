"""What one piece of Python source names besides imports: paths, scripts it runs, dotted modules.

Everything is read from the ``ast`` (after IPython syntax was transformed): string literals,
literal parts of ``os.path.join(...)`` / ``Path(...) / "..."`` / ``.joinpath(...)``, f-strings with a
literal prefix, ``%run``/``%load`` (as ``get_ipython().run_line_magic``), ``exec(open("x").read())``
and ``runpy.run_path("x")``. Nothing is evaluated.
"""

from __future__ import annotations

import ast
import posixpath
import shlex
import warnings
from dataclasses import dataclass, field

MAX_LITERAL = 1024
"""Longer string literals are not paths worth checking."""

_JOIN_FUNCS = {"join", "joinpath"}
_PATH_CLASSES = {"Path", "PurePath", "PosixPath", "PurePosixPath"}
_LOAD_OPTIONS_WITH_VALUE = {"-r", "-s", "-n"}


@dataclass
class PathLiteral:
    """A path-like literal: ``prefix`` True when only its beginning is known (``f"data/{x}"``)."""

    text: str
    prefix: bool = False


@dataclass
class SourceScan:
    """What :func:`scan_source` found.

    ``modules`` holds ``(dotted name, relative level)``; ``from a import b`` gives both ``a`` and
    ``a.b`` (the latter is a submodule only when such a file exists).
    """

    modules: list[tuple[str, int]] = field(default_factory=list)
    paths: list[PathLiteral] = field(default_factory=list)
    scripts: list[str] = field(default_factory=list)
    run_modules: list[str] = field(default_factory=list)


def _literal(node: ast.AST) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def _callee(node: ast.Call) -> str | None:
    f = node.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None


def _joined(parts: list[ast.AST]) -> PathLiteral | None:
    """Literal leading parts of a path join; ``prefix`` when a computed part follows."""
    texts: list[str] = []
    for part in parts:
        text = _literal(part)
        if text is None:
            break
        texts.append(text)
    if not texts:
        return None
    return PathLiteral(posixpath.join(*texts), prefix=len(texts) < len(parts))


def _path_parts(node: ast.AST) -> list[ast.AST] | None:
    """``Path("a", "b") / "c" / x`` → its parts (None when it is not such an expression)."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
        left = _path_parts(node.left)
        return None if left is None else [*left, node.right]
    if isinstance(node, ast.Call):
        name = _callee(node)
        if name in _PATH_CLASSES:
            return list(node.args)
        if name == "joinpath" and isinstance(node.func, ast.Attribute):
            left = _path_parts(node.func.value)
            return None if left is None else [*left, *node.args]
    return None


class _Visitor(ast.NodeVisitor):
    def __init__(self) -> None:
        self.scan = SourceScan()
        self._inner: set[int] = set()  # parts of a path expression already taken as a whole

    def _path(self, node: ast.AST, found: PathLiteral | None) -> None:
        if found is None or id(node) in self._inner:
            return
        self.scan.paths.append(found)
        self._inner.update(id(n) for n in ast.walk(node) if n is not node)

    def visit_Import(self, node: ast.Import) -> None:
        self.scan.modules += [(alias.name, 0) for alias in node.names]

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        level = node.level or 0
        if base or level:
            self.scan.modules.append((base, level))
        for alias in node.names:
            if alias.name != "*":
                self.scan.modules.append((f"{base}.{alias.name}" if base else alias.name, level))

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str) and 0 < len(node.value) <= MAX_LITERAL:
            self._path(node, PathLiteral(node.value))

    def visit_JoinedStr(self, node: ast.JoinedStr) -> None:
        first = node.values[0] if node.values else None
        text = _literal(first) if first is not None else None
        if text and len(node.values) > 1:
            self._path(node, PathLiteral(text, prefix=True))
        self.generic_visit(node)

    def visit_BinOp(self, node: ast.BinOp) -> None:
        parts = _path_parts(node)
        self._path(node, _joined(parts) if parts else None)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        name = _callee(node)
        if name == "join" and isinstance(node.func, ast.Attribute) and len(node.args) > 1:
            self._path(node, _joined(list(node.args)))
        elif name in {"joinpath", *_PATH_CLASSES}:
            parts = _path_parts(node)
            self._path(node, _joined(parts) if parts else None)
        elif name == "run_line_magic" and len(node.args) >= 2:
            self._magic(_literal(node.args[0]), _literal(node.args[1]))
        elif name in {"exec", "execfile", "run_path"} and node.args:
            self._exec(node.args[0])
        self.generic_visit(node)

    def _exec(self, arg: ast.AST) -> None:
        # exec(open("x.py").read()), execfile("x.py"), runpy.run_path("x.py")
        if isinstance(arg, ast.Call) and _callee(arg) == "read":
            inner = arg.func.value if isinstance(arg.func, ast.Attribute) else None
            if isinstance(inner, ast.Call) and _callee(inner) == "open" and inner.args:
                arg = inner.args[0]
        text = _literal(arg)
        if text:
            self.scan.scripts.append(text)

    def _magic(self, magic: str | None, line: str | None) -> None:
        if magic not in {"run", "load"} or line is None:
            return
        try:
            words = shlex.split(line)
        except ValueError:
            return
        skip = False
        for i, word in enumerate(words):
            if skip:
                skip = False
            elif magic == "run" and word == "-m" and i + 1 < len(words):
                self.scan.run_modules.append(words[i + 1])
                return
            elif word.startswith("-"):
                skip = magic == "load" and word in _LOAD_OPTIONS_WITH_VALUE
            else:
                if "://" not in word:
                    self.scan.scripts.append(word)
                return


def parse_python(source: str) -> ast.Module:
    """``ast.parse`` without its SyntaxWarnings (raises ``SyntaxError`` & co.)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SyntaxWarning for odd escapes: not our business
        return ast.parse(source)


def scan_source(source: str, tree: ast.Module | None = None) -> SourceScan:
    """Scan plain Python source, or its ``tree`` when parsed already (raises ``SyntaxError`` &
    co. when it does not parse)."""
    tree = tree if tree is not None else parse_python(source)
    visitor = _Visitor()
    visitor.visit(tree)
    return visitor.scan
