"""The no-op memo's entries are input too: junk, links and foreign engines never short-cut a build."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from jupyter_envpack import buildmemo
from jupyter_envpack.events import ProgressEvent, StageClock

SETTINGS = {"notebook": "nb.ipynb", "base_image": "b:1"}
ID = "sha256:" + "a" * 64


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path


def entry(nb: Path, **over: object) -> dict[str, object]:
    data: dict[str, object] = {
        "version": buildmemo.MEMO_VERSION,
        "image": "envpack/nb:0123456789abcdef0123",
        "image_id": ID,
        "engine": "unix:///var/run/docker.sock",
        "base": None,
        "watched": [[str(nb), buildmemo.signature(nb)]],
        "result": {"image": "envpack/nb:0123456789abcdef0123", "cached": True},
        "events": [],
    }
    data.update(over)
    return data


def place(nb: Path, data: object) -> Path:
    key = buildmemo.memo_key(nb.read_bytes(), SETTINGS)
    path = buildmemo.memo_dir() / f"{key[:40]}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


@pytest.mark.reliability("L8")
@pytest.mark.parametrize(
    "over",
    [
        {"version": 99},
        {"image": "Not A Tag"},
        {"image_id": "sha256:short"},
        {"result": {"image": "envpack/other:0123456789abcdef0123"}},
        {"engine": "tcp://127.0.0.1:2375"},
        {"watched": "nb.ipynb"},
        {"events": [["only", "two"]]},
    ],
)
def test_a_malformed_or_foreign_entry_is_never_used(cache: Path, over: dict[str, object]) -> None:
    nb = cache / "nb.ipynb"
    nb.write_text("{}")
    place(nb, entry(nb, **over))
    assert buildmemo.recall(nb, SETTINGS) is None


@pytest.mark.reliability("L8")
def test_a_linked_or_huge_entry_is_not_read(cache: Path) -> None:
    nb = cache / "nb.ipynb"
    nb.write_text("{}")
    path = place(nb, entry(nb))
    elsewhere = cache / "planted.json"
    path.replace(elsewhere)
    path.symlink_to(elsewhere)  # a link at the entry's name is never followed
    assert buildmemo._load(path) is None
    path.unlink()
    path.write_text(" " * (buildmemo.MAX_ENTRY + 2))
    assert buildmemo._load(path) is None


def test_a_changed_input_fails_the_stat_check(cache: Path) -> None:
    nb = cache / "nb.ipynb"
    nb.write_text("{}")
    data = place(nb, entry(nb))
    assert buildmemo._load(data) is not None
    watched = [[str(nb), buildmemo.signature(nb)], [str(cache / "absent.csv"), None]]
    assert buildmemo._unchanged(watched)
    (cache / "absent.csv").write_text("now here")
    assert not buildmemo._unchanged(watched)
    os.utime(nb, ns=(0, 0))
    assert not buildmemo._unchanged(watched[:1])


def test_the_notebook_must_be_a_regular_file_under_the_cap(cache: Path) -> None:
    (cache / "real.ipynb").write_text("{}")
    (cache / "link.ipynb").symlink_to(cache / "real.ipynb")
    assert buildmemo.read_notebook(cache / "link.ipynb") is None
    assert buildmemo.read_notebook(cache) is None
    assert buildmemo.read_notebook(cache / "real.ipynb") == b"{}"


def test_the_stage_clock_times_each_stage_and_keeps_what_to_replay() -> None:
    seen: list[ProgressEvent] = []
    clock = StageClock(seen.append)
    clock(ProgressEvent("snapshot", "reading", "step"))
    clock(ProgressEvent("snapshot", "3 files", "info"))
    clock(ProgressEvent("wheels", "fetching", "log"))
    clock(ProgressEvent("build", "careful", "warning"))
    clock.finish()
    assert [e.message for e in seen[:4]] == ["reading", "3 files", "fetching", "careful"]
    line = seen[-1].message
    assert line.startswith("time: snapshot ") and " · wheels " in line and "(total " in line
    assert clock.kept == [("snapshot", "3 files", "info"), ("build", "careful", "warning")]
