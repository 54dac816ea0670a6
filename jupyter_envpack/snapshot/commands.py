"""Programs a notebook runs: ``!cmd``, ``%%bash`` cells, ``subprocess.run(["prog", ...])``.

Parsed, never run: IPython syntax is transformed to Python first (``!file x`` becomes
``get_ipython().system('file x')``), then the syntax tree is searched for calls whose program is a
string literal. Shell text is split with :mod:`shlex`; a word that is not a literal program name
(``$VAR``, ``{py}`` expansion, a relative path) is not a command the base image must provide.
"""

from __future__ import annotations

import ast
import re
import shlex
from dataclasses import dataclass
from typing import Any

from .notebook import _transform, cell_source

__all__ = ["CommandUse", "commands_in_notebook", "commands_in_source", "programs_in_shell"]

_SUBPROCESS = frozenset({"run", "call", "check_call", "check_output", "Popen", "getoutput"})
_OS_SHELL = frozenset({"system", "popen"})
_IPY_SHELL = frozenset({"system", "getoutput"})
_SHELL_MAGICS = frozenset({"bash", "sh"})
_SHELL_LINE_MAGICS = frozenset({"sx", "system"})
# POSIX shell reserved words (a command follows them, or none: ``for x in ...``) and the builtins
# of sh/bash: none of them needs a package.
_KEYWORDS_BEFORE_COMMAND = frozenset(
    ["!", "{", "do", "elif", "else", "if", "then", "time", "until", "while"]
)
_KEYWORDS_NO_COMMAND = frozenset(
    ["}", "[[", "]]", "case", "done", "esac", "fi", "for", "function", "in", "select"]
)
_BUILTINS = frozenset(
    [
        ".",
        ":",
        "[",
        "alias",
        "bg",
        "break",
        "builtin",
        "cd",
        "command",
        "continue",
        "declare",
        "echo",
        "eval",
        "exit",
        "export",
        "false",
        "fg",
        "getopts",
        "hash",
        "jobs",
        "kill",
        "let",
        "local",
        "printf",
        "pwd",
        "read",
        "readonly",
        "return",
        "set",
        "shift",
        "shopt",
        "source",
        "test",
        "times",
        "trap",
        "true",
        "type",
        "typeset",
        "ulimit",
        "umask",
        "unalias",
        "unset",
        "wait",
    ]
)
_WRAPPERS = frozenset({"sudo", "env", "nohup", "nice", "timeout", "stdbuf", "xargs", "exec"})
_PROGRAM = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,63}\Z")
_SEPARATORS = frozenset({";", "&&", "||", "|", "&", "(", ")", ";;", "|&", "\n"})
_EXPANSION = re.compile(r"\{[^{}\n]*\}")
_BIN_DIRS = ("/usr/local/bin/", "/usr/bin/", "/bin/", "/usr/sbin/", "/sbin/")


@dataclass(frozen=True)
class CommandUse:
    """A program a cell runs (``cell`` is the cell's index in the notebook)."""

    program: str
    cell: int


def _program(word: str) -> str | None:
    """The program a command word names, when it is a literal (``/usr/bin/x`` counts as ``x``)."""
    for prefix in _BIN_DIRS:
        if word.startswith(prefix):
            word = word[len(prefix) :]
    return word if _PROGRAM.match(word) else None


def programs_in_shell(text: str) -> list[str]:
    """Literal program names of the commands in shell ``text`` (first word of each command)."""
    text = _EXPANSION.sub("$X", text.replace("\\\n", " "))  # IPython's {expr} is not literal
    lexer = shlex.shlex(text, posix=True, punctuation_chars=";&|()")
    lexer.whitespace = " \t\r"
    lexer.commenters = "#"
    found: list[str] = []
    first = True
    try:
        for token in lexer:
            if token in _SEPARATORS or set(token) <= set(";&|()\n"):
                first = True
                continue
            if not first:
                continue
            if "=" in token or token in _KEYWORDS_BEFORE_COMMAND or token.startswith("-"):
                continue  # VAR=value, a keyword, or a wrapper's option: the program comes next
            program = None if token in _BUILTINS | _KEYWORDS_NO_COMMAND else _program(token)
            if program and program not in _WRAPPERS:
                found.append(program)
            first = program in _WRAPPERS
    except ValueError:  # an unbalanced quote: what was read so far stands
        pass
    return list(dict.fromkeys(found))


def _literal(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _shell_kw(call: ast.Call) -> bool:
    return any(
        k.arg == "shell" and isinstance(k.value, ast.Constant) and k.value.value is True
        for k in call.keywords
    )


def _from_call(call: ast.Call) -> list[str]:
    """Programs of one call node (IPython's shell helpers, ``subprocess.*``, ``os.system``)."""
    func = call.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    owner = func.value if isinstance(func, ast.Attribute) else None
    args = call.args
    ipython = isinstance(owner, ast.Call) and getattr(owner.func, "id", "") == "get_ipython"
    if ipython and name in _IPY_SHELL and args:
        return programs_in_shell(_literal(args[0]) or "")
    if ipython and name == "run_cell_magic" and len(args) == 3:
        magic, line, body = (_literal(a) or "" for a in args)
        if magic in _SHELL_MAGICS or (magic == "script" and line.split()[:1] in (["bash"], ["sh"])):
            return programs_in_shell(body)
        return []
    if ipython and name == "run_line_magic" and len(args) == 2:
        return (
            programs_in_shell(_literal(args[1]) or "")
            if _literal(args[0]) in _SHELL_LINE_MAGICS
            else []
        )
    module = getattr(owner, "id", "")
    if module == "os" and name in _OS_SHELL and args:
        return programs_in_shell(_literal(args[0]) or "")
    if module != "subprocess" or name not in _SUBPROCESS or not args:
        return []
    first = args[0]
    if isinstance(first, (ast.List, ast.Tuple)) and first.elts:
        program = _program(_literal(first.elts[0]) or "")
        return [program] if program else []
    text = _literal(first)
    if text is None:
        return []
    return (
        programs_in_shell(text)
        if _shell_kw(call) or name == "getoutput"
        else programs_in_shell(text)[:1]
    )


def commands_in_source(source: str) -> list[str]:
    """Programs one code cell runs (its IPython syntax transformed first); ``[]`` when unparsable."""
    try:
        tree = ast.parse(_transform(source))
    except (SyntaxError, ValueError):
        return []
    found = [p for node in ast.walk(tree) if isinstance(node, ast.Call) for p in _from_call(node)]
    return list(dict.fromkeys(found))


def commands_in_notebook(nb: Any) -> list[CommandUse]:
    """Every literal program the notebook's code cells run, in cell order."""
    uses: list[CommandUse] = []
    for index, cell in enumerate(nb.get("cells", []) if isinstance(nb, dict) else []):
        if isinstance(cell, dict) and cell.get("cell_type") == "code":
            uses += [CommandUse(p, index) for p in commands_in_source(cell_source(cell))]
    return uses
