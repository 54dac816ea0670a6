"""End to end: submit the notebook as a cluster job from the sidebar's Cluster section.

A real ``jupyter lab`` (conftest.py), Debian's Chromium, the machine's Docker Swarm (CI brings it
up with ``.ci/swarm-up``) and the test registry: the job is built, pushed, run on the swarm, and the
executed notebook comes back into the lab's root, where the section's link opens it.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any

import nbformat
import pytest
from test_ui_sidebar import SIDEBAR, assert_no_envpack_errors, open_notebook, shoot, show_sidebar

pytestmark = [
    pytest.mark.ui,
    pytest.mark.docker,
    pytest.mark.swarm,
    pytest.mark.registry,
    pytest.mark.slow,
]
CLUSTER = f"{SIDEBAR} .jp-Envpack-section-Cluster"
REGISTRY = os.environ.get("ENVPACK_TEST_REGISTRY", "127.0.0.1:5000")
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def test_submit_a_swarm_job_follow_it_and_open_the_fetched_notebook(
    page: Any, lab: Any, docker_client: Any
) -> None:
    swarm = lab.api("envpack/status")["backends"].get("swarm", {})
    if not swarm.get("available"):
        message = f"swarm backend unavailable: {swarm.get('reason')}"
        pytest.fail(message) if IN_CI else pytest.skip(message)
    op_id = None
    try:
        # Given the notebook open, and the Cluster section offering the swarm backend
        open_notebook(page, lab)
        show_sidebar(page)
        page.wait_for_selector(
            f"{CLUSTER} select option[value='swarm']:not([disabled])", state="attached"
        )
        assert page.locator(f"{CLUSTER} select").input_value() == "swarm"

        # When a job is submitted with a registry and a parameter
        page.locator(f"{CLUSTER} .jp-Envpack-registry").fill(REGISTRY)
        page.locator(f"{CLUSTER} textarea").fill("n = 3")
        page.locator(f"{CLUSTER} .jp-Envpack-submitJob").click()

        # Then the section follows the job operation to its end
        view = page.locator(f"{CLUSTER} .jp-Envpack-operation")
        view.and_(page.locator("[data-operation]")).wait_for()
        op_id = view.get_attribute("data-operation")
        page.locator(f"{CLUSTER} .jp-Envpack-operation[data-state='succeeded']").wait_for(
            timeout=300_000
        )
        op = lab.api(f"envpack/operations/{op_id}")
        assert op["kind"] == "job" and op["state"] == "succeeded", op
        assert op["options"]["registry"] == REGISTRY
        assert op["options"]["parameters"] == {"n": 3}
        result = op["result"]
        assert page.locator(f"{CLUSTER} .jp-Envpack-jobId").first.inner_text() == result["job_id"]
        assert page.locator(f"{CLUSTER} [data-operation='{op_id}'].jp-Envpack-job").count() == 1

        # And the executed notebook came back into the root, with the parameter applied
        output = result["output_path"]
        executed = nbformat.read(lab.root / output, as_version=4)
        texts = [o.get("text", "") for c in executed.cells for o in c.get("outputs", [])]
        assert any(json.dumps([0, 1, 4]) in t for t in texts), texts
        shoot(page, "sidebar-cluster.png", CLUSTER)

        # When its link is clicked, it opens in the lab
        page.locator(f"{CLUSTER} .jp-Envpack-result .jp-Envpack-openOutput").click()
        name = output.rsplit("/", 1)[-1]
        page.locator(f".lm-TabBar-tab:has-text('{name}')").first.wait_for()
        assert_no_envpack_errors(page)
    finally:
        if op_id:  # the job's swarm service (the lab fixture removes containers and images)
            label = {"label": f"org.jupyter.envpack.operation={op_id}"}
            for service in docker_client.services.list(filters=label):
                with contextlib.suppress(Exception):
                    service.remove()
