#!/bin/sh
# Regenerate the sidebar screenshots of the docs (real JupyterLab + Chromium + Docker):
# docs/screenshots/sidebar.png (README) and docs/screenshots/sections/<section>-<theme>-<width>.png.
set -eu
cd "$(dirname "$0")/../.."
export PYTHONPATH="$PWD" ENVPACK_UPDATE_SCREENSHOTS=1
python3 -m pytest -q -x tests/ui/test_ui_screenshots.py \
  "tests/ui/test_ui_sidebar.py::test_containerise_survives_a_reload_and_shows_the_report"
