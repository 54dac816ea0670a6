"""A Kubernetes sweep (one Indexed Job) through the CLI against the scripted API server."""

from __future__ import annotations

import json
import re
from typing import Any

import kubernetes_validate
import pytest
from k8s_fake import (  # the scripted API server and its objects
    JOBS,
    NS,
    PODS,
    api_server,
    fake,
    job_obj,
    member_pod,
    pod_list,
    result_log,
    write_kubeconfig,
)
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

pytestmark = pytest.mark.k8s_fake
__all__ = ["api_server", "fake"]  # fixtures, used by name


@pytest.mark.reliability("I4")
def test_cli_sweep_is_one_indexed_job_followed_per_index(
    fake: HTTPServer,
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`submit --sweep --wait` over HTTP: one Indexed Job is created (valid 1.30), members are
    followed by completion index, member 1 fails alone (the others finish), each member's
    notebook comes from its own pod's log and summary.csv has one row per member."""
    from jupyter_envpack.cli import main

    monkeypatch.setenv("ENVPACK_JOBS_DB", str(tmp_path / "jobs.sqlite"))
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(tmp_path / "no-config"))
    kubeconfig = write_kubeconfig(tmp_path, fake)
    nb = tmp_path / "analysis.ipynb"
    nb.write_text(json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": []}))
    created: list[dict[str, Any]] = []
    reads = []

    def create(request: Request) -> Response:
        created.append(json.loads(request.get_data()))
        return Response(json.dumps(created[0]), 201, content_type="application/json")

    def read(request: Request) -> Response:
        reads.append(request.path)
        job = job_obj(rv=str(len(reads)))
        job["metadata"]["name"] = created[0]["metadata"]["name"]
        done = len(reads) > 1
        job["status"] = {"completedIndexes": "0,2" if done else "0", "failedIndexes": "1"}
        if done:
            job["status"]["conditions"] = [
                {"type": "Failed", "status": "True", "reason": "FailedIndexes", "message": "1"}
            ]
        return Response(json.dumps(job), 200, content_type="application/json")

    pods = [
        member_pod("m0", 0, "Succeeded", 0),
        member_pod("m1", 1, "Failed", 3),
        member_pod("m2", 2, "Running"),
    ]

    def listed(request: Request) -> Response:
        if len(reads) > 1:
            pods[2] = member_pod("m2", 2, "Succeeded", 0)
        return Response(json.dumps(pod_list(*pods)), 200, content_type="application/json")

    watches: list[dict[str, str]] = []

    def watch(request: Request) -> Response:  # between two reads: one change of the Job
        watches.append(dict(request.args))
        event = {"type": "MODIFIED", "object": job_obj(rv="7")}
        return Response(json.dumps(event) + "\n", 200, content_type="application/json")

    fake.expect_request(JOBS, method="POST").respond_with_handler(create)
    fake.expect_request(JOBS, method="GET").respond_with_handler(watch)
    fake.expect_request(re.compile(f"{JOBS}/[a-z0-9-]+$"), method="GET").respond_with_handler(read)
    fake.expect_request(PODS, method="GET").respond_with_handler(listed)
    fake.expect_request(f"{PODS}/m0/log").respond_with_data(result_log({"accuracy": 0.9}))
    fake.expect_request(f"{PODS}/m1/log").respond_with_data("Traceback: ZeroDivisionError\n")
    fake.expect_request(f"{PODS}/m2/log").respond_with_data(result_log({"accuracy": 0.7}))
    out = tmp_path / "sweep"
    argv = ["submit", "-q", str(nb), "--backend", "kubernetes", "--namespace", NS]
    argv += ["--kubeconfig", str(kubeconfig), "--image", "127.0.0.1:5000/envpack/analysis:1"]
    argv += ["--registry", "127.0.0.1:5000", "--sweep", "alpha=0.1,0.2,0.5", "--max-parallel", "2"]
    assert main([*argv, "--wait", "--output", str(out)]) == 1  # one member failed

    (job,) = created
    kubernetes_validate.validate(job, "1.30.0", strict=True)
    assert (job["spec"]["completions"], job["spec"]["parallelism"]) == (3, 2)
    assert len(reads) == 2  # followed until every index was over
    (watched,) = watches  # a watch on the Job, not a sleep, between the two reads
    assert watched["fieldSelector"] == f"metadata.name={job['metadata']['name']}"
    assert watched["watch"] == "true"
    summary = (out / "summary.csv").read_text().splitlines()
    assert summary[0] == "index,alpha,state,duration_s,accuracy,notebook,message"
    assert summary[1].startswith("0,0.1,succeeded,10.0,0.9,")
    assert summary[2].startswith("1,0.2,failed,10.0,,,a cell raised an exception; no executed")
    assert summary[3].startswith("2,0.5,succeeded,10.0,0.7,")
    assert sorted(p.name for p in out.glob("*.ipynb")) == [
        "analysis.sweep-00-alpha=0.1.ipynb",
        "analysis.sweep-02-alpha=0.5.ipynb",
    ]
    capsys.readouterr()

    # `jobs` lists the sweep as one row with its members' counts; --members expands it
    assert main(["jobs", "--json"]) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert (listed["state"], listed["message"]) == ("failed", "2 succeeded, 1 failed")
    assert listed["sweep"] == {"members": 3}
    assert listed["handle"] == f"{NS}/job/{job['metadata']['name']}"
    assert main(["jobs", "--members", "--json"]) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    members = [(m["state"], m["reason"]) for m in listed["sweep"]["member_states"]]
    assert members == [
        ("succeeded", "completed"),
        ("failed", "cell-error"),
        ("succeeded", "completed"),
    ]
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["jobs", "--members"]) == 0
    table = capsys.readouterr().out
    assert "analysis.ipynb (sweep of 3)" in table and "2 succeeded, 1 failed" in table
    assert "#1 " in table and "a cell raised an exception" in table


def test_cli_sweep_without_wait_is_indexed_and_one_cancel_stops_all(
    fake: HTTPServer,
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from jupyter_envpack.cli import main

    monkeypatch.setenv("ENVPACK_JOBS_DB", str(tmp_path / "jobs.sqlite"))
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(tmp_path / "no-config"))
    nb = tmp_path / "analysis.ipynb"
    nb.write_text(json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": []}))
    created: list[dict[str, Any]] = []
    deleted: list[dict[str, Any]] = []

    def create(request: Request) -> Response:
        created.append(json.loads(request.get_data()))
        return Response(json.dumps(created[0]), 201, content_type="application/json")

    def delete(request: Request) -> Response:
        deleted.append({"path": request.path, **json.loads(request.get_data())})
        return Response(json.dumps({"kind": "Status"}), 200, content_type="application/json")

    running = job_obj()
    running["status"] = {"completedIndexes": "1", "active": 3}
    pods = pod_list(member_pod("m0", 0, "Running"), member_pod("m1", 1, "Succeeded", 0))
    fake.expect_request(JOBS, method="POST").respond_with_handler(create)
    fake.expect_request(re.compile(f"{JOBS}/.+"), method="GET").respond_with_json(running)
    fake.expect_request(PODS, method="GET").respond_with_json(pods)
    fake.expect_request(re.compile(f"{JOBS}/.+"), method="DELETE").respond_with_handler(delete)
    argv = ["submit", "-q", str(nb), "--backend", "kubernetes", "--namespace", NS]
    argv += ["--kubeconfig", str(write_kubeconfig(tmp_path, fake)), "--sweep", "seed=1..4"]
    assert main([*argv, "--image", "127.0.0.1:5000/envpack/analysis:1"]) == 0
    sweep_id = capsys.readouterr().out.strip()
    assert main(["jobs", "--json"]) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert (listed["id"], listed["state"]) == (sweep_id, "running")
    assert listed["message"] == "1 running, 2 queued, 1 succeeded"
    fake.expect_request(f"{PODS}/m1/log").respond_with_data(result_log({"accuracy": 1}))
    assert main(["logs", sweep_id, "--member", "1"]) == 0  # that member's own pod
    assert "[the executed notebook: 1 lines" in capsys.readouterr().out
    assert main(["logs", sweep_id]) == 2 and "--member N" in capsys.readouterr().err
    assert main(["fetch", sweep_id]) == 2 and "is a sweep" in capsys.readouterr().err
    assert main(["cancel", sweep_id]) == 0
    assert capsys.readouterr().out.strip() == f"{sweep_id} cancelled"
    (gone,) = deleted  # the one Indexed Job: every member stops with it
    assert gone["path"] == f"{JOBS}/{created[0]['metadata']['name']}"
    assert gone["propagationPolicy"] == "Foreground"
