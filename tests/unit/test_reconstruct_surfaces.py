"""Every surface says plainly that a reconstructed environment is not what ran (issue 13.2)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import nbformat
import pytest

from jupyter_envpack.cli import main
from jupyter_envpack.errors import InputError
from jupyter_envpack.execute.compare import Report
from jupyter_envpack.image import BuildOptions, render_dockerfile
from jupyter_envpack.server.schema import RUN_FIELDS, check_fields
from jupyter_envpack.share.binder import binder_files
from jupyter_envpack.snapshot.lock import lock_from_spec, parse_lock
from jupyter_envpack.snapshot.spec import EnvSpec, PinnedPackage

REC = {"python": "3.11", "as_of": "2017-08-15", "as_of_used": "2022-11-02", "pins": {}}


def spec(origin: str = "reconstructed") -> EnvSpec:
    return EnvSpec(
        notebook="nb.ipynb",
        python_version="3.11",
        packages=[PinnedPackage("numpy", "1.23.4", True, ("numpy",))],
        origin=origin,
        reconstruction=REC if origin == "reconstructed" else None,
    )


def test_the_snapshot_json_round_trips_and_kernel_snapshots_keep_their_hash() -> None:
    data = spec().to_json()
    assert data["origin"] == "reconstructed" and data["reconstruction"] == REC
    back = EnvSpec.from_json(json.loads(json.dumps(data)))
    assert back.reconstructed and back.reconstruction == REC and back.hash == spec().hash
    kernel = spec("kernel")
    assert kernel.to_json()["origin"] == "kernel" and "reconstruction" not in kernel.to_json()
    # the same pins reconstructed never share an image (and its labels) with what ran
    assert kernel.hash != spec().hash
    old = {k: v for k, v in kernel.to_json().items() if k != "origin"}  # an older writer's JSON
    assert EnvSpec.from_json(old).origin == "kernel"


def test_the_dockerfile_says_so_in_its_header_and_labels() -> None:
    text = render_dockerfile(spec(), BuildOptions(base_image="python:3.11-slim"))
    assert "# RECONSTRUCTED environment (packages as of 2022-11-02)" in text
    assert 'org.jupyter.envpack.origin="reconstructed"' in text
    assert 'org.jupyter.envpack.as-of="2022-11-02"' in text
    plain = render_dockerfile(spec("kernel"), BuildOptions(base_image="python:3.11-slim"))
    assert "RECONSTRUCTED" not in plain and "envpack.origin" not in plain


def test_a_hostile_date_never_reaches_the_dockerfile() -> None:
    evil = dataclasses.replace(spec(), reconstruction={**REC, "as_of_used": '1"\nRUN id #'})
    text = render_dockerfile(evil, BuildOptions(base_image="python:3.11-slim"))
    assert "RUN id" not in text and "envpack.as-of" not in text


def test_the_lock_header_says_so_and_reads_back() -> None:
    text = lock_from_spec(spec()).dumps("nb.ipynb")
    assert "# RECONSTRUCTED: an educated guess" in text
    assert "# origin: reconstructed" in text and "# as-of: 2022-11-02" in text
    lock = parse_lock(text)
    assert lock.origin == "reconstructed" and lock.as_of == "2022-11-02"
    assert "origin" not in lock_from_spec(spec("kernel")).dumps("nb.ipynb")


def test_binder_requirements_and_the_report_say_so() -> None:
    files = binder_files(spec())
    assert "RECONSTRUCTED (packages as of 2022-11-02)" in files["requirements.txt"]
    report = Report(origin="reconstructed", as_of="2022-11-02").to_json()
    assert report["origin"] == "reconstructed" and report["as_of"] == "2022-11-02"
    assert report["reconstruction"] == {"as_of_used": "2022-11-02"}  # what the sidebar reads
    assert "origin" not in Report().to_json()


def test_rest_bodies_take_reconstruct_and_a_date_only() -> None:
    body = {"reconstruct": True, "as_of": "2019-05-01"}
    assert check_fields(body, RUN_FIELDS, "run option") == body
    bad_dates = ({"as_of": "2019-5-1"}, {"as_of": "2019-05-01; rm"}, {"as_of": "2019-13-01"})
    for bad in ({"reconstruct": "yes"}, *bad_dates):
        with pytest.raises(InputError):
            check_fields(bad, RUN_FIELDS, "run option")


def test_a_date_without_reconstruct_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["snapshot", "nb.ipynb", "--as-of", "2019-01-01"]) == 2
    assert "--as-of and --python-version need --reconstruct" in capsys.readouterr().err
    assert main(["run", "nb.ipynb", "--reconstruct", "--image", "envpack/x:1"]) == 2
    assert "--reconstruct builds its own image" in capsys.readouterr().err
    nb = tmp_path / "nb.ipynb"
    nbformat.write(nbformat.v4.new_notebook(), nb)
    assert main(["snapshot", str(nb), "--reconstruct", "--as-of", "2019-02-30"]) == 2
    assert "invalid date '2019-02-30'" in capsys.readouterr().err
