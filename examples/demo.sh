#!/usr/bin/env bash
# The main job on the example notebook: snapshot -> Dockerfile -> build -> rerun -> report.
# Works on a fresh Debian/Ubuntu machine (run as root, or as a user in the docker group):
# installs jupyter-envpack, starts a Docker engine when none answers, and picks a base image:
# python:X.Y-slim when it can be pulled, else an offline Debian base image built by .ci/provision.
set -euo pipefail
cd "$(dirname "$0")/.."
NB=examples/quickstart.ipynb

python3 -c "import jupyter_envpack.cli" 2>/dev/null || python3 -m pip install -q -e .
if ! docker version >/dev/null 2>&1; then
  echo "no Docker engine answers: provisioning one (.ci/provision)" >&2
  bash .ci/provision
fi
BASE="${ENVPACK_BASE_IMAGE:-}"
if [ -z "$BASE" ]; then
  PY=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  if docker image inspect "python:$PY-slim" >/dev/null 2>&1 \
     || timeout 180 docker pull -q "python:$PY-slim" >/dev/null 2>&1; then
    BASE="python:$PY-slim"
  else
    echo "python:$PY-slim cannot be pulled here: using the offline base image (.ci/provision)" >&2
    bash .ci/provision
    BASE="${ENVPACK_TEST_BASE_IMAGE:-envpack-test/debian-python:bookworm}"
  fi
fi
set -x
jupyter envpack snapshot "$NB"
jupyter envpack dockerfile "$NB" --base-image "$BASE"
jupyter envpack run "$NB" --base-image "$BASE"
