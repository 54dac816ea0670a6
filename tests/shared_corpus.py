"""Where the shared corpus of real notebooks is (``../shared/corpus``, see its README).

``$ENVPACK_TEST_CORPUS`` overrides it; else ``shared/corpus`` beside the repository or one of its
parents (CI clones the repository next to a copy of ``shared/``). Under ``CI=true`` a missing corpus
is a failure, never a skip.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CORPUS_ENV = "ENVPACK_TEST_CORPUS"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def corpus_dir() -> Path | None:
    """The corpus folder, or None when there is none."""
    if os.environ.get(CORPUS_ENV):
        return Path(os.environ[CORPUS_ENV])
    for folder in (REPO, *REPO.parents[:3]):
        if (folder / "shared" / "corpus" / "whirlwind").is_dir():
            return folder / "shared" / "corpus"
    return None


def corpus_notebooks() -> list[Path]:
    """The notebooks of ``whirlwind/`` (empty without a corpus)."""
    corpus = corpus_dir()
    return sorted((corpus / "whirlwind").glob("*.ipynb")) if corpus else []


def corpus_notebook(name: str) -> Path:
    """One notebook of ``whirlwind/``: a failure under CI when missing, else a skip."""
    corpus = corpus_dir()
    path = corpus / "whirlwind" / name if corpus else Path(name)
    if not path.is_file():
        message = f"corpus notebook {name} not found near {REPO} (set {CORPUS_ENV})"
        pytest.fail(message) if IN_CI else pytest.skip(message)
    return path
