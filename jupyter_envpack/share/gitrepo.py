"""Read-only questions to the local git repository holding a notebook (no network, no writes).

Every call is ``git -C <dir> ...`` with an argv list, a timeout and ``GIT_TERMINAL_PROMPT=0``;
nothing here fetches, so "pushed" means "on a remote-tracking branch as of the last fetch".
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

GIT_TIMEOUT = 10.0


@dataclass
class RepoState:
    """What Binder would see of the repository, compared with the working tree.

    Parameters
    ----------
    root
        The repository's top-level folder.
    commit
        Full SHA of ``HEAD`` (None in a repository without commits).
    branch
        Current branch name (None when detached).
    remote_name, remote_url
        The remote used for the link: the branch's upstream remote, else ``origin``, else the
        first one. ``remote_url`` is raw (it may hold credentials: never show it).
    pushed
        Whether ``HEAD`` is contained in a remote-tracking branch of that remote.
    changes
        ``git status --porcelain`` codes by path (relative to ``root``), for the paths asked
        (``??`` untracked, ``!!`` ignored).
    """

    root: Path
    commit: str | None = None
    branch: str | None = None
    remote_name: str | None = None
    remote_url: str | None = None
    pushed: bool = False
    changes: dict[str, str] = field(default_factory=dict)


def _git(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_OPTIONAL_LOCKS": "0",
        "LC_ALL": "C",
        "GIT_LITERAL_PATHSPECS": "1",
    }  # a file named `:(glob)*` is just a name
    try:
        return subprocess.run(
            ["git", "-C", str(cwd), *args],
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT,
            env=env,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return subprocess.CompletedProcess(args, 127, "", str(exc))


def _out(cwd: Path, *args: str) -> str | None:
    res = _git(cwd, *args)
    return res.stdout.strip() if res.returncode == 0 else None


def find_root(path: Path) -> Path | None:
    """Return the top-level folder of the git work tree holding ``path``, or None."""
    folder = path if path.is_dir() else path.parent
    top = _out(folder, "rev-parse", "--show-toplevel")
    return Path(top) if top else None


def _pick_remote(root: Path, branch: str | None) -> str | None:
    if branch:
        upstream = _out(root, "config", "--get", f"branch.{branch}.remote")
        if upstream and upstream != ".":
            return upstream
    remotes = (_out(root, "remote") or "").split()
    if "origin" in remotes:
        return "origin"
    return remotes[0] if remotes else None


def _changes(root: Path, paths: list[str]) -> dict[str, str]:
    if not paths:
        return {}
    # Ignored files are reported too ("!!"): Binder never sees them either.
    res = _git(
        root,
        "status",
        "--porcelain=v1",
        "-z",
        "--untracked-files=all",
        "--ignored=traditional",
        "--",
        *paths,
    )
    found: dict[str, str] = {}
    entries = res.stdout.split("\0") if res.returncode == 0 else []
    skip = False
    for entry in entries:
        if skip or len(entry) < 4:
            skip = False
            continue
        code, name = entry[:2], entry[3:]
        found[name] = code
        skip = code[0] in "RC"  # a rename is followed by its source path
    return found


def inspect_repo(path: Path, paths: list[str] | None = None) -> RepoState | None:
    """Describe the repository holding ``path``; None when it is not inside a git work tree.

    Parameters
    ----------
    path
        A file or folder inside the work tree.
    paths
        Paths relative to the root whose uncommitted or untracked changes to report.
    """
    root = find_root(path)
    if root is None:
        return None
    state = RepoState(root=root)
    state.commit = _out(root, "rev-parse", "--verify", "--quiet", "HEAD^{commit}")
    state.branch = _out(root, "symbolic-ref", "--quiet", "--short", "HEAD")
    state.remote_name = _pick_remote(root, state.branch)
    if state.remote_name:
        state.remote_url = _out(root, "remote", "get-url", "--", state.remote_name)
    if state.commit and state.remote_name:
        contains = _out(root, "branch", "--remotes", "--contains", state.commit) or ""
        state.pushed = any(
            line.strip().startswith(f"{state.remote_name}/") for line in contains.splitlines()
        )
    state.changes = _changes(root, paths or [])
    return state
