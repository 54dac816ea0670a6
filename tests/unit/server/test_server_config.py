"""``c.EnvPack``: documented traits, config files shared with the CLI/magics, core options."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from jupyter_envpack.config import DEFAULT_OPERATION_KINDS, EnvPack, load_envpack_config
from jupyter_envpack.errors import InputError

pytest_plugins = ["pytest_jupyter.jupyter_server"]


def test_every_trait_is_documented() -> None:
    traits = EnvPack.class_traits(config=True)
    assert len(traits) >= 15
    for name, trait in traits.items():
        assert trait.help and len(trait.help) > 15, name


def test_defaults() -> None:
    cfg = EnvPack()
    assert cfg.base_image is None and cfg.concurrency_limit == 2
    assert cfg.database_path.endswith(str(Path("envpack") / "operations.sqlite"))
    assert set(cfg.cluster_backends) == {"swarm", "kubernetes", "slurm"}
    assert cfg.operation_kinds == DEFAULT_OPERATION_KINDS


def test_the_old_runners_name_still_sets_the_operation_kinds(tmp_path: Path) -> None:
    (tmp_path / "jupyter_envpack_config.py").write_text(
        "c.EnvPack.runners = {'extra': 'mod:kind'}\n"
    )
    with pytest.warns(FutureWarning, match="c.EnvPack.operation_kinds"):
        cfg = load_envpack_config([str(tmp_path)])
    assert cfg.operation_kinds == {"extra": "mod:kind"}


def test_config_files_are_read_like_jupyter(tmp_path: Path) -> None:
    low, high = tmp_path / "system", tmp_path / "user"
    low.mkdir()
    high.mkdir()
    (low / "jupyter_server_config.json").write_text(
        json.dumps({"EnvPack": {"base_image": "python:3.11-slim", "concurrency_limit": 5}})
    )
    (high / "jupyter_envpack_config.py").write_text(
        "c.EnvPack.concurrency_limit = 3\nc.EnvPack.extra_index_urls = ['https://x/simple']\n"
    )
    cfg = load_envpack_config([str(low), str(high)])
    assert cfg.base_image == "python:3.11-slim"
    assert cfg.concurrency_limit == 3 and cfg.extra_index_urls == ["https://x/simple"]
    assert load_envpack_config([str(tmp_path / "missing")]).concurrency_limit == 2


def test_core_options_come_from_the_config() -> None:
    cfg = EnvPack(
        base_image="envpack-test/debian-python:bookworm",
        index_url="https://i/simple",
        extra_index_urls=["https://e/simple"],
        build_deadline=60.0,
        cell_timeout=30.0,
    )
    build = cfg.build_options(labels={"a": "b"}, deadline=None)
    assert build.base_image == "envpack-test/debian-python:bookworm"
    assert build.index_url == "https://i/simple" and build.extra_index_urls == ("https://e/simple",)
    assert build.deadline == 60.0 and build.labels == {"a": "b"}
    assert cfg.build_options(base_image="python:3.12-slim").base_image == "python:3.12-slim"
    run = cfg.run_options(parameters={"n": 1})
    assert run.cell_timeout == 30.0 and run.parameters == {"n": 1}


def test_data_file_rules_come_from_the_config() -> None:
    cfg = EnvPack(max_data_bytes=1000, include_data=["extra/*"], exclude_data=["*.bin"])
    snap = cfg.snapshot_options()
    assert (snap.data.max_bytes, snap.data.include, snap.data.exclude) == (
        1000,
        ("extra/*",),
        ("*.bin",),
    )
    assert cfg.snapshot_options(max_bytes=5).data.max_bytes == 5
    assert EnvPack(index_url="https://i/simple").snapshot_options().index.index_url == (
        "https://i/simple"
    )


def test_backend_classes_are_swappable() -> None:
    cfg = EnvPack(
        cluster_backends={"mine": dict, "str": "collections:OrderedDict"}, default_backend="mine"
    )
    assert cfg.backend_class() is dict
    from collections import OrderedDict

    assert cfg.backend_class("str") is OrderedDict
    with pytest.raises(InputError):
        cfg.backend_class("nope")


@pytest.fixture
def envpack_config() -> dict[str, Any]:
    return {
        "concurrency_limit": 3,
        "operation_kinds": dict(DEFAULT_OPERATION_KINDS, broken="no.such:kind"),
    }


async def test_the_server_reads_c_envpack(jp_fetch: Any) -> None:
    status = json.loads((await jp_fetch("envpack", "status")).body)
    assert status["operations"]["limit"] == 3
    assert (
        "job" in status["kinds"]
    )  # the cluster kind, registered through c.EnvPack.operation_kinds
    assert "broken" not in status["kinds"]  # a missing module is skipped, not fatal
