"""Builds: no-op rebuild, notebook-only edit, cold build of a data-science set — each against the
naive Dockerfile (FROM base; COPY requirements.txt; RUN pip install -r requirements.txt) with the
same pins, built through the same engine in the same run.

The kernel for the data-science set is a separate venv (numpy, pandas, matplotlib, scikit-learn,
ipykernel): pass its interpreter with ``--python`` (default: benchmarks' own venv, created on first
use under /var/tmp/envpack-bench).
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import BASE_IMAGE, ratio_line, timed, write_notebook

from jupyter_envpack.events import ProgressEvent
from jupyter_envpack.image import BuildOptions, build_image
from jupyter_envpack.image.engine import connect
from jupyter_envpack.snapshot import take_snapshot

CA = os.environ.get("PIP_CERT", "/etc/ssl/certs/ca-certificates.crt")
DS_VENV = Path("/var/tmp/envpack-bench/ds-venv")
NAIVE = """FROM {base}
COPY ca.crt /tmp/ca.crt
COPY requirements.txt /tmp/requirements.txt
RUN python3 -m venv /venv && /venv/bin/pip install --no-cache-dir --cert /tmp/ca.crt -r /tmp/requirements.txt
"""


def naive_files(requirements: list[str]) -> dict[str, bytes]:
    """The naive Dockerfile's context: Dockerfile, requirements.txt, the CA bundle."""
    return {
        "Dockerfile": NAIVE.format(base=BASE_IMAGE).encode(),
        "requirements.txt": ("\n".join(requirements) + "\n").encode(),
        "ca.crt": Path(CA).read_bytes(),
    }


def naive_context_dir(folder: Path, requirements: list[str]) -> Path:
    """The naive context as a folder, for the whole ``docker build -q`` process."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in naive_files(requirements).items():
        (folder / name).write_bytes(data)
    return folder


def naive_build(client: Any, requirements: list[str], tag: str, nocache: bool) -> float:
    files = naive_files(requirements)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    start = time.perf_counter()
    for chunk in client.api.build(
        fileobj=buf,
        custom_context=True,
        tag=tag,
        rm=True,
        forcerm=True,
        nocache=nocache,
        decode=True,
        labels={"org.jupyter.envpack": "1", "org.jupyter.envpack.kind": "benchmark"},
    ):
        if "error" in chunk:
            raise RuntimeError(chunk["error"])
    return time.perf_counter() - start


def image_size(client: Any, ref: str) -> int:
    return int(client.api.inspect_image(ref)["Size"])


def site_packages_bytes(client: Any, image: str) -> int:
    out = client.containers.run(
        image,
        ["du", "-sb", "/opt/envpack/env"],
        remove=True,
        entrypoint=[],
        labels={"org.jupyter.envpack": "1"},
    )
    return int(out.split()[0])


def ensure_ds_venv() -> str:
    py = DS_VENV / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(DS_VENV)], check=True)
        subprocess.run(
            [
                str(py),
                "-m",
                "pip",
                "install",
                "-q",
                "numpy",
                "pandas",
                "matplotlib",
                "scikit-learn",
                "ipykernel",
            ],
            check=True,
        )
    return str(py)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--python", help="kernel interpreter with the data-science set")
    args = parser.parse_args()
    client = connect()
    with tempfile.TemporaryDirectory() as tmp:
        # 1. no-op rebuild (small environment)
        nb = write_notebook(Path(tmp) / "noop" / "noop.ipynb", ["import yaml\nprint(1)"])
        spec = take_snapshot(nb, python=sys.executable)
        opts = BuildOptions(base_image=BASE_IMAGE)
        build_image(spec, nb, opts, client=client)
        naive_build(client, spec.requirements_lines(), "envpack-bench/naive-noop:1", False)
        base = timed(
            lambda: naive_build(
                client, spec.requirements_lines(), "envpack-bench/naive-noop:1", False
            ),
            repeat=5,
        )
        ours = timed(lambda: build_image(spec, nb, opts, client=client), repeat=5)
        print(ratio_line("no-op rebuild (in-process API call)", base, ours, "<= 100 ms and >= 5x"))
        start = time.perf_counter()
        subprocess.run(
            ["jupyter", "envpack", "build", str(nb), "--base-image", BASE_IMAGE, "-q"],
            check=True,
            capture_output=True,
        )
        print(
            f"no-op rebuild via the CLI process (incl. interpreter start + probe cache): "
            f"{time.perf_counter() - start:.3f} s"
        )

        # 2. notebook-only edit
        write_notebook(nb, ["import yaml\nprint(2)"])
        events: list[ProgressEvent] = []
        build_image(
            take_snapshot(nb, python=sys.executable), nb, opts, events.append, client=client
        )
        steps: list[list[Any]] = []
        for e in events:
            if e.stage == "build" and e.kind == "step" and e.message.startswith("step "):
                steps.append([e.message, False])
            elif e.stage == "build" and "Using cache" in e.message and steps:
                steps[-1][1] = True
        dep = [
            s
            for s, _ in steps
            if any(k in s for k in ("install_env", "wheels", ".lock", "--from="))
        ]
        rebuilt = [s for s, c in steps if s in dep and not c]
        print(
            f"notebook-only edit: {len(rebuilt)} of {len(dep)} dependency layers rebuilt (target 0)"
        )

        # 3. cold build of the data-science set
        py = args.python or ensure_ds_venv()
        ds_nb = write_notebook(
            Path(tmp) / "ds" / "ds.ipynb",
            ["import numpy as np\nimport pandas as pd\nimport matplotlib\nimport sklearn"],
        )
        ds_spec = take_snapshot(ds_nb, python=py)
        print(f"data-science set: {len(ds_spec.packages)} pinned distributions")
        cache = Path(tmp) / "wheel-cache"
        os.environ["ENVPACK_WHEEL_CACHE"] = str(cache)  # cold: no wheels fetched before
        # a unique local file makes every layer new: a cold build with no engine cache
        (ds_nb.parent / "stamp.py").write_text(f"STAMP = {time.time_ns()}\n")
        ds_spec.local_files.append("stamp.py")
        ds_opts = BuildOptions(base_image=BASE_IMAGE)
        start = time.perf_counter()
        ours_result = build_image(ds_spec, ds_nb, ds_opts, client=client)
        ours_cold = time.perf_counter() - start
        base_cold = naive_build(
            client, ds_spec.requirements_lines(), "envpack-bench/naive-ds:1", True
        )
        print(ratio_line("cold build, data-science set", base_cold, ours_cold, ">= 2x"))
        size = image_size(client, ours_result.image)
        base_size = image_size(client, BASE_IMAGE)
        site = site_packages_bytes(client, ours_result.image)
        naive_size = image_size(client, "envpack-bench/naive-ds:1")
        print(
            f"image size: envpack {size / 2**20:.0f} MiB, base {base_size / 2**20:.0f} MiB + "
            f"env {site / 2**20:.0f} MiB = {(base_size + site) / 2**20:.0f} MiB → "
            f"{size / (base_size + site):.2f}x (target <= 1.1x); naive image "
            f"{naive_size / 2**20:.0f} MiB"
        )
        shutil.rmtree(cache, ignore_errors=True)
        for ref in ("envpack-bench/naive-noop:1", "envpack-bench/naive-ds:1", ours_result.image):
            try:
                client.images.remove(ref)
            except Exception:  # noqa: S110
                pass


if __name__ == "__main__":
    main()
