"""Writes into folders a hostile repository controls, and envpack's own private files
(RELIABILITY L1, L8). Real symlinks to a canary file outside the folder; the canary must keep
its text and the link must stay a link."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from jupyter_envpack.errors import InputError
from jupyter_envpack.image import BuildOptions
from jupyter_envpack.image.context import make_context
from jupyter_envpack.safefs import private_dir, private_file, safe_write
from jupyter_envpack.share.binder import write_binder
from jupyter_envpack.snapshot.spec import EnvSpec, PinnedPackage


@pytest.mark.reliability("L1")
def test_safe_write_refuses_a_link_at_the_final_name(
    tmp_path: Path, canary: Path, untouched
) -> None:
    link = tmp_path / "nb.envpack.ipynb"
    link.symlink_to(canary)
    with pytest.raises(InputError, match="symbolic link") as err:
        safe_write(link, "{}")
    assert err.value.hint and "remove the link" in err.value.hint
    assert untouched(canary, link)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "nb.envpack.ipynb"]  # no temp


@pytest.mark.reliability("L1")
def test_safe_write_never_uses_a_planted_part_file(tmp_path: Path, canary: Path, untouched) -> None:
    part = tmp_path / "nb.envpack.ipynb.part"
    part.symlink_to(canary)
    safe_write(tmp_path / "nb.envpack.ipynb", "{}")
    assert (tmp_path / "nb.envpack.ipynb").read_text() == "{}"
    assert untouched(canary, part)
    assert stat.S_IMODE((tmp_path / "nb.envpack.ipynb").stat().st_mode) == 0o644


@pytest.mark.reliability("L1")
def test_binder_folder_with_a_planted_link_is_refused(
    tmp_path: Path, canary: Path, untouched, make_notebook
):
    nb = make_notebook(["import six"], name="analysis.ipynb", folder=tmp_path / "repo")
    (tmp_path / "repo" / "binder").mkdir()
    link = tmp_path / "repo" / "binder" / "requirements.txt"
    link.symlink_to(canary)
    spec = EnvSpec("analysis.ipynb", "3.11.7", [PinnedPackage("six", "1.16.0")], [], [])
    with pytest.raises(InputError, match="symbolic link"):
        write_binder(nb, spec=spec)
    assert untouched(canary, link)


@pytest.mark.reliability("L1")
def test_dockerfile_output_folder_with_planted_links(
    tmp_path: Path, canary: Path, untouched, make_notebook
) -> None:
    nb = make_notebook(["import six"], name="analysis.ipynb")
    spec = EnvSpec("analysis.ipynb", "3.11.7", [PinnedPackage("six", "1.16.0")], [], [])
    ctx = make_context(spec, nb, BuildOptions(), runner=["nbclient==0.10.0"])
    out = tmp_path / "ctx"
    out.mkdir()
    (out / "Dockerfile").symlink_to(canary)
    with pytest.raises(InputError, match="symbolic link"):
        ctx.write(out, wheels=False)
    assert untouched(canary, out / "Dockerfile")
    (out / "Dockerfile").unlink()
    (out / "envpack").symlink_to(canary.parent, target_is_directory=True)  # a folder link
    with pytest.raises(InputError, match="symbolic link"):
        ctx.write(out, wheels=False)
    assert sorted(p.name for p in canary.parent.iterdir()) == [".bashrc"]
    (out / "envpack").unlink()
    ctx.write(out, wheels=False)
    assert (out / "Dockerfile").read_bytes() == ctx.files["Dockerfile"]


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.mark.reliability("L8")
@pytest.mark.usefixtures("umask_022")
def test_private_folder_and_file_are_created_private(tmp_path: Path) -> None:
    folder = private_dir(tmp_path / "data" / "envpack")
    db = private_file(folder / "secrets.sqlite")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    secret = safe_write(folder / "token", "s3cret", mode=0o600)
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600


@pytest.mark.reliability("L8")
@pytest.mark.usefixtures("umask_022")
def test_an_existing_open_data_folder_is_tightened_and_a_link_refused(tmp_path: Path) -> None:
    old = tmp_path / "envpack"
    old.mkdir(mode=0o755)
    assert stat.S_IMODE(private_dir(old).stat().st_mode) == 0o700
    link = tmp_path / "linked"
    link.symlink_to(old, target_is_directory=True)
    with pytest.raises(InputError, match="not a folder"):
        private_dir(link)


@pytest.mark.reliability("L8")
@pytest.mark.usefixtures("umask_022")
def test_data_folder_and_databases_are_private_from_creation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, audited
) -> None:
    from jupyter_envpack.cluster.jobs import JobIndex
    from jupyter_envpack.image.wheelserver import served_url
    from jupyter_envpack.operations.store import OperationStore

    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("ENVPACK_JOBS_DB", raising=False)
    chmods = audited(frozenset({"os.chmod"}))
    index = JobIndex()  # the code path that made the folder 0755 before
    store = OperationStore(tmp_path / "data" / "envpack" / "operations.sqlite")
    store.close()
    served_url(tmp_path / "wheels", "127.0.0.1")
    folder = index.path.parent
    assert folder == tmp_path / "data" / "envpack"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for name in ("cluster-jobs.sqlite", "operations.sqlite"):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600, name
    assert stat.S_IMODE((tmp_path / "wheels" / "serve.json").stat().st_mode) == 0o600
    assert chmods == []  # 0600 from creation, never tightened afterwards
