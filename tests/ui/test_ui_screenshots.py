"""Every sidebar section in the light and dark themes at 250 px and 480 px, checked with axe-core.

The screenshots land in ``tests/ui/artifacts/screenshots``; ``docs/screenshots/update.sh`` runs
this module with ``ENVPACK_UPDATE_SCREENSHOTS=1`` to copy them into ``docs/screenshots`` (issue
12.10). axe-core (``node_modules/axe-core``, a dev dependency of the labextension) must find no
serious or critical WCAG 2 A/AA violation in the sidebar, in either theme (issue 12.8, 12.9).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from test_ui_issue12 import open_notebook
from test_ui_sidebar import SIDEBAR, assert_no_envpack_errors, show_sidebar

pytestmark = [pytest.mark.ui, pytest.mark.docker, pytest.mark.slow]

REPO = Path(__file__).parents[2]
AXE = REPO / "node_modules" / "axe-core" / "axe.min.js"
SHOTS = Path(__file__).parent / "artifacts" / "screenshots"
DOCS = REPO / "docs" / "screenshots"
SECTIONS = ["Environment", "Dockerfile", "Build", "Run", "Sweep", "Cluster", "History", "Share"]
THEMES = {"light": "JupyterLab Light", "dark": "JupyterLab Dark"}
WIDTHS = [250, 480]


def set_sidebar_width(page: Any, width: int) -> None:
    """Resize the left area like dragging its handle (the shell's split panel)."""
    page.evaluate(
        """width => { const split = window.jupyterapp.shell._hsplitPanel;
                      const total = split.node.getBoundingClientRect().width;
                      const [, , right] = split.relativeSizes();
                      split.setRelativeSizes([width / total, 1 - width / total - right, right]); }""",
        width,
    )
    page.wait_for_timeout(300)


def set_theme(page: Any, theme: str) -> None:
    """Switch JupyterLab's theme and wait until it applied."""
    page.evaluate(
        f"window.jupyterapp.commands.execute('apputils:change-theme', {{theme: '{theme}'}})"
    )
    light = "true" if "Light" in theme else "false"
    page.wait_for_selector(f"body[data-jp-theme-light='{light}']", state="attached")
    page.wait_for_timeout(800)


def expand_only(page: Any, section: str | None) -> None:
    """Fold every section but ``section`` (``None``: unfold all) with their title toggles."""
    for other in SECTIONS:
        toggle = page.locator(
            f"{SIDEBAR} .jp-Envpack-sectionTitle-{other} .jp-Envpack-sectionToggle"
        )
        wanted = "true" if section in (None, other) else "false"
        if toggle.get_attribute("aria-expanded") != wanted:
            toggle.click()
        assert toggle.get_attribute("aria-expanded") == wanted
    page.wait_for_timeout(200)


WIDE_ELEMENTS = """sel => {
  const root = document.querySelector(sel);
  const sections = root.querySelector('.jp-Envpack-sections');
  const limit = root.getBoundingClientRect().right + 1;
  const shown = [...root.querySelectorAll('*')].filter(n => n.offsetParent !== null);
  const clipped = n => {
    for (let p = n.parentElement; p && p !== sections && p !== root; p = p.parentElement) {
      if (getComputedStyle(p).overflowX !== 'visible') { return true; }
    }
    return false;
  };
  const sideways = shown.filter(n => ['auto', 'scroll'].includes(getComputedStyle(n).overflowX)
                                     && n !== sections && n.scrollWidth > n.clientWidth + 1);
  const out = shown.filter(n => n.getBoundingClientRect().right > limit && !clipped(n));
  return [...sideways, ...out].map(n => n.className).slice(0, 5);
}"""


def axe_violations(page: Any) -> list[str]:
    """Serious and critical WCAG 2 A/AA violations inside the sidebar, one line each."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE))
    found = page.evaluate(
        """async sel => (await axe.run(sel, {runOnly: ['wcag2a', 'wcag2aa']})).violations
             .filter(v => ['serious', 'critical'].includes(v.impact))
             .flatMap(v => v.nodes.map(n => `${v.id}: ${n.target.join(' ')} ${n.failureSummary}`))""",
        SIDEBAR,
    )
    return [str(line) for line in found]


def test_every_section_in_both_themes_and_widths(page: Any, lab: Any) -> None:
    # Given the example notebook containerised (so Build, Run and History have content)
    assert AXE.exists(), "run `jlpm install` (axe-core is a dev dependency)"
    open_notebook(page, lab, "demo.ipynb")
    page.locator(".jp-NotebookPanel-toolbar .jp-Envpack-containeriseButton").click()
    show_sidebar(page)
    page.locator(f"{SIDEBAR} .jp-Envpack-verdict").wait_for(timeout=840_000)
    page.locator(f"{SIDEBAR} .jp-Envpack-dockerfile").wait_for()
    SHOTS.mkdir(parents=True, exist_ok=True)

    problems: dict[str, list[str]] = {}
    for name, theme in THEMES.items():
        set_theme(page, theme)
        # Then axe-core finds no serious violation in this theme
        problems[name] = axe_violations(page)
        for width in WIDTHS:
            set_sidebar_width(page, width)
            box = page.locator(SIDEBAR).bounding_box()
            assert box is not None and abs(box["width"] - width) < 12, box
            # And nothing in the sidebar scrolls sideways or sticks out of it unclipped
            wide = page.evaluate(WIDE_ELEMENTS, SIDEBAR)
            assert wide == [], (name, width, wide)
            for section in SECTIONS:
                # the accordion splits the height: the sidebar with the section alone unfolded
                expand_only(page, section)
                node = page.locator(f"{SIDEBAR} .jp-Envpack-section-{section}")
                node.evaluate("n => { n.scrollTop = 0; }")
                shot = SHOTS / f"{section.lower()}-{name}-{width}.png"
                page.locator(SIDEBAR).screenshot(path=str(shot))
            expand_only(page, None)
    set_theme(page, THEMES["light"])
    assert problems == {"light": [], "dark": []}
    if os.environ.get("ENVPACK_UPDATE_SCREENSHOTS") == "1":
        target = DOCS / "sections"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(SHOTS, target)
    assert_no_envpack_errors(page)
