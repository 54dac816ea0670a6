#!/usr/bin/env bash
# Every benchmark, each printing ratios against a baseline measured in the same run.
# Needs the Docker engine and the offline base image (bash .ci/provision) and pipreqs + papermill
# (pip install -e ".[bench]").
set -euo pipefail
cd "$(dirname "$0")"
python3 bench_scan.py
python3 bench_rerun.py
python3 bench_build.py "$@"
