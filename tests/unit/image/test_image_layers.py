"""Heavy distributions in their own layers, ordered so sibling notebooks share them (issue 16)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import nbformat
import pytest
from dockerfile_parse import DockerfileParser

from jupyter_envpack.image import BuildOptions
from jupyter_envpack.image.context import make_context
from jupyter_envpack.image.layers import (
    HEAVY_WHEEL_BYTES,
    built_chains,
    heavy_pins,
    layer_order,
)
from jupyter_envpack.image.wheels import cache_dir, target_arch
from jupyter_envpack.snapshot.spec import EnvSpec, PinnedPackage

BASE = "envpack-test/debian-python:bookworm"
URL = "http://172.17.0.1:45333/" + "ab" * 16 + "/"
BIG, SMALL = HEAVY_WHEEL_BYTES, 1000
WHEELS = {
    "numpy-2.0.0-cp311-cp311-manylinux_2_17_x86_64.whl": BIG,
    "pandas-2.2.0-cp311-cp311-manylinux_2_17_x86_64.whl": BIG,
    "scipy-1.13.0-cp311-cp311-manylinux_2_17_x86_64.whl": BIG,
    "six-1.16.0-py2.py3-none-any.whl": SMALL,
}


def spec(path: Path, *names: str) -> EnvSpec:
    versions = {"numpy": "2.0.0", "pandas": "2.2.0", "scipy": "1.13.0", "six": "1.16.0"}
    pkgs = [PinnedPackage(n, versions[n], n != "numpy") for n in names]
    return EnvSpec(notebook=str(path), python_version="3.11.7", packages=pkgs)


def test_heavy_pins_are_the_big_wheels_dependencies_first_then_by_name(tmp_path: Path) -> None:
    s = spec(tmp_path / "nb.ipynb", "six", "scipy", "pandas", "numpy")
    assert heavy_pins(s, WHEELS) == ["numpy==2.0.0", "pandas==2.2.0", "scipy==1.13.0"]


def test_layer_order_extends_the_longest_earlier_chain_made_of_our_pins() -> None:
    ours = ["a==1", "b==1", "c==1", "d==1"]
    chains = [["c==1", "a==1", "x==1"], ["d==1", "b==1", "a==1", "c==1", "e==1"], ["a==2"]]
    assert layer_order(ours, chains) == ["d==1", "b==1", "a==1", "c==1"]
    assert layer_order(ours, []) == ours


@pytest.mark.reliability("D1")
def test_history_labels_that_are_not_pins_are_ignored() -> None:
    class Api:
        def images(self, filters: Any) -> list[dict[str, Any]]:
            hostile = "numpy==1\nRUN id $(id) --extra-index-url=http://evil pandas==2"
            good = {"org.jupyter.envpack.layers": "pandas==2 numpy==1"}
            bad = {"org.jupyter.envpack.layers": hostile}
            return [{"Labels": bad}, {"Labels": None}, {"Labels": good}]

    class Client:
        api = Api()

    assert built_chains(Client(), "c" * 32) == [["pandas==2", "numpy==1"]]


def _context(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *names: str, layers: str = "shared", **kw: Any
) -> Any:
    cache = tmp_path / "cache"
    monkeypatch.setenv("ENVPACK_WHEEL_CACHE", str(cache))
    folder = cache_dir("3.11", target_arch())
    folder.mkdir(parents=True, exist_ok=True)
    for name, size in WHEELS.items():
        with (folder / name).open("wb") as fh:
            fh.truncate(size)
    nb = tmp_path / f"{'-'.join(names)}.ipynb"
    if not nb.exists():  # new cells get random ids: written once
        nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1")]), nb)
    hashes = {n: f"{i:064x}" for i, n in enumerate(WHEELS)}
    opts = BuildOptions(base_image=BASE, layers=layers)
    return make_context(spec(nb, *names), nb, opts, ["nbclient==0.11.0"], URL, None, hashes, **kw)


def test_siblings_name_their_common_heavy_layers_alike(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = _context(tmp_path, monkeypatch, "numpy", "pandas", "six")
    b = _context(tmp_path, monkeypatch, "numpy", "pandas", "scipy")
    assert a.chain == b.chain != ""
    runs_a, runs_b = _heavy_runs(a), _heavy_runs(b)
    assert runs_a == runs_b[:2] and len(runs_b) == 3  # numpy, pandas; then scipy
    assert runs_a[0].endswith(f"layer {0:064x}")  # the numpy wheel's sha256, nothing else
    assert b"six==" in a.files["envpack/rest.lock"] and b"numpy" not in a.files["envpack/rest.lock"]


def _heavy_runs(ctx: Any) -> list[str]:
    parser = DockerfileParser(fileobj=io.BytesIO(ctx.files["Dockerfile"]))
    return [
        i["value"]
        for i in parser.structure
        if i["instruction"] == "RUN" and " layer " in i["value"]
    ]


def test_the_order_from_history_does_not_change_the_tag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = _context(tmp_path, monkeypatch, "numpy", "pandas", "scipy")
    history = [["scipy==1.13.0", "numpy==2.0.0", "x==1"]]
    ordered = _context(tmp_path, monkeypatch, "numpy", "pandas", "scipy", history=history)
    assert ordered.image == plain.image
    assert [r[-64:] for r in _heavy_runs(ordered)] == [f"{i:064x}" for i in (2, 0, 1)]


def test_the_single_layout_installs_the_whole_lock_in_one_step_under_another_tag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    single = _context(tmp_path, monkeypatch, "numpy", "pandas", "scipy", layers="single")
    shared = _context(tmp_path, monkeypatch, "numpy", "pandas", "scipy")
    assert _heavy_runs(single) == [] and len(_heavy_runs(shared)) == 3
    rest = single.files["envpack/rest.lock"]
    assert all(f"{n}==".encode() in rest for n in ("numpy", "pandas", "scipy"))
    assert b"org.jupyter.envpack.layers" not in single.files["Dockerfile"]
    assert single.image != shared.image  # the layout is part of what the tag hashes


def test_the_layout_comes_from_the_config_and_the_flag_and_is_checked() -> None:
    from traitlets.config import Config

    from jupyter_envpack.cli import build_options_from_args, build_parser
    from jupyter_envpack.config import EnvPack
    from jupyter_envpack.errors import InputError

    assert BuildOptions().layers == "single"
    config = Config()
    config.EnvPack.layers = "shared"
    assert EnvPack(config=config).build_options().layers == "shared"
    args = build_parser().parse_args(["build", "nb.ipynb", "--layers", "shared"])
    assert build_options_from_args(args).layers == "shared"
    with pytest.raises(InputError, match="single or shared"):
        BuildOptions(layers="split").validate()
