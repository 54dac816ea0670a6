"""What a base image runs (glibc, python3), asked once per image id (RELIABILITY F4, F9, L8).

The fake engine answers with what the offline Debian base printed for the same commands
(``3.11.2`` / ``glibc 2.36``, recorded 2026-12-02); ``tests/integration/test_core_build.py``
asks the real one.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from jupyter_envpack.errors import BuildError
from jupyter_envpack.image.wheels import (
    DEFAULT_GLIBC_MINOR,
    base_runtime,
    cache_dir,
    check_base_python,
)

RECORDED = {"python3": b"3.11.2\nglibc 2.36\n", "getconf": b"glibc 2.36\n"}


class Engine:
    """docker-py's ``client`` as far as :func:`base_runtime` uses it."""

    def __init__(self, answers: dict[str, bytes | Exception]) -> None:
        self.answers, self.ran = answers, []
        engine = self

        class Api:
            def inspect_image(self, ref: str) -> dict[str, str]:
                return {"Id": "sha256:" + "b" * 64}

        class Containers:
            def run(self, image: str, command: list[str], **kw: Any) -> bytes:
                engine.ran.append(command[0])
                assert kw["network_disabled"] and kw["remove"]  # throwaway, no network
                answer = engine.answers[command[0]]
                if isinstance(answer, Exception):
                    raise answer
                return answer

        self.api, self.containers = Api(), Containers()


@pytest.mark.reliability("F9")
def test_one_container_tells_glibc_and_python_and_the_answer_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("ENVPACK_WHEEL_CACHE", str(tmp_path / "cache"))
    engine = Engine(dict(RECORDED))
    assert base_runtime(engine, "base") == (36, "3.11.2")
    assert base_runtime(engine, "base") == (36, "3.11.2")
    assert engine.ran == ["python3"]


@pytest.mark.reliability("F9")
def test_a_base_without_python3_still_gives_its_glibc(tmp_path, monkeypatch):
    monkeypatch.setenv("ENVPACK_WHEEL_CACHE", str(tmp_path / "cache"))
    engine = Engine(
        {"python3": RuntimeError("exec: python3 not found"), **{"getconf": b"glibc 2.31\n"}}
    )
    assert base_runtime(engine, "base") == (31, None)
    assert engine.ran == ["python3", "getconf"]


@pytest.mark.reliability("L8")
@pytest.mark.parametrize(
    "entry",
    [
        {"glibc": "36; rm -rf /", "python": "3.11.2"},
        {"glibc": 36, "python": "3.11.2\nFROM evil"},
        {"glibc": 10**9, "python": None},
        "36",
    ],
)
def test_a_tampered_cache_entry_is_asked_again(tmp_path, monkeypatch, entry):
    monkeypatch.setenv("ENVPACK_WHEEL_CACHE", str(tmp_path / "cache"))
    cache = cache_dir("any", "any").parent / "base-runtime.json"
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({"sha256:" + "b" * 64: entry}))
    engine = Engine(dict(RECORDED))
    assert base_runtime(engine, "base") == (36, "3.11.2")
    assert engine.ran == ["python3"]


def test_an_unknown_answer_keeps_the_default_and_is_not_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("ENVPACK_WHEEL_CACHE", str(tmp_path / "cache"))
    engine = Engine({"python3": b"not a version\n", "getconf": b"musl\n"})
    assert base_runtime(engine, "base") == (DEFAULT_GLIBC_MINOR, None)
    base_runtime(engine, "base")
    assert engine.ran == ["python3", "getconf", "python3", "getconf"]


@pytest.mark.reliability("F4")
def test_another_minor_python_is_refused_with_the_fix_and_a_patch_release_is_not():
    check_base_python("3.11.2", "3.11", "debian:12")
    check_base_python(None, "3.11", "distroless")  # unknown: the check inside the image decides
    with pytest.raises(BuildError) as info:
        check_base_python("3.12.1", "3.11", "python:3.12-slim")
    assert info.value.reason == "python-mismatch" and info.value.step == "plan"
    assert "Python 3.11" in (info.value.hint or "")
