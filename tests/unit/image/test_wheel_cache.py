"""Builds that share a wheel cache fetch one at a time (RELIABILITY F8).

Two server operations on a new cache ran two `pip download -d CACHE` at once and one of them died
copying a wheel the other was replacing (`FileNotFoundError` in pip's `copymode`, CI rehearsal).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from jupyter_envpack.image import wheels
from jupyter_envpack.image.options import BuildOptions

WHEEL = "six-1.16.0-py2.py3-none-any.whl"


@pytest.mark.reliability("F8")
def test_two_builds_on_one_new_cache_fetch_one_after_the_other(tmp_path, monkeypatch):
    monkeypatch.setenv("ENVPACK_WHEEL_CACHE", str(tmp_path / "cache"))
    inside, overlaps, fetched = [0], [], []
    guard = threading.Lock()

    def fake_download(missing: list[str], folder: Path, *args: object) -> None:
        with guard:
            inside[0] += 1
            overlaps.append(inside[0])
        fetched.append(list(missing))
        time.sleep(0.3)  # a pip process at work: long enough for the other build to arrive
        (folder / WHEEL).write_bytes(b"not really a wheel")
        with guard:
            inside[0] -= 1

    monkeypatch.setattr(wheels, "_download", fake_download)
    results: list[list[Path]] = []

    def build() -> None:
        results.append(wheels.ensure_wheels(["six==1.16.0"], "3.11", BuildOptions(), arch="x86_64"))

    threads = [threading.Thread(target=build) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert max(overlaps) == 1, "two fetches into one cache folder ran at once"
    assert fetched == [["six==1.16.0"]], "the second build must find the first one's wheel"
    assert [[p.name for p in r] for r in results] == [[WHEEL], [WHEEL]]
