"""Slurm batch scripts (golden files), Slurm's words mapped to job states, hostile values (pure).

Apptainer is not packaged for Debian bookworm, so its template is only checked here, as text;
docker and podman scripts also run for real in tests/integration/test_cluster_slurm.py.
Regenerate the golden files with ``ENVPACK_UPDATE_GOLDEN=1`` and review the diff.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest

from jupyter_envpack.cluster.base import JobSpec, JobState, backend_class
from jupyter_envpack.cluster.jobs import SubmitOptions
from jupyter_envpack.cluster.slurm import (
    SlurmBackend,
    exit_code_of,
    parse_fields,
    render_batch_script,
    status_from_fields,
    time_limit,
)
from jupyter_envpack.config import EnvPack
from jupyter_envpack.errors import InputError

GOLDEN = Path(__file__).parent / "golden" / "slurm"
SPEC = JobSpec(
    job_id="0123456789ab",
    name="analysis-0123456789",
    image="registry.example:5000/envpack/analysis:0f1e2d3c4b5a69788796",
    notebook="analysis.ipynb",
    parameters_cell="alpha = 0.5\nname = 'it''s'\n",
    cell_timeout=120,
    deadline=5400,
    cpu=2.5,
    memory=3 * 1024**3,
)
CASES = {
    "docker": {"runtime": "docker"},
    "podman-gpu": {"runtime": "podman", "partition": "gpu", "account": "lab42", "gpus": 2},
    "apptainer": {"runtime": "apptainer", "partition": "short"},
    "apptainer-oci-archive": {
        "runtime": "apptainer",
        "apptainer_source": "oci-archive:/shared/images/{archive}",
        "gpus": 1,
    },
    "apptainer-docker-daemon": {
        "runtime": "apptainer",
        "apptainer_source": "docker-daemon:{image}",
    },
    "docker-array": {
        "runtime": "docker",
        "rows": ["alpha = 0.1\n", "alpha = 0.2\n", "alpha = 'it''s $(x)'\n"],
        "max_parallel": 2,
    },
}


@pytest.mark.reliability("I4")
@pytest.mark.parametrize("case", sorted(CASES))
def test_batch_script_matches_golden(case: str) -> None:
    script = render_batch_script(SPEC, output_dir="/shared/envpack", **CASES[case])  # type: ignore[arg-type]
    path = GOLDEN / f"{case}.sh"
    if os.environ.get("ENVPACK_UPDATE_GOLDEN"):
        path.write_text(script)
    assert script == path.read_text()
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0


def test_docker_and_podman_use_the_locked_down_flags_and_exec() -> None:
    for runtime in ("docker", "podman"):
        script = render_batch_script(SPEC, output_dir="/o", runtime=runtime)
        last = script.strip().splitlines()[-1]
        assert last.startswith(f"exec {runtime} run --rm --init ")  # scancel reaches the container
        argv = shlex.split(last)
        for flag in ("--cap-drop=ALL", "--security-opt=no-new-privileges", "--user=1000:1000"):
            assert flag in argv
        assert "--pids-limit=1024" in argv and f"--memory={3 * 1024**3}" in argv
        assert "#SBATCH --export=NONE" in script  # the server's environment stays home
        assert "#SBATCH --time=0-01:30:00" in script and "#SBATCH --mem=3072M" in script
        assert "#SBATCH --cpus-per-task=3" in script


def test_apptainer_passes_only_the_allowlisted_environment() -> None:
    script = render_batch_script(SPEC, output_dir="/o", runtime="apptainer")
    argv = shlex.split(script.strip().splitlines()[-1])
    assert argv[:3] == ["exec", "apptainer", "exec"] and "--cleanenv" in argv
    assert "docker://" + SPEC.image in argv
    assert "export APPTAINERENV_HOME=/home/envpack" in script


@pytest.mark.reliability("C1")
def test_hostile_parameter_values_reach_the_job_verbatim(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = f"x = '$(touch {marker})' ; `touch {marker}` '\"\n\\' ; touch {marker}"
    spec = JobSpec(
        job_id="abc",
        name="n-abc",
        image="i:1",
        notebook="a\n#SBATCH --uid=0.ipynb",
        parameters_cell=evil,
    )
    script = render_batch_script(spec, output_dir=str(tmp_path), runtime="docker")
    body = script.split("set -eu\n", 1)[1].rsplit("\nexec ", 1)[0]  # the exports, not the exec
    assert "#SBATCH" not in script.split("set -eu")[1]
    shown = subprocess.run(
        ["bash", "-c", body + '\nprintf %s "$ENVPACK_PARAMETERS_CELL"'],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert shown == evil and not marker.exists()


def test_bad_names_and_runtimes_are_refused() -> None:
    with pytest.raises(InputError, match="partition"):
        SlurmBackend(partition="gpu --qos=high")
    with pytest.raises(InputError, match="runtime"):
        SlurmBackend(runtime="lxc")
    with pytest.raises(InputError, match="job id"):
        SlurmBackend().status("1; scancel -u root")


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [(1, "0-00:01:00"), (60, "0-00:01:00"), (61, "0-00:02:00"), (90000, "1-01:00:00")],
)
def test_time_limit_rounds_up_to_minutes(seconds: float, expected: str) -> None:
    assert time_limit(seconds) == expected


def test_scontrol_and_jobcomp_lines_map_to_states() -> None:
    done = parse_fields(
        "JobId=7 UserId=root(0) Name=a JobState=COMPLETED Partition=debug NodeList=vm ExitCode=0:0"
    )
    assert status_from_fields(done).state is JobState.SUCCEEDED
    failed = status_from_fields(parse_fields("JobState=FAILED ExitCode=3:0 NodeList=vm"))
    assert (failed.state, failed.reason, failed.exit_code) == (JobState.FAILED, "cell-error", 3)
    assert status_from_fields({"JobState": "TIMEOUT"}).reason == "deadline-exceeded"
    assert status_from_fields({"JobState": "CANCELLED+"}).state is JobState.CANCELLED
    assert status_from_fields({"JobState": "NODE_FAIL"}).state is JobState.LOST
    assert status_from_fields({"JobState": "OUT_OF_MEMORY"}).reason == "killed-or-oom"
    no_runtime = status_from_fields({"JobState": "FAILED", "ExitCode": "125:0"})
    assert no_runtime.reason == "runtime-failed" and "log" in no_runtime.message
    pending = status_from_fields({"JobState": "PENDING", "Reason": "Resources"})
    assert pending.state is JobState.PENDING and "Resources" in pending.message
    assert exit_code_of("0:9") == 137 and exit_code_of("5:0") == 5 and exit_code_of("") is None


def test_slurm_is_a_backend_with_options_from_flags_and_config() -> None:
    assert backend_class("slurm") is SlurmBackend
    assert EnvPack().backend_class("slurm") is SlurmBackend
    opts = SubmitOptions(backend="slurm", partition="gpu", gpus=1, runtime="podman")
    assert opts.backend_options() == {"partition": "gpu", "gpus": 1, "runtime": "podman"}
    from jupyter_envpack.cluster.jobs import open_backend

    config = EnvPack(backend_options={"slurm": {"runtime": "apptainer", "account": "lab"}})
    backend = open_backend("slurm", {"runtime": "podman"}, config)
    assert isinstance(backend, SlurmBackend)
    assert (backend.runtime, backend.account) == ("podman", "lab")  # the job's choice wins


def test_dry_run_document_holds_the_script() -> None:
    docs = SlurmBackend(output_dir="/o").render(SPEC)
    assert docs[0]["kind"] == "SlurmBatchScript" and docs[0]["script"].startswith("#!/bin/bash")
