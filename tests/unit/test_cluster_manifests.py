"""Kubernetes Job/CronJob builders: golden dicts, real 1.30 schemas, DNS-safe names (I4, I7)."""

from __future__ import annotations

import copy
from dataclasses import replace

import kubernetes_validate
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jupyter_envpack.cluster.base import JobSpec
from jupyter_envpack.cluster.k8s_manifests import (
    CRONJOB_NAME_MAX,
    JOB_NAME_MAX,
    KubernetesOptions,
    cpu_quantity,
    is_dns_label,
    job_name,
    make_cronjob,
    make_job,
    memory_quantity,
    validate_schedule,
    validate_timezone,
)
from jupyter_envpack.errors import InputError

K8S_VERSION = "1.30.0"
LABELS = {
    "org.jupyter.envpack": "1",
    "org.jupyter.envpack.kind": "job",
    "org.jupyter.envpack.job": "0123abcd",
}
SPEC = JobSpec(
    job_id="0123abcd",
    name="analysis-5f1c2a9e0b",
    image="registry.example:5000/envpack/analysis:0123456789abcdef0123",
    notebook="work/analysis.ipynb",
    parameters_cell="n = 3\n",
    cell_timeout=60,
    deadline=1800,
    cpu=2,
    memory=1024**3,
    cpu_request=0.5,
)
OPTIONS = KubernetesOptions(namespace="science", image_pull_secrets=("regcred",))

GOLDEN_POD = {
    "restartPolicy": "Never",
    "automountServiceAccountToken": False,
    "enableServiceLinks": False,
    "securityContext": {
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "runAsGroup": 1000,
        "fsGroup": 1000,
        "seccompProfile": {"type": "RuntimeDefault"},
    },
    "containers": [
        {
            "name": "notebook",
            "image": "registry.example:5000/envpack/analysis:0123456789abcdef0123",
            "imagePullPolicy": "IfNotPresent",
            "command": [
                "/opt/envpack/runner/bin/python",
                "/opt/envpack/run_notebook.py",
                "--emit-result",
                "--cell-timeout",
                "60",
            ],
            "env": [
                {"name": "ENVPACK_PARAMETERS_CELL", "value": "n = 3\n"},
                {"name": "HOME", "value": "/home/envpack"},
            ],
            "resources": {
                "requests": {"cpu": "500m", "memory": "1Gi"},
                "limits": {"cpu": "2", "memory": "1Gi"},
            },
            "securityContext": {
                "allowPrivilegeEscalation": False,
                "capabilities": {"drop": ["ALL"]},
                "runAsNonRoot": True,
                "runAsUser": 1000,
                "runAsGroup": 1000,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
        }
    ],
    "imagePullSecrets": [{"name": "regcred"}],
}
GOLDEN_JOB_SPEC = {
    "backoffLimit": 1,
    "activeDeadlineSeconds": 1800,
    "ttlSecondsAfterFinished": 86400,
    "podFailurePolicy": {
        "rules": [
            {
                "action": "FailJob",
                "onExitCodes": {
                    "containerName": "notebook",
                    "operator": "In",
                    "values": [2, 3, 4, 5, 6],
                },
            },
            {
                "action": "Ignore",
                "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
            },
        ]
    },
    "template": {"metadata": {"labels": LABELS}, "spec": GOLDEN_POD},
}
GOLDEN_JOB = {
    "apiVersion": "batch/v1",
    "kind": "Job",
    "metadata": {
        "name": "analysis-5f1c2a9e0b",
        "namespace": "science",
        "labels": LABELS,
        "annotations": {"jupyter.org/envpack-notebook": "work/analysis.ipynb"},
    },
    "spec": GOLDEN_JOB_SPEC,
}


def validate(manifest: dict) -> None:
    kubernetes_validate.validate(copy.deepcopy(manifest), K8S_VERSION, strict=True)


@pytest.mark.reliability("I4")
def test_job_matches_golden_and_validates() -> None:
    job = make_job(SPEC, OPTIONS)
    assert job == GOLDEN_JOB
    validate(job)


@pytest.mark.reliability("I4")
@pytest.mark.reliability("I7")
def test_cronjob_matches_golden_and_validates() -> None:
    spec = replace(SPEC, schedule="0 6 * * *", timezone="Europe/Paris")
    cron = make_cronjob(spec, OPTIONS)
    assert cron == {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": GOLDEN_JOB["metadata"],
        "spec": {
            "schedule": "0 6 * * *",
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": 300,
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "timeZone": "Europe/Paris",
            "jobTemplate": {"metadata": {"labels": LABELS}, "spec": GOLDEN_JOB_SPEC},
        },
    }
    validate(cron)


def test_validation_catches_a_broken_manifest() -> None:
    """The schema check is real: a wrong type in the Job is refused offline."""
    job = make_job(SPEC, OPTIONS)
    job["spec"]["backoffLimit"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(job)


@pytest.mark.reliability("I4")
def test_defaults_still_set_requests_and_limits() -> None:
    job = make_job(replace(SPEC, cpu=None, memory=None, cpu_request=None), KubernetesOptions())
    resources = job["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert resources == {
        "requests": {"cpu": "1", "memory": "2Gi"},
        "limits": {"cpu": "1", "memory": "2Gi"},
    }
    assert "imagePullSecrets" not in job["spec"]["template"]["spec"]
    validate(job)


@pytest.mark.reliability("I7")
@pytest.mark.parametrize(
    "schedule",
    [
        "* * * *",
        "*/30 * * * * *",
        "61 * * * *",
        "0 25 * * *",
        "0 6 * * mon-",
        "0 6 * 13 *",
        "CRON_TZ=UTC 0 6 * * *",
        "0 6 * * * ; rm -rf /",
        "@every 30s",
        "",
        "*/0 * * * *",
    ],
)
def test_bad_schedules_are_refused(schedule: str) -> None:
    with pytest.raises(InputError):
        validate_schedule(schedule)


@pytest.mark.parametrize(
    "schedule",
    ["0 6 * * *", "*/15 * * * *", "0 6 * * mon-fri", "0 0 1 jan,jul *", "@daily", "5 4 * * 0,7"],
)
def test_good_schedules_pass(schedule: str) -> None:
    assert validate_schedule(schedule) == schedule


@pytest.mark.reliability("I7")
@pytest.mark.parametrize("tz", ["Mars/Olympus", "../../etc/passwd", "UTC\n", ""])
def test_bad_timezones_are_refused(tz: str) -> None:
    with pytest.raises(InputError):
        validate_timezone(tz)


def test_six_field_schedule_explains_minute_resolution() -> None:
    with pytest.raises(InputError, match="minute resolution"):
        validate_schedule("*/30 * * * * *")


def test_cronjob_needs_a_schedule_and_short_name() -> None:
    with pytest.raises(InputError):
        make_cronjob(SPEC, OPTIONS)
    long_name = job_name("x" * 80 + ".ipynb", "a", max_length=JOB_NAME_MAX)
    with pytest.raises(InputError, match="52"):
        make_cronjob(replace(SPEC, name=long_name, schedule="@daily"), OPTIONS)


def test_bad_caller_labels_are_refused() -> None:
    with pytest.raises(InputError):
        make_job(replace(SPEC, labels={"team": "data science/ops"}), OPTIONS)


def test_quantities() -> None:
    assert cpu_quantity(0.25) == "250m"
    assert cpu_quantity(3) == "3"
    assert memory_quantity(512 * 1024**2) == "512Mi"
    assert memory_quantity(1000) == "1000"


@pytest.mark.reliability("I4")
@settings(max_examples=200, deadline=None)
@given(path=st.text(min_size=0, max_size=300), salt=st.text(max_size=20), cron=st.booleans())
def test_names_are_dns_labels_for_any_path(path: str, salt: str, cron: bool) -> None:
    limit = CRONJOB_NAME_MAX if cron else JOB_NAME_MAX
    name = job_name(path, salt, max_length=limit)
    assert is_dns_label(name, limit)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(max_size=40), min_size=2, max_size=2, unique=True))
def test_names_differ_per_path(paths: list[str]) -> None:
    assert job_name(paths[0]) != job_name(paths[1])


@settings(max_examples=25, deadline=None)
@given(path=st.text(max_size=100), salt=st.text(alphabet="0123456789abcdef", max_size=12))
def test_generated_manifests_always_validate(path: str, salt: str) -> None:
    spec = replace(
        SPEC,
        name=job_name(path, salt, max_length=CRONJOB_NAME_MAX),
        notebook=path,
        schedule="*/5 * * * *",
    )
    validate(make_job(spec, OPTIONS))
    validate(make_cronjob(spec, OPTIONS))
