"""Read-only questions to the local git repository holding a notebook (no network, no writes).

The repository is hostile input (RELIABILITY L2): its ``.git/config`` may set ``core.fsmonitor``,
``core.hooksPath``, clean/smudge filters, ``diff.external`` or ``core.sshCommand`` to any command,
and ``git status`` would run some of them. So nothing here starts a process: the repository is
read with :mod:`dulwich` (pure Python), and the working tree is compared with the index by raw
content, with no filter, attribute or hook applied. A filtered file (LFS, ``autocrlf``) may thus
look changed to envpack while git calls it clean: a false warning, never a command run.
Nothing fetches, so "pushed" means "on a remote-tracking branch as of the last fetch".
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAX_FILES = 2000  # files looked at under one folder path (binder/ holds a handful)
MAX_IGNORE_BYTES = 2**20


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
        Porcelain-style two-letter codes by path (relative to ``root``) for the paths asked:
        ``??`` untracked, ``!!`` ignored, ``A `` / ``M `` / ``D `` staged, `` M`` / `` D``
        changed in the working tree.
    """

    root: Path
    commit: str | None = None
    branch: str | None = None
    remote_name: str | None = None
    remote_url: str | None = None
    pushed: bool = False
    changes: dict[str, str] = field(default_factory=dict)


def _open(path: Path) -> Any | None:
    """The dulwich ``Repo`` of the work tree holding ``path`` (None outside one, or when bare)."""
    from dulwich.errors import NotGitRepository
    from dulwich.repo import Repo

    folder = path if path.is_dir() else path.parent
    try:
        repo = Repo.discover(str(folder))
    except (NotGitRepository, OSError, ValueError, KeyError):
        return None
    return None if repo.bare else repo


def find_root(path: Path) -> Path | None:
    """Return the top-level folder of the git work tree holding ``path``, or None."""
    repo = _open(path)
    return Path(repo.path) if repo is not None else None


def _config_get(config: Any, section: tuple[bytes, ...], name: bytes) -> str | None:
    try:
        return bytes(config.get(section, name)).decode("utf-8", "replace")
    except KeyError:
        return None


def _pick_remote(config: Any, branch: str | None) -> str | None:
    if branch:
        upstream = _config_get(config, (b"branch", branch.encode()), b"remote")
        if upstream and upstream != ".":
            return upstream
    remotes = [s[1].decode("utf-8", "replace") for s in config.sections() if s[0] == b"remote"]
    if "origin" in remotes:
        return "origin"
    return remotes[0] if remotes else None


def _head(repo: Any) -> tuple[str | None, str | None]:
    """(commit, branch) of ``HEAD``; None for a repository without commits / a detached HEAD."""
    chain, sha = repo.refs.follow(b"HEAD")
    target = chain[-1] if chain else b""
    branch = target.removeprefix(b"refs/heads/").decode() if target.startswith(b"refs/") else None
    commit = sha.decode() if sha and sha in repo.object_store else None
    return commit, branch


def _pushed(repo: Any, commit: str, remote: str) -> bool:
    from dulwich.graph import can_fast_forward
    from dulwich.objects import ObjectID

    prefix = f"refs/remotes/{remote}/".encode()
    head = ObjectID(commit.encode())
    for ref in list(repo.refs.keys()):
        if not ref.startswith(prefix) or ref.endswith(b"/HEAD"):
            continue
        tip = repo.refs[ref]
        if tip == head or (tip in repo.object_store and can_fast_forward(repo, head, tip)):
            return True
    return False


def _head_tree(repo: Any, commit: str | None) -> dict[bytes, bytes]:
    """``{path: blob sha}`` of every file in ``HEAD``'s tree."""
    from dulwich.object_store import iter_tree_contents

    if commit is None:
        return {}
    tree = repo.object_store[commit.encode()].tree
    return {e.path: e.sha for e in iter_tree_contents(repo.object_store, tree)}


def _worktree_sha(full: Path) -> bytes | None:
    """Blob sha of the raw file (no filter), None when missing; a link hashes its target text."""
    from dulwich.objects import Blob

    try:
        info = full.lstat()
        if stat.S_ISLNK(info.st_mode):
            return bytes(Blob.from_string(os.fsencode(full.readlink())).id)
        if not stat.S_ISREG(info.st_mode):
            return None
        return bytes(Blob.from_string(full.read_bytes()).id)
    except OSError:
        return None


def _ignores(repo: Any) -> Any:
    """Per-folder ``.gitignore`` files (opened without following links) and ``info/exclude``;
    never a path named by the repository's config (``core.excludesFile`` could be a FIFO)."""
    from dulwich.ignore import IgnoreFilter, IgnoreFilterManager, read_ignore_patterns

    extra = []
    exclude = Path(repo.controldir()) / "info" / "exclude"
    try:
        info = exclude.lstat()
        if stat.S_ISREG(info.st_mode) and info.st_size <= MAX_IGNORE_BYTES:
            with exclude.open("rb") as fh:
                extra.append(IgnoreFilter(read_ignore_patterns(fh), False, path=str(exclude)))
    except OSError:
        pass
    return IgnoreFilterManager(repo.path, extra, False)


def _walk(root: Path, rel: str) -> Iterator[str]:
    """Files (and links) under the folder ``rel``, as root-relative paths, at most MAX_FILES."""
    count = 0
    for folder, dirs, files in os.walk(root / rel, followlinks=False):
        dirs[:] = [d for d in dirs if d != ".git"]
        for name in files + [d for d in dirs if (Path(folder) / d).is_symlink()]:
            count += 1
            if count > MAX_FILES:
                return
            yield (Path(folder) / name).relative_to(root).as_posix()


def _code(index_sha: bytes | None, head_sha: bytes | None, work_sha: bytes | None) -> str | None:
    staged = " " if index_sha == head_sha else ("A" if head_sha is None else "M")
    if index_sha is None and head_sha is not None:
        staged = "D"
    unstaged = " " if index_sha is None or work_sha == index_sha else "D" if not work_sha else "M"
    code = staged + unstaged
    return None if code == "  " else code


def _index(repo: Any) -> dict[bytes, bytes]:
    """``{path: blob sha}`` of the index; a conflicted entry gets a sha nothing matches."""
    if not repo.has_index():
        return {}
    idx = repo.open_index()
    return {path: getattr(idx[path], "sha", b"conflict") for path in idx}


def _changes(repo: Any, commit: str | None, paths: list[str]) -> dict[str, str]:
    if not paths:
        return {}
    root = Path(repo.path)
    index = _index(repo)
    tree = _head_tree(repo, commit)
    ignores = _ignores(repo)
    found: dict[str, str] = {}
    for rel in paths:
        prefix = rel.encode() if rel.endswith("/") else None
        known = [
            p for p in {*index, *tree} if (p.startswith(prefix) if prefix else p == rel.encode())
        ]
        on_disk = list(_walk(root, rel)) if prefix else [rel] if (root / rel).exists() else []
        for name in sorted({*(p.decode("utf-8", "replace") for p in known), *on_disk}):
            key = name.encode()
            if key not in index and key not in tree:
                found[name] = "!!" if ignores.is_ignored(name) else "??"
                continue
            code = _code(index.get(key), tree.get(key), _worktree_sha(root / name))
            if code:
                found[name] = code
    return found


def inspect_repo(path: Path, paths: list[str] | None = None) -> RepoState | None:
    """Describe the repository holding ``path``; None when it is not inside a git work tree.

    Parameters
    ----------
    path
        A file or folder inside the work tree.
    paths
        Paths relative to the root whose uncommitted or untracked changes to report (a folder
        path ends with ``/``).
    """
    repo = _open(path)
    if repo is None:
        return None
    with repo:
        state = RepoState(root=Path(repo.path))
        config = repo.get_config()
        state.commit, state.branch = _head(repo)
        state.remote_name = _pick_remote(config, state.branch)
        if state.remote_name:
            state.remote_url = _config_get(config, (b"remote", state.remote_name.encode()), b"url")
        if state.commit and state.remote_name:
            state.pushed = _pushed(repo, state.commit, state.remote_name)
        state.changes = _changes(repo, state.commit, paths or [])
    return state


MAX_HISTORY = 5000
"""Commits looked at (first parents from ``HEAD``) when asking when a file last changed."""


def last_change(path: Path) -> tuple[int, bool] | None:
    """Commit time (Unix seconds) of the last commit on ``HEAD`` that changed ``path``, or None.

    Walks first parents from ``HEAD``, at most :data:`MAX_HISTORY` of them, with dulwich (no git
    process, no hook, no config that runs anything). Returns ``(time, exact)``: ``exact`` is
    False when the walk stopped at the bound (the change is older than that time).
    """
    from dulwich.object_store import tree_lookup_path

    repo = _open(path)
    if repo is None:
        return None
    try:
        rel = path.resolve().relative_to(Path(repo.path).resolve()).as_posix().encode()
        commit = repo[repo.head()]
    except (KeyError, ValueError, OSError):
        return None

    def blob(c: Any) -> bytes | None:
        try:
            return bytes(tree_lookup_path(repo.object_store.__getitem__, c.tree, rel)[1])
        except (KeyError, NotADirectoryError):
            return None

    mine = blob(commit)
    if mine is None:
        return None
    for _ in range(MAX_HISTORY):
        if not commit.parents:
            return commit.commit_time, True
        parent = repo[commit.parents[0]]
        if blob(parent) != mine:
            return commit.commit_time, True
        commit = parent
    return commit.commit_time, False
