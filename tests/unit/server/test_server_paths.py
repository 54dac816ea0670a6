"""API paths → files: traversal, siblings, symlinks, special files (RELIABILITY B1-B3, B6), and
request bodies / options (A5), without a server."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from jupyter_envpack.errors import InputError, NotebookTooLargeError, NotFoundError
from jupyter_envpack.server.paths import ContentsPaths, resolve_notebook, resolve_output
from jupyter_envpack.server.schema import (
    BUILD_FIELDS,
    RUN_FIELDS,
    check_fields,
    parse_operation_request,
)

NB = '{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}'


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """``tmp/test`` is the root; ``tmp/testtest`` and ``tmp/outside`` are its neighbours."""
    root = tmp_path / "test"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "nb.ipynb").write_text(NB)
    (root / ".hidden").mkdir()
    (root / ".hidden" / "x.ipynb").write_text(NB)
    (tmp_path / "testtest").mkdir()
    (tmp_path / "testtest" / "s.ipynb").write_text(NB)
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.ipynb").write_text(NB)
    return root


def test_a_notebook_inside_the_root_resolves(tree: Path) -> None:
    assert resolve_notebook(tree, "sub/nb.ipynb") == (tree / "sub" / "nb.ipynb").resolve()
    assert resolve_notebook(tree, "sub//./nb.ipynb") == (tree / "sub" / "nb.ipynb").resolve()


@pytest.mark.reliability("B1", "B2")
@pytest.mark.parametrize(
    "path",
    [
        "../outside/secret.ipynb",
        "sub/../../outside/secret.ipynb",
        "/etc/passwd",
        "%2e%2e/outside/secret.ipynb",
        "..%2foutside/secret.ipynb",
        "C:\\x.ipynb",
        "C:/x.ipynb",
        "\\\\srv\\share\\x.ipynb",
        "a\x00.ipynb",
        "x" * 5000 + ".ipynb",
        "../testtest/s.ipynb",
        "",
        "..",
        ".",
        "sub/nb.ipynb\n",
        "su\u0301b/nb.ipynb",
        ".hidden/x.ipynb",
        "sub/missing.ipynb",
    ],
)
def test_bad_paths_are_not_found(tree: Path, path: str) -> None:
    with pytest.raises(NotFoundError):
        resolve_notebook(tree, path)


@pytest.mark.reliability("B4")
def test_hidden_allowed_only_when_configured(tree: Path) -> None:
    assert resolve_notebook(tree, ".hidden/x.ipynb", allow_hidden=True).name == "x.ipynb"


@pytest.mark.reliability("B3")
def test_symlinks_leaving_the_root_are_not_found(tree: Path) -> None:
    (tree / "link.ipynb").symlink_to(tree.parent / "outside" / "secret.ipynb")
    (tree / "dirlink").symlink_to(tree.parent / "outside")
    (tree / "inside.ipynb").symlink_to(tree / "sub" / "nb.ipynb")
    for path in ("link.ipynb", "dirlink/secret.ipynb"):
        with pytest.raises(NotFoundError):
            resolve_notebook(tree, path)
    assert resolve_notebook(tree, "inside.ipynb") == (tree / "sub" / "nb.ipynb").resolve()


@pytest.mark.reliability("B6")
@pytest.mark.timeout(10)
def test_special_files_are_refused_without_opening(tree: Path) -> None:
    os.mkfifo(tree / "fifo.ipynb")
    (tree / "zero.ipynb").symlink_to("/dev/zero")
    (tree / "dir.ipynb").mkdir()
    (tree / "text.txt").write_text("hi")
    for path in ("fifo.ipynb", "dir.ipynb", "text.txt"):
        with pytest.raises(InputError) as info:
            resolve_notebook(tree, path)
        assert info.value.status == 400, path
    with pytest.raises(NotFoundError):  # /dev/zero is outside the root
        resolve_notebook(tree, "zero.ipynb")


def test_size_limit_is_413(tree: Path) -> None:
    with pytest.raises(NotebookTooLargeError) as info:
        resolve_notebook(tree, "sub/nb.ipynb", max_size=10)
    assert info.value.status == 413


def test_output_paths(tree: Path) -> None:
    assert resolve_output(tree, "sub/out.ipynb") == tree.resolve() / "sub" / "out.ipynb"
    for bad in ("../outside/o.ipynb", "nofolder/o.ipynb", "/tmp/o.ipynb", ".hidden/o.ipynb"):
        with pytest.raises(NotFoundError):
            resolve_output(tree, bad)
    with pytest.raises(InputError):
        resolve_output(tree, "sub/out.txt")
    paths = ContentsPaths(tree)
    assert paths.relative(tree / "sub" / "nb.ipynb") == "sub/nb.ipynb"


@pytest.mark.reliability("A5")
@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1, 2]",
        b'"text"',
        b"null",
        b"\xff\xfe",
        b'{"kind": "build"}',
        b'{"kind": 1, "path": "nb.ipynb"}',
        b'{"kind": "build", "path": "nb.ipynb", "extra": 1}',
        b'{"kind": "build", "path": "nb.ipynb", "options": []}',
        b'{"kind": "build", "path": NaN}',
        b'{"kind": "build", "path": "x", "options": Infinity}',
        b'{"a":' * 100 + b"1" + b"}" * 100,
        b"[" * 100000 + b"]" * 100000,
    ],
)
def test_malformed_bodies_are_input_errors(body: bytes) -> None:
    with pytest.raises(InputError):
        parse_operation_request(body)


@pytest.mark.reliability("A5")
@pytest.mark.parametrize(
    ("fields", "options"),
    [
        (BUILD_FIELDS, {"base_image": "python:3.11-slim\nRUN evil"}),
        (BUILD_FIELDS, {"base_image": "has space:1"}),
        (BUILD_FIELDS, {"base_image": "--rm"}),
        (BUILD_FIELDS, {"deadline": -1}),
        (BUILD_FIELDS, {"deadline": True}),
        (BUILD_FIELDS, {"deadline": "10"}),
        (BUILD_FIELDS, {"kernel": "../x"}),
        (BUILD_FIELDS, {"index_url": "http://evil"}),
        (BUILD_FIELDS, {"ca_bundle": "/etc/shadow"}),
        (RUN_FIELDS, {"parameters": {"not an identifier": 1}}),
        (RUN_FIELDS, {"parameters": [1]}),
        (RUN_FIELDS, {"mem_limit": "lots"}),
        (RUN_FIELDS, {"network": "yes"}),
        (RUN_FIELDS, {"tolerance": 2}),
        (RUN_FIELDS, {"output": ""}),
    ],
)
def test_bad_options_are_input_errors(fields: dict, options: dict) -> None:
    with pytest.raises(InputError):
        check_fields(options, fields, "option")


def test_good_options_pass_and_nulls_drop() -> None:
    options = {"base_image": "envpack-test/debian-python:bookworm", "deadline": 60, "kernel": None}
    assert check_fields(options, BUILD_FIELDS, "option") == {
        "base_image": "envpack-test/debian-python:bookworm",
        "deadline": 60,
    }
    run = {
        "parameters": {"n": 3, "name": "x"},
        "mem_limit": "512m",
        "network": False,
        "output": "sub/out.ipynb",
        "tolerance": 0.1,
    }
    assert check_fields(run, RUN_FIELDS, "option") == run
