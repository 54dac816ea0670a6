"""Kubernetes Job/CronJob builders: golden dicts, real 1.30 schemas, DNS-safe names (I4, I7)."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

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
    make_sweep_job,
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


# -- sweeps as one Indexed Job, GPUs, and the restricted Pod Security Standard ------------------
CELLS = [f"alpha = {a}\nseed = {s}\n" for a in (0.1, 0.2) for s in (1, 2, 3)]
GPU_OPTIONS = replace(
    OPTIONS,
    gpu_node_selector=(("cloud.google.com/gke-accelerator", "nvidia-l4"),),
    gpu_tolerations=(
        (("key", "nvidia.com/gpu"), ("operator", "Exists"), ("effect", "NoSchedule")),
    ),
)


def pod_of(manifest: dict) -> dict:
    spec = manifest["spec"]
    job = spec["jobTemplate"]["spec"] if manifest["kind"] == "CronJob" else spec
    return job["template"]["spec"]


def every_manifest() -> dict[str, dict]:
    """Each kind of object envpack can send to a cluster."""
    gpu = replace(SPEC, gpus=2)
    return {
        "job": make_job(SPEC, OPTIONS),
        "cronjob": make_cronjob(replace(SPEC, schedule="0 6 * * *"), OPTIONS),
        "sweep": make_sweep_job(SPEC, CELLS, 2, OPTIONS),
        "gpu-job": make_job(gpu, GPU_OPTIONS),
        "gpu-sweep": make_sweep_job(gpu, CELLS, 3, GPU_OPTIONS),
        "defaults": make_job(replace(SPEC, cpu=None, memory=None), KubernetesOptions()),
    }


def _both(pod: dict, container: dict, key: str) -> object:
    """A security setting as the container sees it (its own, else the pod's)."""
    return container.get("securityContext", {}).get(key, pod.get("securityContext", {}).get(key))


RESTRICTED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


def restricted_pss_violations(pod: dict) -> list[str]:
    """The rules of the *restricted* Pod Security Standard (baseline included) a pod breaks."""
    bad = [f"host namespace {k}" for k in ("hostNetwork", "hostPID", "hostIPC") if pod.get(k)]
    for volume in pod.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            bad.append(f"volume type {sorted(kinds)}")
    for c in pod.get("initContainers", []) + pod["containers"]:
        ctx = c.get("securityContext", {})
        caps = ctx.get("capabilities", {})
        if ctx.get("privileged"):
            bad.append("privileged")
        if ctx.get("allowPrivilegeEscalation") is not False:
            bad.append("allowPrivilegeEscalation is not false")
        if _both(pod, c, "runAsNonRoot") is not True:
            bad.append("runAsNonRoot is not true")
        if _both(pod, c, "runAsUser") == 0:
            bad.append("runAsUser 0")
        if (_both(pod, c, "seccompProfile") or {}).get("type") not in (
            "RuntimeDefault",
            "Localhost",
        ):
            bad.append("seccompProfile is not RuntimeDefault/Localhost")
        if "ALL" not in caps.get("drop", []):
            bad.append("capabilities do not drop ALL")
        if set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
            bad.append("capabilities added")
        if any(p.get("hostPort") for p in c.get("ports", [])):
            bad.append("hostPort")
    return bad


@pytest.mark.reliability("I4")
@pytest.mark.parametrize("kind", sorted(every_manifest()))
def test_every_manifest_validates_and_meets_the_restricted_pss(kind: str) -> None:
    manifest = every_manifest()[kind]
    validate(manifest)
    pod = pod_of(manifest)
    assert restricted_pss_violations(pod) == []
    assert pod["automountServiceAccountToken"] is False and pod["restartPolicy"] == "Never"


@pytest.mark.parametrize(
    ("path", "value", "rule"),
    [
        (("containers", 0, "securityContext", "allowPrivilegeEscalation"), True, "Escalation"),
        (("containers", 0, "securityContext", "runAsNonRoot"), None, "runAsNonRoot"),
        (("containers", 0, "securityContext", "runAsUser"), 0, "runAsUser 0"),
        (("containers", 0, "securityContext", "capabilities", "drop"), ["NET_RAW"], "drop ALL"),
        (("containers", 0, "securityContext", "capabilities", "add"), ["SYS_ADMIN"], "added"),
        (("containers", 0, "securityContext", "seccompProfile"), {"type": "Unconfined"}, "seccomp"),
        (("containers", 0, "securityContext", "privileged"), True, "privileged"),
        (("hostNetwork",), True, "hostNetwork"),
        (("volumes",), [{"name": "h", "hostPath": {"path": "/"}}], "hostPath"),
    ],
)
def test_the_pss_check_catches_each_rule(path: tuple, value: object, rule: str) -> None:
    """Each restricted-PSS rule, broken on its own in a generated sweep pod, is reported."""
    pod = pod_of(make_sweep_job(SPEC, CELLS, 2, OPTIONS))
    target = pod
    for key in path[:-1]:
        target = target[key]
    if value is None:
        target.pop(path[-1])
        pod["securityContext"].pop(path[-1])
    else:
        target[path[-1]] = value
    assert any(rule in v for v in restricted_pss_violations(pod)), restricted_pss_violations(pod)


@pytest.mark.reliability("I4")
def test_a_sweep_is_one_indexed_job_whose_members_fail_alone() -> None:
    job = make_sweep_job(SPEC, CELLS, 2, OPTIONS)
    body, pod = job["spec"], job["spec"]["template"]["spec"]
    assert (body["completionMode"], body["completions"], body["parallelism"]) == ("Indexed", 6, 2)
    assert body["backoffLimitPerIndex"] == 1 and "backoffLimit" not in body
    assert body["podFailurePolicy"]["rules"][0]["action"] == "FailIndex"
    assert body["podFailurePolicy"]["rules"][1]["action"] == "Ignore"
    assert pod["activeDeadlineSeconds"] == 1800  # each member gets the job's deadline
    assert body["activeDeadlineSeconds"] == 1800 * 3 * 2  # 3 waves, each with one retry
    container = pod["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert "ENVPACK_PARAMETERS_CELL" not in env  # the row is picked in the pod
    assert json.loads(env["ENVPACK_SWEEP_ROWS"]) == CELLS
    assert container["command"][:2] == ["/opt/envpack/runner/bin/python", "-c"]
    assert container["command"][3:] == SPEC.command()
    assert make_sweep_job(SPEC, CELLS[:1], 8, OPTIONS)["spec"]["parallelism"] == 1
    with pytest.raises(InputError):
        make_sweep_job(SPEC, [], 2, OPTIONS)


def test_the_row_picker_runs_the_row_of_its_index(tmp_path: Path) -> None:
    """The picker for real (this Python stands in for the runner's): index 4 → row 4, the
    runner's argv and exit code pass through unchanged."""
    job = make_sweep_job(SPEC, CELLS, 2, OPTIONS)
    command = job["spec"]["template"]["spec"]["containers"][0]["command"]
    probe = tmp_path / "runner.py"
    probe.write_text(
        "import os, sys\nprint(repr(os.environ['ENVPACK_PARAMETERS_CELL']), sys.argv[1:])\n"
        "print('ENVPACK_SWEEP_ROWS' in os.environ)\nsys.exit(3)\n"
    )
    env = {"JOB_COMPLETION_INDEX": "4", "ENVPACK_SWEEP_ROWS": json.dumps(CELLS)}
    done = subprocess.run(
        [sys.executable, "-c", command[2], sys.executable, str(probe), "--emit-result"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 3
    assert done.stdout.splitlines() == [f"{CELLS[4]!r} ['--emit-result']", "False"]


@pytest.mark.reliability("I4")
def test_gpu_jobs_ask_for_nvidia_gpus_on_the_gpu_pool() -> None:
    pod = pod_of(make_job(replace(SPEC, gpus=2), GPU_OPTIONS))
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert pod["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    assert pod["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    plain = pod_of(make_job(SPEC, GPU_OPTIONS))  # no GPUs asked: the GPU pool is not chosen
    assert "nodeSelector" not in plain and "tolerations" not in plain
    assert "nvidia.com/gpu" not in plain["containers"][0]["resources"]["limits"]


@pytest.mark.reliability("I4")
@settings(max_examples=25, deadline=None)
@given(
    cells=st.lists(st.text(max_size=60), min_size=1, max_size=40),
    parallel=st.integers(min_value=-3, max_value=100),
    gpus=st.one_of(st.none(), st.integers(min_value=1, max_value=8)),
)
def test_any_sweep_validates_and_stays_restricted(
    cells: list[str], parallel: int, gpus: int | None
) -> None:
    job = make_sweep_job(replace(SPEC, gpus=gpus), cells, parallel, GPU_OPTIONS)
    validate(job)
    assert restricted_pss_violations(pod_of(job)) == []
    assert 1 <= job["spec"]["parallelism"] <= len(cells) == job["spec"]["completions"]
