"""End to end: the wrong or misleading results of issue 12, each as a user met it in Chromium.

12.1 run parameters silently overridden by an untagged ``# parameters`` cell; 12.2 "Reproduced"
when nothing was compared; 12.3 the Containerise button disabled on the first notebook opened;
12.4 a cancel shown as a red error with a stale stage, "0 lines" of log after a reload, and the
executed notebook switching the sidebar away from the report.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nbformat
import pytest
from test_ui_sidebar import SIDEBAR, assert_no_envpack_errors, shoot, show_sidebar

pytestmark = [pytest.mark.ui, pytest.mark.docker, pytest.mark.slow]

RUN = f"{SIDEBAR} .jp-Envpack-section-Run"
TOOLBAR_BUTTON = ".jp-NotebookPanel-toolbar .jp-Envpack-containeriseButton"
# The start request itself failed (e.g. Chromium aborted it, net::ERR_NETWORK_CHANGED): say so
# at once instead of waiting for a verdict that never comes.
START_FAILED = ".jp-Envpack-sectionBody > .jp-Envpack-error:not([hidden])"


def write_notebook(root: Path, name: str, cells: list[str], execute: bool) -> None:
    """A stdlib-only notebook with no tagged cell, executed here first when ``execute``."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(src) for src in cells])
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3 (ipykernel)",  # as JupyterLab saves it: opening changes nothing
        "language": "python",
    }
    if execute:
        from nbclient import NotebookClient

        NotebookClient(nb, timeout=120, resources={"metadata": {"path": str(root)}}).execute()
    nbformat.write(nb, root / name)


def load(page: Any, url: str | None = None) -> None:
    """Load (or reload) the lab and wait for the notebook toolbar.

    Docker adds and removes network interfaces as other containers come and go on this shared
    machine; Chromium then aborts requests in flight (``net::ERR_NETWORK_CHANGED``) and JupyterLab
    shows "File Load Error". Such a load is retried (twice at most).
    """
    failed = page.locator(".jp-Dialog", has_text="File Load Error")
    for _ in range(3):
        page.goto(url) if url else page.reload()
        page.locator(f"{TOOLBAR_BUTTON}, .jp-Dialog").first.wait_for()
        page.wait_for_timeout(1000)
        if failed.count() == 0:
            page.wait_for_selector(TOOLBAR_BUTTON)
            return
    pytest.fail("JupyterLab could not load the notebook three times (see the console log)")


def open_notebook(page: Any, lab: Any, name: str) -> None:
    """Load the lab on one notebook only (``reset``: the earlier tests' tabs are not restored)."""
    load(page, f"{lab.url}lab/tree/{name}?reset&token={lab.token}")


def rerun(page: Any, parameters: str = "") -> Any:
    """Click "Rerun in container" (with parameters) and wait for the verdict."""
    run = page.locator(RUN)
    run.locator("textarea").fill(parameters)
    run.locator(".jp-Envpack-runButton").click()
    verdict = run.locator(".jp-Envpack-verdict")
    ended = run.locator(
        ".jp-Envpack-verdict, .jp-Envpack-operation[data-state='failed'] .jp-Envpack-error, "
        + START_FAILED
    )
    ended.first.wait_for(timeout=840_000)
    assert verdict.count() == 1, ended.first.inner_text()  # a failed build says why
    return verdict


def test_containerise_is_enabled_on_the_first_notebook_opened(page: Any, lab: Any) -> None:
    # Given a lab loaded with no notebook open, whose status check has come back
    page.goto(f"{lab.url}lab?reset&token={lab.token}")
    page.wait_for_function("window.jupyterapp")
    page.evaluate("async () => { await window.jupyterapp.restored; }")
    page.wait_for_load_state("networkidle")

    # When the first notebook is opened
    page.evaluate("window.jupyterapp.commands.execute('docmanager:open', {path: 'demo.ipynb'})")
    button = page.locator(TOOLBAR_BUTTON)
    button.wait_for()

    # Then its Containerise button is enabled (it stayed disabled: created before it was current)
    page.wait_for_function(
        "sel => document.querySelector(sel).getAttribute('aria-disabled') !== 'true'",
        arg=TOOLBAR_BUTTON,
        timeout=10_000,
    )
    assert_no_envpack_errors(page)


def test_a_never_executed_notebook_has_nothing_to_compare(page: Any, lab: Any) -> None:
    # Given a notebook whose cells were never run
    write_notebook(lab.root, "fresh.ipynb", ["x = 6 * 7", "print(x)"], execute=False)
    open_notebook(page, lab, "fresh.ipynb")
    show_sidebar(page)
    page.locator(f"{SIDEBAR} .jp-Envpack-notebook", has_text="fresh.ipynb").wait_for()

    # When it is rerun in its container
    verdict = rerun(page)

    # Then the verdict is a neutral "Nothing to compare", not a green "Reproduced"
    assert verdict.inner_text() == "Nothing to compare"
    assert "jp-mod-neutral" in (verdict.get_attribute("class") or "")
    assert "No code cell of the notebook had been executed" in page.locator(RUN).inner_text()
    assert_no_envpack_errors(page)


@pytest.mark.reliability("H7")
def test_an_overridden_parameter_is_named_and_the_cell_can_be_tagged(page: Any, lab: Any) -> None:
    # Given a notebook whose "# parameters" cell is not tagged, run here with n = 5
    write_notebook(lab.root, "untagged.ipynb", ["# parameters\nn = 5", "print(n * 2)"], True)
    open_notebook(page, lab, "untagged.ipynb")
    show_sidebar(page)
    page.locator(f"{SIDEBAR} .jp-Envpack-notebook", has_text="untagged.ipynb").wait_for()

    # When it is rerun with n = 3
    rerun(page, "n = 3")
    run = page.locator(RUN)

    # Then the report shows the parameters used and names the cell that overrode them
    assert "n = 3" in run.locator(".jp-Envpack-usedParameters").inner_text()
    warning = run.locator(".jp-Envpack-warning[data-code='parameters-overridden']")
    assert warning.inner_text().startswith("cell 1 assigns n after the injected parameters")
    shoot(page, "issue12-parameters-warning.png", SIDEBAR)

    # When the page is reloaded after the run ended (12.4), the log is replayed, not "0 lines"
    load(page)
    show_sidebar(page)
    summary = run.locator(".jp-Envpack-operation .jp-Envpack-log summary")
    page.wait_for_function(
        "sel => /Log \\([1-9]\\d* lines?\\)/.test(document.querySelector(sel)?.textContent ?? '')",
        arg=f"{RUN} .jp-Envpack-operation .jp-Envpack-log summary",
        timeout=30_000,
    )
    assert summary.inner_text() != "Log (0 lines)"

    # When the executed notebook is opened from the report (12.4)
    run.locator(".jp-Envpack-openOutput").click()
    tab = page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has_text="untagged.envpack.ipynb")
    tab.wait_for()
    page.wait_for_timeout(1500)

    # Then the sidebar still shows the report of untagged.ipynb, and the copy opens unmodified
    assert page.locator(f"{SIDEBAR} .jp-Envpack-notebook").inner_text() == "untagged.ipynb"
    assert run.locator(".jp-Envpack-verdict").is_visible()
    assert "jp-mod-dirty" not in (tab.get_attribute("class") or "")

    # When "Tag cell 1 as parameters" is clicked
    run.locator(".jp-Envpack-tagParameters").click()
    run.locator(".jp-Envpack-tagParameters", has_text="rerun").wait_for()

    # Then the saved notebook has the tag on that cell
    saved = json.loads((lab.root / "untagged.ipynb").read_text())
    assert "parameters" in saved["cells"][0]["metadata"].get("tags", [])
    assert_no_envpack_errors(page)


def test_a_cancel_is_a_neutral_outcome_without_a_stale_stage(page: Any, lab: Any) -> None:
    # Given a rerun of a new notebook, cancelled while it is building
    write_notebook(lab.root, "cancel.ipynb", ["import time\ntime.sleep(30)"], execute=True)
    open_notebook(page, lab, "cancel.ipynb")
    show_sidebar(page)
    page.locator(f"{SIDEBAR} .jp-Envpack-notebook", has_text="cancel.ipynb").wait_for()
    run = page.locator(RUN)
    run.locator(".jp-Envpack-runButton").click()
    running = run.locator(".jp-Envpack-operation[data-state='running']")
    running.wait_for(timeout=120_000)
    run.locator(".jp-Envpack-stage:not(:empty)").wait_for(timeout=120_000)
    run.locator(".jp-Envpack-cancel").click()

    # Then it ends cancelled: no red error, no stage left over, a neutral note
    run.locator(".jp-Envpack-operation[data-state='cancelled']").wait_for(timeout=120_000)
    assert run.locator(".jp-Envpack-operation > .jp-Envpack-error").is_hidden()
    assert run.locator(".jp-Envpack-stage").inner_text() == ""
    assert run.locator(".jp-Envpack-ended").inner_text().startswith("Cancelled")
    assert_no_envpack_errors(page)
