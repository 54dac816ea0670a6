#!/usr/bin/env bash
# The main job on the example notebook: snapshot -> Dockerfile -> build -> rerun -> report.
# Works on a fresh Debian/Ubuntu machine (run as root, or as a user in the docker group):
# installs jupyter-envpack (and the example's numpy + pyyaml) into the python3 on PATH, starts
# a Docker engine when none answers, and picks a base image: python:X.Y-slim when it can be
# pulled, else an offline Debian base image built by .ci/provision.
set -euo pipefail
cd "$(dirname "$0")/.."
NB=examples/quickstart.ipynb

# Is jupyter-envpack INSTALLED (asked from another folder: here the source folder would import
# even in an empty virtualenv) and is its command on PATH? Else install this checkout.
if ! (cd / && python3 -c "import importlib.metadata as m; m.distribution('jupyter-envpack')") \
     >/dev/null 2>&1 || ! command -v jupyter-envpack >/dev/null 2>&1; then
  echo "installing jupyter-envpack from $(pwd) (builds the JupyterLab extension: needs node)" >&2
  python3 -m pip install -q -e .
fi
# The example imports numpy and yaml: the kernel's environment (this Python) must have them.
PYTHON=$(python3 -c 'import sys; print(sys.executable)')
if ! (cd / && python3 -c "import numpy, yaml") >/dev/null 2>&1; then
  echo "installing the example notebook's packages (numpy, pyyaml) for $PYTHON" >&2
  python3 -m pip install -q numpy pyyaml
fi
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
jupyter envpack snapshot "$NB" --python "$PYTHON"
jupyter envpack dockerfile "$NB" --python "$PYTHON" --base-image "$BASE"
jupyter envpack run "$NB" --python "$PYTHON" --base-image "$BASE"
