"""End to end: the envpack sidebar and the "Containerise" button in a real JupyterLab + Chromium.

Given a notebook in a fresh ``jupyter lab`` (see conftest.py), the tests open it in Chromium,
check the sidebar's Environment and Dockerfile sections, click "Containerise", reload the page in
the middle of the operation, and wait for the rerun report. Screenshots land in
``tests/ui/artifacts``; with ``ENVPACK_UPDATE_SCREENSHOTS=1`` the report screenshot is also copied
to ``docs/screenshots/sidebar.png``.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.ui, pytest.mark.docker, pytest.mark.slow]

ARTIFACTS = Path(__file__).parent / "artifacts"
SIDEBAR = "#jp-envpack-sidebar"
RUN_OP = f"{SIDEBAR} .jp-Envpack-section-Run .jp-Envpack-operation"
DOCS_SCREENSHOT = Path(__file__).parents[2] / "docs" / "screenshots" / "sidebar.png"


def open_notebook(page: Any, lab: Any, name: str = "demo.ipynb") -> None:
    """Load the lab on a notebook of the root and wait for its toolbar."""
    page.goto(f"{lab.url}lab/tree/{name}?token={lab.token}")
    page.wait_for_selector(".jp-NotebookPanel-toolbar .jp-Envpack-containeriseButton")


def show_sidebar(page: Any) -> None:
    """Open the envpack sidebar from its tab in the left area (unless already open)."""
    tab = page.locator('.lm-TabBar-tab[data-id="jp-envpack-sidebar"]')
    tab.wait_for()
    # activate, never toggle: a click on the tab races a command that reveals the sidebar itself
    # (Containerise does, when its POST returns), and a second activation would collapse it
    page.evaluate("window.jupyterapp.shell.activateById('jp-envpack-sidebar')")
    page.locator(SIDEBAR).wait_for(state="visible")


def shoot(page: Any, name: str, element: str | None = None) -> Path:
    """Save a screenshot (of the page or of one element) into the artifacts folder."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    target = page.locator(element) if element else page
    target.screenshot(path=str(path))
    return path


def test_sidebar_shows_environment_and_dockerfile(page: Any, lab: Any) -> None:
    # Given the example notebook open in JupyterLab
    open_notebook(page, lab)
    button = page.locator(".jp-NotebookPanel-toolbar .jp-Envpack-containeriseButton")
    assert "Containerise" in button.inner_text()

    # When the envpack sidebar is opened
    show_sidebar(page)

    # Then it follows the notebook and shows its environment and Dockerfile
    sidebar = page.locator(SIDEBAR)
    assert "demo.ipynb" in sidebar.locator(".jp-Envpack-notebook").inner_text()
    python = sidebar.locator(".jp-Envpack-python")
    python.wait_for()
    assert python.inner_text().startswith("Python 3.")
    files = sidebar.locator(".jp-Envpack-files")
    assert "Local files (1)" in files.inner_text()
    files.locator("summary").click()
    assert "helpers.py" in files.inner_text()
    dockerfile = sidebar.locator(".jp-Envpack-dockerfile")
    dockerfile.wait_for()
    # The base image comes from the extension's lab setting (schema/plugin.json: baseImage).
    assert "FROM envpack-test/debian-python:bookworm" in dockerfile.inner_text()
    assert sidebar.locator(".jp-Envpack-section-Environment .jp-Envpack-error").count() == 0
    shoot(page, "sidebar-light.png", SIDEBAR)

    # When "Save" is clicked in the Dockerfile section, the file lands beside the notebook
    # (header actions are JupyterLab toolbar buttons in the section's accordion title)
    sidebar.locator(".jp-Envpack-sectionTitle-Dockerfile").get_by_role(
        "button", name="Save"
    ).click()
    sidebar.locator(
        ".jp-Envpack-section-Dockerfile .jp-Envpack-note", has_text="Saved Dockerfile."
    ).wait_for()
    assert (lab.root / "Dockerfile").read_text() == dockerfile.text_content()

    # And it is readable in the dark theme too
    page.evaluate(
        "window.jupyterapp.commands.execute('apputils:change-theme', {theme: 'JupyterLab Dark'})"
    )
    page.wait_for_selector("body[data-jp-theme-light='false']", state="attached")
    page.wait_for_timeout(500)  # let the theme's CSS apply before the screenshot
    shoot(page, "sidebar-dark.png", SIDEBAR)
    page.evaluate(
        "window.jupyterapp.commands.execute('apputils:change-theme', {theme: 'JupyterLab Light'})"
    )
    page.wait_for_selector("body[data-jp-theme-light='true']", state="attached")
    assert_no_envpack_errors(page)


def test_containerise_survives_a_reload_and_shows_the_report(page: Any, lab: Any) -> None:
    # Given the example notebook open in JupyterLab
    open_notebook(page, lab)

    # When "Containerise" is clicked
    page.locator(".jp-NotebookPanel-toolbar .jp-Envpack-containeriseButton").click()

    # Then the sidebar opens on a running operation with a streamed log
    page.locator(SIDEBAR).wait_for(state="visible")
    running = page.locator(f"{RUN_OP}[data-state='running'], {RUN_OP}[data-state='queued']")
    running.first.wait_for(timeout=120_000)
    op_id = page.locator(RUN_OP).get_attribute("data-operation")
    assert op_id

    # When the page is reloaded in the middle of the operation (during the build when possible)
    before = wait_for_build_stage(lab, op_id)
    assert before["state"] in {"queued", "running"}
    (ARTIFACTS / "reload-stage.txt").write_text(f"{before['state']} {before['stage']}\n")
    page.reload()
    page.wait_for_selector(".jp-NotebookPanel-toolbar .jp-Envpack-containeriseButton")
    show_sidebar(page)

    # Then the sidebar reconnects to the same operation, replays its log and follows it to the end
    page.locator(f"{RUN_OP}[data-operation='{op_id}']").wait_for(timeout=60_000)
    page.wait_for_function(
        """sel => { const s = document.querySelector(sel);
                    return s && !/\\(0 lines\\)/.test(s.textContent); }""",
        arg=f"{RUN_OP} .jp-Envpack-log summary",
        timeout=120_000,
    )
    verdict = page.locator(f"{SIDEBAR} .jp-Envpack-verdict")
    verdict.wait_for(timeout=840_000)
    op = lab.api(f"envpack/operations/{op_id}")
    assert op["state"] == "succeeded", (before["stage"], op.get("error"))
    assert verdict.inner_text() == "Reproduced", op["result"]["report"]
    statuses = page.locator(f"{SIDEBAR} .jp-Envpack-cell").evaluate_all(
        "cells => cells.map(c => c.dataset.status)"
    )
    assert statuses == [c["status"] for c in op["result"]["report"]["cells"]]
    assert set(statuses) <= {"same", "skipped"}
    image = page.locator(f"{SIDEBAR} .jp-Envpack-section-Run .jp-Envpack-image")
    assert image.inner_text() == op["result"]["image"]
    history = page.locator(f"{SIDEBAR} .jp-Envpack-historyItem[data-operation='{op_id}']")
    assert "succeeded" in history.inner_text()
    # The polling alternative the client falls back to (past 3 open streams) has the same events
    events = lab.api(f"envpack/operations/{op_id}/events?format=json")
    assert events["done"] is True
    assert all(isinstance(e["seq"], int) and e["type"] for e in events["events"])
    assert events["events"][-1]["type"] == "state"

    # And the screenshot shows the report (the other sections folded away: the accordion gives
    # their height to Run)
    for section in ("Environment", "Dockerfile", "Build", "Sweep", "Share", "Cluster", "History"):
        toggle = page.locator(
            f"{SIDEBAR} .jp-Envpack-sectionTitle-{section} .jp-Envpack-sectionToggle"
        )
        toggle.click()
        assert toggle.get_attribute("aria-expanded") == "false"
        assert page.locator(f"{SIDEBAR} .jp-Envpack-section-{section}").is_hidden()
    page.locator(f"{SIDEBAR} .jp-Envpack-verdict").scroll_into_view_if_needed()
    shoot(page, "sidebar-report.png", SIDEBAR)
    full = shoot(page, "lab-report.png")
    if os.environ.get("ENVPACK_UPDATE_SCREENSHOTS") == "1":
        DOCS_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(full, DOCS_SCREENSHOT)

    # And the link opens the executed notebook
    page.locator(f"{SIDEBAR} .jp-Envpack-openOutput").click()
    page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has_text="demo.envpack.ipynb").wait_for()
    assert_no_envpack_errors(page)


def test_rerun_with_parameters_reports_the_differences(page: Any, lab: Any) -> None:
    # Given the notebook open and the sidebar showing it
    open_notebook(page, lab)
    show_sidebar(page)
    run = page.locator(f"{SIDEBAR} .jp-Envpack-section-Run")

    # When it is rerun with the parameter n = 3 (the saved outputs were made with n = 5)
    op_id = rerun_with(page, lab, "n = 3")

    # Then the report says which cells differ, with their diff
    verdict = run.locator(".jp-Envpack-verdict")
    verdict.wait_for(timeout=840_000)
    op = lab.api(f"envpack/operations/{op_id}")
    assert op["options"]["parameters"] == {"n": 3}
    assert verdict.inner_text() == "Not reproduced"
    differs = run.locator(".jp-Envpack-cell[data-status='differs']")
    assert differs.count() >= 1
    differs.first.locator(".jp-Envpack-diff summary").click()
    assert differs.first.locator(".jp-Envpack-cellDiff pre").inner_text().strip()
    assert differs.first.locator(".jp-Envpack-cellSource pre").inner_text().strip()
    shoot(page, "sidebar-differs.png", SIDEBAR)
    assert_no_envpack_errors(page)


def test_cancel_stops_a_running_rerun(page: Any, lab: Any) -> None:
    # Given a rerun of the notebook in progress (its third cell sleeps for 6 s)
    open_notebook(page, lab)
    show_sidebar(page)
    op_id = rerun_with(page, lab, "n = 4")
    view = page.locator(f"{RUN_OP}[data-operation='{op_id}']")
    page.locator(f"{RUN_OP}[data-operation='{op_id}'][data-state='running']").wait_for(
        timeout=120_000
    )

    # When Cancel is clicked (a DELETE sent by the browser, with its XSRF header)
    view.locator(".jp-Envpack-cancel").click()

    # Then the operation ends cancelled, on the server and in the sidebar, without a report
    page.locator(f"{RUN_OP}[data-operation='{op_id}'][data-state='cancelled']").wait_for(
        timeout=120_000
    )
    assert lab.api(f"envpack/operations/{op_id}")["state"] == "cancelled"
    assert view.locator(".jp-Envpack-cancel").is_hidden()
    assert page.locator(f"{SIDEBAR} .jp-Envpack-section-Run .jp-Envpack-verdict").count() == 0
    assert_no_envpack_errors(page)


def test_environment_lists_unresolved_imports_with_their_fix(page: Any, lab: Any) -> None:
    # Given a notebook that imports sklearn, which the kernel does not have
    open_notebook(page, lab, "markup.ipynb")

    # When the sidebar shows its environment
    show_sidebar(page)
    warning = page.locator(f"{SIDEBAR} .jp-Envpack-warning[data-code='unresolved-import']")
    warning.wait_for()

    # Then the warning names the module, the cell, and the distribution to install
    text = warning.inner_text()
    assert "'sklearn'" in text
    assert "cell 1" in text
    assert "Fix: install it in the kernel: %pip install scikit-learn" in text


@pytest.mark.reliability("A7")
def test_html_in_outputs_is_shown_as_text(page: Any, lab: Any) -> None:
    # Given a notebook whose saved output is "<img onerror=...><script>...</script>" made with n = 5
    open_notebook(page, lab, "markup.ipynb")
    show_sidebar(page)
    run = page.locator(f"{SIDEBAR} .jp-Envpack-section-Run")
    page.locator(f"{SIDEBAR} .jp-Envpack-notebook", has_text="markup.ipynb").wait_for()

    # When it is rerun with n = 3 and the diff of the changed cell is opened
    op_id = rerun_with(page, lab, "n = 3")
    run.locator(".jp-Envpack-verdict").wait_for(timeout=840_000)
    changed = run.locator(".jp-Envpack-cell[data-status='differs']").last
    changed.locator(".jp-Envpack-diff summary").click()

    # Then the markup is text in the page, and nothing in it was parsed or executed
    diff = changed.locator(".jp-Envpack-cellDiff pre").inner_text()
    assert "<img src=x onerror='window.__pwned=3'>" in diff
    assert page.locator(f"{SIDEBAR} img, {SIDEBAR} script").count() == 0
    assert page.evaluate("window.__pwned") is None
    assert lab.api(f"envpack/operations/{op_id}")["state"] == "succeeded"


def test_an_unreachable_docker_engine_is_a_readable_message(
    page: Any, dead_engine_lab: Any
) -> None:
    # Given a JupyterLab whose Docker engine does not answer
    open_notebook(page, dead_engine_lab)

    # When the sidebar is opened
    show_sidebar(page)
    sidebar = page.locator(SIDEBAR)
    heading = sidebar.locator(".jp-Envpack-heading .jp-Envpack-error")
    heading.wait_for()

    # Then the header says so in words, without a traceback
    message = heading.inner_text()
    assert message.startswith("Docker engine not reachable"), message
    assert "Traceback" not in message
    # Build, Run and Containerise are disabled and say why; the Share section explains that
    # snapshot, Dockerfile and Binder still work
    build = sidebar.locator(".jp-Envpack-buildButton")
    page.wait_for_function("document.querySelector('.jp-Envpack-buildButton').disabled")
    assert "Docker engine is not reachable" in (build.get_attribute("title") or "")
    assert sidebar.locator(".jp-Envpack-runButton").is_disabled()
    page.wait_for_selector(
        ".jp-NotebookPanel-toolbar .jp-Envpack-containeriseButton "
        "button[disabled], .jp-NotebookPanel-toolbar "
        ".jp-Envpack-containeriseButton[aria-disabled='true']",
        state="attached",
    )
    notice = sidebar.locator(".jp-Envpack-section-Share .jp-Envpack-engineNotice")
    notice.wait_for()
    assert "Snapshot, Dockerfile and Binder still work" in notice.inner_text()
    shoot(page, "sidebar-engine-down.png", SIDEBAR)
    assert_no_envpack_errors(page)


def rerun_with(page: Any, lab: Any, parameters: str) -> str:
    """Click "Rerun in container" with parameters; return the id of the operation it started.

    Waits until the Run section shows an operation the server did not have before the click (the
    history of earlier tests may still be loading into the section when the click happens).
    """
    known = [op["id"] for op in lab.api("envpack/operations")["operations"]]
    run = page.locator(f"{SIDEBAR} .jp-Envpack-section-Run")
    run.locator("textarea").fill(parameters)
    run.locator(".jp-Envpack-runButton").click()
    page.wait_for_function(
        "([sel, known]) => { const n = document.querySelector(sel);"
        " return n && n.dataset.operation && !known.includes(n.dataset.operation); }",
        arg=[f"{SIDEBAR} .jp-Envpack-section-Run .jp-Envpack-operation", known],
    )
    return str(run.locator(".jp-Envpack-operation").get_attribute("data-operation"))


def wait_for_build_stage(lab: Any, op_id: str, timeout: float = 120.0) -> dict[str, Any]:
    """Poll the operation until it leaves the snapshot stage; return it (maybe already done)."""
    deadline = time.monotonic() + timeout
    while True:
        op: dict[str, Any] = lab.api(f"envpack/operations/{op_id}")
        if op["stage"] not in (None, "snapshot") or time.monotonic() > deadline:
            return op
        time.sleep(0.1)


def assert_no_envpack_errors(page: Any) -> None:
    """No uncaught error of the extension reached the browser console."""
    ours = [e for e in page.console_errors if "envpack" in e.lower()]
    assert ours == []
