"""One config (issues 9.8, 11.2): a ``c.EnvPack`` file on the Jupyter config path reaches the CLI,
the magics, the cluster CLI and the server alike; flags override it; built-in defaults stay below.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from IPython.testing import globalipapp

from jupyter_envpack import defaults
from jupyter_envpack.cli import build_options_from_args, build_parser, run_options_from_args
from jupyter_envpack.cluster.cli import submit_options
from jupyter_envpack.config import EnvPack
from jupyter_envpack.magics import _submit_options

pytest_plugins = ["pytest_jupyter.jupyter_server"]

BASE = "envpack-test/debian-python:bookworm"
CONFIG_PY = f"""
c.EnvPack.base_image = "{BASE}"
c.EnvPack.cell_timeout = 42.0
c.EnvPack.build_deadline = 77.0
c.EnvPack.registry = "127.0.0.1:5000/team"
c.EnvPack.max_data_bytes = 1000
"""


@pytest.fixture
def config_dir(jp_config_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``jupyter_envpack_config.py`` in ``$JUPYTER_CONFIG_DIR`` (the user's config folder)."""
    (jp_config_dir / "jupyter_envpack_config.py").write_text(CONFIG_PY)
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(jp_config_dir))
    monkeypatch.delenv("ENVPACK_BASE_IMAGE", raising=False)
    return jp_config_dir


@pytest.fixture
def envpack_config(config_dir: Path) -> dict[str, Any]:  # the file, not in-memory config
    return {}


def _cli(argv: list[str]) -> Any:
    return build_parser().parse_args(argv)


def _resolved(build: Any, run: Any) -> tuple[Any, ...]:
    return build.base_image, build.deadline, build.idle_timeout, run.cell_timeout, run.deadline


EXPECTED = (BASE, 77.0, defaults.IDLE_TIMEOUT, 42.0, defaults.RUN_DEADLINE)


def test_the_cli_reads_the_config_file_and_flags_override_it(config_dir: Path) -> None:
    args = _cli(["run", "nb.ipynb"])
    assert _resolved(build_options_from_args(args), run_options_from_args(args)) == EXPECTED
    args = _cli(["run", "nb.ipynb", "--base-image", "python:3.12-slim", "--cell-timeout", "5"])
    build, run = build_options_from_args(args), run_options_from_args(args)
    assert (build.base_image, build.deadline, run.cell_timeout) == ("python:3.12-slim", 77.0, 5.0)


def test_environment_variable_sits_between_flag_and_config(
    config_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENVPACK_BASE_IMAGE", "python:3.10-slim")
    assert build_options_from_args(_cli(["build", "nb.ipynb"])).base_image == "python:3.10-slim"
    flagged = _cli(["build", "nb.ipynb", "--base-image", "python:3.13-slim"])
    assert build_options_from_args(flagged).base_image == "python:3.13-slim"


def test_without_config_the_built_in_defaults_apply(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(tmp_path))
    monkeypatch.delenv("ENVPACK_BASE_IMAGE", raising=False)
    args = _cli(["run", "nb.ipynb"])
    build, run = build_options_from_args(args), run_options_from_args(args)
    assert (build.base_image, build.deadline, run.cell_timeout, run.deadline) == (
        None,
        defaults.BUILD_DEADLINE,
        defaults.CELL_TIMEOUT,
        defaults.RUN_DEADLINE,
    )
    assert (build.wheels_via, build.no_cache, run.tolerance, run.network) == (
        "auto",
        False,
        0.0,
        True,
    )


def test_cluster_submit_reads_the_same_config(config_dir: Path) -> None:
    opts = submit_options(_cli(["submit", "nb.ipynb"]))
    assert (opts.registry, opts.cell_timeout, opts.deadline, opts.backend) == (
        "127.0.0.1:5000/team",
        42.0,
        defaults.RUN_DEADLINE,
        "swarm",
    )
    flagged = submit_options(
        _cli(["submit", "nb.ipynb", "--cell-timeout", "9", "--deadline", "99"])
    )
    assert (flagged.cell_timeout, flagged.deadline) == (9.0, 99.0)


def test_real_cli_process_writes_the_configured_base_image(
    config_dir: Path, make_notebook: Any, kernel_python: str
) -> None:
    nb = make_notebook(["import packaging"])
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(config_dir)}
    env.pop("ENVPACK_BASE_IMAGE", None)
    cmd = [sys.executable, "-m", "jupyter_envpack.cli", "dockerfile", str(nb)]
    cmd += ["--python", kernel_python]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, check=True)
    assert f"FROM {BASE}" in out.stdout
    cmd += ["--base-image", "python:3.12-slim"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, check=True)
    assert "FROM python:3.12-slim" in out.stdout and BASE not in out.stdout


def test_magics_and_server_resolve_what_the_cli_resolves(
    config_dir: Path, jp_serverapp: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = _cli(["run", "nb.ipynb"])
    cli = _resolved(build_options_from_args(args), run_options_from_args(args))

    shell = globalipapp.get_ipython()
    shell.run_line_magic("load_ext", "jupyter_envpack")
    magics = shell.magics_manager.registry["EnvpackMagics"]
    margs = magics._parse("run --notebook nb.ipynb")
    in_kernel = _resolved(magics.build_options(margs), magics.run_options(margs))

    config: EnvPack = jp_serverapp.web_app.settings["envpack_service"].config
    server = _resolved(config.build_options(), config.run_options())
    assert cli == in_kernel == server == EXPECTED

    job = _submit_options(magics, magics._parse("submit --notebook nb.ipynb --deadline 99"))
    assert (job.registry, job.cell_timeout, job.deadline) == ("127.0.0.1:5000/team", 42.0, 99.0)
    assert config.submit_options().registry == job.registry


def test_the_cli_snapshots_the_configured_kernel_unless_told(
    config_dir: Path, make_notebook: Any, kernel_python: str
) -> None:
    from jupyter_envpack.cli import _prepare
    from jupyter_envpack.errors import EnvpackError

    (config_dir / "jupyter_envpack_config.json").write_text(
        '{"EnvPack": {"kernel": "no-such-kernel-d"}}'
    )
    nb = str(make_notebook(["import packaging"]))
    with pytest.raises(EnvpackError, match="no-such-kernel-d"):
        _prepare(_cli(["snapshot", nb]))
    assert _prepare(_cli(["snapshot", nb, "--python", kernel_python])).spec.packages


def test_a_new_trait_named_like_an_options_field_flows_through() -> None:
    """Other areas add traits (limits, data files): no code in the helper is needed for them."""
    from dataclasses import dataclass

    from traitlets import Float

    @dataclass
    class Limits:
        cpu: float | None = None
        memory: str | None = None
        extra: tuple[str, ...] = ()

    class Config2(EnvPack):
        cpu = Float(2.0, help="cores").tag(config=True)

    cfg = Config2()
    assert cfg.options(Limits) == Limits(cpu=2.0)
    assert cfg.options(Limits, cpu=3.0, memory=None, extra=["a"]) == Limits(3.0, None, ("a",))


def test_data_file_rules_of_the_config_reach_cli_magics_and_server(
    config_dir: Path, make_notebook: Any, kernel_python: str, jp_serverapp: Any
) -> None:
    from jupyter_envpack.cli import _prepare

    nb = make_notebook(["print(open('big.txt').read()[:3])"])
    (nb.parent / "big.txt").write_text("x" * 2000)
    cli = _prepare(_cli(["snapshot", str(nb), "--python", kernel_python])).spec
    shell = globalipapp.get_ipython()
    shell.run_line_magic("load_ext", "jupyter_envpack")
    magics = shell.magics_manager.registry["EnvpackMagics"]
    in_kernel = magics.prepare(magics._parse(f"snapshot --notebook {nb}"), nb).spec
    for spec in (cli, in_kernel):
        assert "large-data-files" in {w.code for w in spec.warnings}
    server: EnvPack = jp_serverapp.web_app.settings["envpack_service"].config
    assert server.snapshot_options().data.max_bytes == 1000
    flagged = _prepare(
        _cli(["snapshot", str(nb), "--python", kernel_python, "--max-data-bytes", "5000"])
    ).spec
    assert "large-data-files" not in {w.code for w in flagged.warnings}
