"""End to end: the report's source and guessed reason, copy buttons, the fresh-environment rerun
without Docker (issue 13.1) and a parameter sweep from the sidebar (issue 14), in Chromium."""

from __future__ import annotations

from typing import Any

import pytest
from test_ui_issue12 import START_FAILED, open_notebook, rerun, write_notebook
from test_ui_sidebar import SIDEBAR, assert_no_envpack_errors, shoot, show_sidebar

pytestmark = [pytest.mark.ui, pytest.mark.docker, pytest.mark.slow]

RUN = f"{SIDEBAR} .jp-Envpack-section-Run"
SWEEP = f"{SIDEBAR} .jp-Envpack-section-Sweep"
# A parameter, an unseeded random draw (differs on every run) and a value of the parameter.
CELLS = ["seed = 0", "import random\nprint(random.random())", "print(seed * 10)"]


def _tagged(lab: Any, name: str) -> None:
    """Write ``name`` (executed here first) with its first cell tagged ``parameters``."""
    import nbformat

    write_notebook(lab.root, name, CELLS, execute=True)
    nb = nbformat.read(lab.root / name, as_version=4)
    nb.cells[0].metadata["tags"] = ["parameters"]
    nbformat.write(nb, lab.root / name)


def _open(page: Any, lab: Any, name: str) -> None:
    open_notebook(page, lab, name)
    show_sidebar(page)
    page.locator(f"{SIDEBAR} .jp-Envpack-notebook", has_text=name).wait_for()


def shown_text(cell: Any, selector: str) -> str:
    """The text of ``selector`` inside the cell's ``<details>``, opened. The report may be rendered
    once more as the run's last events arrive (a fresh, closed element, whose text Chromium does not
    render), so open it again until the text shows."""
    details = cell.locator(".jp-Envpack-diff")
    for _ in range(10):
        if details.get_attribute("open") is None:
            details.locator("summary").click()
        text = str(cell.locator(selector).inner_text())
        if text:
            return text
        cell.page.wait_for_timeout(300)
    return ""


def test_a_differing_cell_shows_its_source_and_reason_and_values_copy(page: Any, lab: Any) -> None:
    # Given a notebook whose second cell prints an unseeded random number, rerun in its image
    _tagged(lab, "random.ipynb")
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=lab.url[:-1])
    _open(page, lab, "random.ipynb")
    assert rerun(page).inner_text() == "Not reproduced"
    run = page.locator(RUN)

    # Then the differing cell names the likely reason and shows its source beside its diff
    cell = run.locator(".jp-Envpack-cell[data-status='differs']")
    assert cell.count() == 1
    reason = cell.locator(".jp-Envpack-reason")
    assert reason.get_attribute("data-reason") == "unseeded-random"
    assert "without a seed" in reason.inner_text()
    assert shown_text(cell, ".jp-Envpack-cellSource pre") == CELLS[1]
    assert shown_text(cell, ".jp-Envpack-cellDiff pre").startswith("--- original")
    shoot(page, "report-source-reason.png", SIDEBAR)

    # When the image tag's copy button is clicked
    tag = run.locator(".jp-Envpack-image").first.get_attribute("title")
    copy = run.get_by_role("button", name="Copy image tag").first
    copy.click()

    # Then the full tag is on the clipboard and the button says "Copied"
    page.wait_for_function(
        "sel => document.querySelector(sel).textContent === 'Copied'",
        arg=f"{RUN} .jp-Envpack-copy[aria-label='Copy image tag']",
    )
    assert page.evaluate("navigator.clipboard.readText()") == tag
    # And so is the executed notebook's path
    run.get_by_role("button", name="Copy executed notebook path").click()
    page.wait_for_function("async () => (await navigator.clipboard.readText()).endsWith('.ipynb')")
    assert page.evaluate("navigator.clipboard.readText()") == "random.envpack.ipynb"
    assert_no_envpack_errors(page)


def test_a_sweep_from_the_sidebar_shows_one_row_per_member(page: Any, lab: Any) -> None:
    # Given a notebook with a parameter, open with the sidebar's Sweep section
    _tagged(lab, "swept.ipynb")
    _open(page, lab, "swept.ipynb")
    sweep = page.locator(SWEEP)
    sweep.scroll_into_view_if_needed()

    # When a two-member sweep is started, both at once
    sweep.get_by_label('Sweep values, one "name = v1,v2" or "name = 1..3" per line').fill(
        "seed = 4..5"
    )
    sweep.get_by_label("Runs at once").fill("2")
    sweep.locator(".jp-Envpack-sweepButton").click()

    # Then the section shows one row per member with its parameters, verdict and notebook
    rows = sweep.locator(".jp-Envpack-sweepRun")
    ended = sweep.locator(
        ".jp-Envpack-sweepRun, .jp-Envpack-operation[data-state='failed'] .jp-Envpack-error, "
        + START_FAILED
    )
    ended.first.wait_for(timeout=840_000)
    assert rows.count() == 2, sweep.inner_text()
    params = [rows.nth(i).locator(".jp-Envpack-sweepParams").inner_text() for i in range(2)]
    assert params == ["seed=4", "seed=5"]
    # (the random cell differs in every member: none reproduces, both ran to the end)
    assert [rows.nth(i).get_attribute("data-verdict") for i in range(2)] == ["not-reproduced"] * 2
    assert [rows.nth(i).get_attribute("data-state") for i in range(2)] == ["succeeded"] * 2
    shoot(page, "sidebar-sweep.png", SIDEBAR)

    # And each member's executed notebook holds its own parameter's output
    import nbformat

    for seed in (4, 5):
        [path] = (lab.root / "swept.sweep").glob(f"swept.sweep-*-seed={seed}.ipynb")
        executed = nbformat.read(path, as_version=4)
        assert executed.cells[-1].outputs[0]["text"] == f"{seed * 10}\n"

    # When a member's "Open" link is clicked, its notebook opens
    rows.nth(1).get_by_role("link").click()
    page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has_text="seed=5").wait_for()
    # The Run section does not show the sweep as its own run
    assert page.locator(RUN).locator(".jp-Envpack-sweepRun").count() == 0
    assert_no_envpack_errors(page)


def test_without_docker_the_notebook_reruns_in_a_fresh_environment(
    page: Any, dead_engine_lab: Any
) -> None:
    # Given a lab whose Docker engine does not answer, where a virtualenv can be made
    lab = dead_engine_lab
    assert lab.api("envpack/status")["venv_available"] is True
    _tagged(lab, "novm.ipynb")
    _open(page, lab, "novm.ipynb")
    run = page.locator(RUN)
    fresh = run.get_by_role("button", name="Rerun in a fresh environment")
    fresh.wait_for()
    assert run.locator(".jp-Envpack-runButton").is_disabled()

    # When "Rerun in a fresh environment" is clicked
    fresh.click()

    # Then the notebook reruns in a virtualenv and the report comes back (engine venv)
    ended = run.locator(
        ".jp-Envpack-verdict, .jp-Envpack-operation[data-state='failed'] .jp-Envpack-error, "
        + START_FAILED
    )
    ended.first.wait_for(timeout=840_000)
    assert run.locator(".jp-Envpack-verdict").count() == 1, ended.first.inner_text()
    ops = lab.api("envpack/operations")["operations"]
    venv_runs = [op for op in ops if op["path"] == "novm.ipynb"]
    assert venv_runs[0]["options"]["engine"] == "venv"
    assert venv_runs[0]["result"]["report"]["engine"] == "venv"
    statuses = [c.get_attribute("data-status") for c in run.locator(".jp-Envpack-cell").all()]
    assert statuses == ["same", "differs", "same"]
    shoot(page, "sidebar-fresh-environment.png", SIDEBAR)
    assert_no_envpack_errors(page)
