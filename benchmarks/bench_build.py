"""Builds: notebook-only edit; cold build of a data-science set on a cold machine and with warm
caches, against the naive Dockerfile (FROM base; COPY requirements.txt; RUN pip install -r requirements.txt) with the
same pins, built through the same engine in the same run; the floor (``docker import`` of the
finished environment) and the image size against everything envpack puts in.

The kernel for the data-science set is a separate venv (numpy, pandas, matplotlib, scikit-learn,
ipykernel): pass its interpreter with ``--python`` (default: benchmarks' own venv, created on first
use under /var/tmp/envpack-bench).
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from _common import BASE_IMAGE, row, write_notebook

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


def notebook_edit_row(client: Any, tmp: Path) -> None:
    """Edit only the notebook: count dependency layers the build had to run again."""
    nb = write_notebook(tmp / "noop" / "noop.ipynb", ["import yaml\nprint(1)"])
    opts = BuildOptions(base_image=BASE_IMAGE)
    build_image(take_snapshot(nb, python=sys.executable), nb, opts, client=client)
    write_notebook(nb, ["import yaml\nprint(2)"])
    events: list[ProgressEvent] = []
    build_image(take_snapshot(nb, python=sys.executable), nb, opts, events.append, client=client)
    steps: list[list[Any]] = []
    for e in events:
        if e.stage == "build" and e.kind == "step" and e.message.startswith("step "):
            steps.append([e.message, False])
        elif e.stage == "build" and "Using cache" in e.message and steps:
            steps[-1][1] = True
    keys = ("install_env", "wheels", ".lock", "--from=")
    dep = [s for s, _ in steps if any(k in s for k in keys)]
    rebuilt = [s for s, c in steps if s in dep and not c]
    row(
        "notebook-only edit: dependency layers rebuilt",
        None,
        len(rebuilt),
        "0",
        not rebuilt,
        unit="layers",
        note=f"of {len(dep)}",
    )


def cold_build(
    client: Any,
    spec: Any,
    nb: Path,
    pip_cache: Path,
    wheel_cache: Path,
    layers: str | None = None,
) -> tuple[Any, float, str]:
    """One envpack build with these caches and a stamp that makes every engine layer new."""
    os.environ["PIP_CACHE_DIR"] = str(pip_cache)
    os.environ["ENVPACK_WHEEL_CACHE"] = str(wheel_cache)
    (nb.parent / "stamp.py").write_text(f"STAMP = {time.time_ns()}\n")
    if "stamp.py" not in spec.local_files:
        spec.local_files.append("stamp.py")
    return timed_build(client, spec, nb, fresh_base(client), layers)


def du(client: Any, image: str, *paths: str) -> int:
    out = client.containers.run(
        image,
        ["du", "-sbc", *paths],
        remove=True,
        entrypoint=[],
        user="0",
        labels={"org.jupyter.envpack": "1"},
    )
    return int(out.split()[-2])


def import_floor(client: Any, image: str, tmp: Path) -> tuple[float, int]:
    """Seconds for ``docker import`` of a tar of exactly /opt/envpack (the finished env)."""
    container = client.containers.create(image, labels={"org.jupyter.envpack": "1"})
    try:
        tar = tmp / "env.tar"
        with tar.open("wb") as f:
            for chunk in container.get_archive("/opt/envpack")[0]:
                f.write(chunk)
    finally:
        container.remove(force=True)
    start = time.perf_counter()
    ref = subprocess.run(
        ["docker", "import", "--change", "LABEL org.jupyter.envpack=1", str(tar)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    took = time.perf_counter() - start
    client.images.remove(ref)
    return took, tar.stat().st_size


def ds_rows(client: Any, tmp: Path, py: str) -> None:
    nb = write_notebook(
        tmp / "ds" / "ds.ipynb",
        ["import numpy as np\nimport pandas as pd\nimport matplotlib\nimport sklearn"],
    )
    spec = take_snapshot(nb, python=py)
    reqs = spec.requirements_lines()
    pip_cache, wheels = tmp / "pip-cache", tmp / "wheel-cache"
    # cold machine: empty pip + wheel caches for envpack; nothing cached for the naive build
    ours_result, cold, where = cold_build(client, spec, nb, pip_cache, wheels)
    naive_cold = naive_build(client, reqs, "envpack-bench/naive-ds:1", True)
    row(
        f"cold build, cold machine ({len(spec.packages)} pins)",
        naive_cold,
        cold,
        ">= 2x",
        naive_cold / cold >= 2,
        note="single layout (default)",
    )
    floor_s, tar_bytes = import_floor(client, ours_result.image, tmp)
    row(
        "cold build vs floor: `docker import` of a tar of the finished /opt/envpack",
        floor_s,
        cold,
        "cold <= 1.2x floor",
        cold <= 1.2 * floor_s,
        note=f"tar {tar_bytes / 2**20:.0f} MiB; ratio < 1 means slower than the floor; "
        f"cold build: {where}",
    )
    size_rows(client, ours_result.image)
    client.images.remove(ours_result.image)  # and its layers: the engine cache is cold again
    # warm caches: envpack keeps its wheel cache; the naive build's pip has no cache in a build
    warm_result, warm, _ = cold_build(client, spec, nb, pip_cache, wheels)
    naive_warm = naive_build(client, reqs, "envpack-bench/naive-ds:1", True)
    row(
        "cold build, warm caches (envpack wheel cache; naive: engine has the base)",
        naive_warm,
        warm,
        ">= 2x",
        naive_warm / warm >= 2,
        note="single layout (default)",
    )
    client.images.remove(warm_result.image)
    shared_result, shared_s, where = cold_build(client, spec, nb, pip_cache, wheels, "shared")
    row(
        "cold build, warm caches, shared layout (`c.EnvPack.layers = 'shared'`)",
        naive_warm,
        shared_s,
        ">= 2x",
        naive_warm / shared_s >= 2,
        note=f"single layout (default) {warm:.1f} s in this run; shared: {where}",
    )
    for ref in (shared_result.image, "envpack-bench/naive-ds:1"):
        client.images.remove(ref)


REGISTRY = os.environ.get("ENVPACK_TEST_REGISTRY", "127.0.0.1:5000")
WORKER_SOCKET = "unix:///run/envpack-worker1.sock"


BASES: list[str] = []
"""The bases :func:`fresh_base` made (removed at the end, after the images built on them)."""


def fresh_base(client: Any) -> str:
    """The offline base under a new image id (a label): no earlier build's layer matches it.

    The engine's legacy builder reuses the newest matching layer of its cache, so builds on a
    shared engine (or earlier runs) would otherwise decide which chain a benchmark extends.
    """
    tag = f"envpack-bench/base:{uuid.uuid4().hex[:12]}"
    stamp = f"org.jupyter.envpack.stamp={tag[-12:]}"  # else the engine's cache gives the same id
    text = f"FROM {BASE_IMAGE}\nLABEL org.jupyter.envpack=1 org.jupyter.envpack.kind=benchmark {stamp}\n"
    client.images.build(fileobj=io.BytesIO(text.encode()), tag=tag, rm=True)
    BASES.append(tag)
    return tag


def timed_build(
    client: Any, spec: Any, nb: Path, base: str, layers: str | None = None
) -> tuple[Any, float, str]:
    """One build; its time and where it went (wheels, engine build, check inside the image)."""
    spent: dict[str, float] = {}
    last = ["plan", time.perf_counter()]

    def mark(event: ProgressEvent) -> None:
        key = "check" if "checking" in event.message else event.stage
        key = "engine" if key == "build" and event.kind in {"step", "log"} else key
        if key != last[0]:
            now = time.perf_counter()
            spent[str(last[0])] = spent.get(str(last[0]), 0.0) + now - float(last[1])
            last[:] = [key, now]

    start = time.perf_counter()
    result = build_image(
        spec,
        nb,
        BuildOptions(base_image=base, layers=layers or BuildOptions().layers),
        mark,
        client=client,
    )
    end = time.perf_counter()
    spent[str(last[0])] = spent.get(str(last[0]), 0.0) + end - float(last[1])
    return result, end - start, ", ".join(f"{k} {v:.1f}" for k, v in spent.items())


def layer_counts(client: Any, first: str, second: str) -> tuple[int, int]:
    """Layers of ``second`` shared (same chain) with ``first``, and all of ``second``'s layers."""
    a = client.api.inspect_image(first)["RootFS"]["Layers"]
    b = client.api.inspect_image(second)["RootFS"]["Layers"]
    shared = next(
        (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
    )
    return shared, len(b)


def sibling_rows(client: Any, tmp: Path, py: str) -> None:
    """A notebook, then a sibling whose closure overlaps ~85 %: build, push, worker pull."""
    from jupyter_envpack.cluster.registry import push_image
    from jupyter_envpack.image.wheels import ensure_wheels

    # a wheel cache no other process serves (a served cache makes a build copy its wheels)
    os.environ.setdefault("ENVPACK_WHEEL_CACHE", str(tmp / "wheel-cache"))
    a = write_notebook(tmp / "sa" / "sib_a.ipynb", ["import numpy, pandas, matplotlib"])
    b = write_notebook(tmp / "sb" / "sib_b.ipynb", ["import numpy, pandas, matplotlib, sklearn"])
    spec_a, spec_b = take_snapshot(a, python=py), take_snapshot(b, python=py)
    names_a = {p.name for p in spec_a.packages}
    overlap = len(names_a & {p.name for p in spec_b.packages}) / len(spec_b.packages)
    ensure_wheels(spec_b.requirements_lines(), spec_b.python_minor, BuildOptions())
    base_a, base_b = fresh_base(client), fresh_base(client)
    image_a, _cold_a, _ = timed_build(client, spec_a, a, base_a, "shared")
    image_b, cold_b, where = timed_build(client, spec_b, b, base_b, "shared")  # a base of its own
    sibling, warm_b, where_sib = timed_build(client, spec_b, b, base_a, "shared")
    single_b, single_s, _ = timed_build(client, spec_b, b, fresh_base(client), "single")
    shared, total = layer_counts(client, image_a.image, sibling.image)
    pins = f"{overlap:.0%} closure overlap, {len(spec_b.packages)} pins"
    row(
        f"sibling build, shared layout ({pins}) vs its cold build, shared layout",
        cold_b,
        warm_b,
        "sibling <= 25% of cold (>= 4x)",
        warm_b <= 0.25 * cold_b,
        note=f"shares {shared} of {total} layers with the first; cold: {where}; "
        f"sibling: {where_sib}",
    )
    row(
        "sibling build, shared layout vs the same notebook's cold build, single layout (default)",
        single_s,
        warm_b,
        "sibling <= 25% of cold (>= 4x)",
        warm_b <= 0.25 * single_s,
        note="what a second notebook costs with either layout",
    )
    push_a = push_image(image_a.image, REGISTRY, client=client)
    push_b = push_image(sibling.image, REGISTRY, client=client)
    layers = len(push_b.pushed) + len(push_b.existing)
    row(
        "sibling push: layers uploaded",
        float(layers - shared),
        float(len(push_b.pushed)),
        "only the new layers",
        len(push_b.pushed) <= layers - shared,
        unit="layers",
        note=f"{len(push_b.existing)} already in the registry; first notebook pushed "
        f"{len(push_a.pushed)}",
    )
    worker_row(push_a.reference, push_b.reference, total - shared)
    done = (image_a, image_b, sibling, single_b)
    for ref in (*(r.image for r in done), push_a.reference, push_b.reference):
        client.images.remove(ref)


def worker_row(first: str, second: str, new: int) -> None:
    """The Swarm worker pulls the first image, then the sibling: layers it downloads."""
    import docker

    worker = docker.DockerClient(base_url=WORKER_SOCKET, timeout=600)
    try:
        counts = []
        for ref in (first, second):
            repo, _, tag = ref.rpartition(":")
            final: dict[str, str] = {}
            for event in worker.api.pull(repo, tag=tag, stream=True, decode=True):
                if event.get("id") and event.get("status") in {"Already exists", "Pull complete"}:
                    final[event["id"]] = event["status"]
            counts.append(list(final.values()).count("Pull complete"))
        for ref in (first, second):
            worker.images.remove(ref)
    except Exception as exc:  # no worker here: say so in the table
        row(
            "sibling pull on the Swarm worker",
            None,
            0,
            "only the new layers",
            False,
            "layers",
            f"worker not reachable: {type(exc).__name__}",
        )
        return
    finally:
        worker.close()
    row(
        "sibling pull on the Swarm worker: layers downloaded",
        float(new),
        float(counts[1]),
        "only the new layers",
        counts[1] <= new,
        unit="layers",
        note=f"the first notebook's pull downloaded {counts[0]}",
    )


def size_rows(client: Any, image: str) -> None:
    size = image_size(client, image)
    base = image_size(client, BASE_IMAGE)
    added = du(client, image, "/opt/envpack", "/home/envpack")
    naive = image_size(client, "envpack-bench/naive-ds:1")
    row(
        "image size vs floor (base + env + runner venv + notebook layer)",
        (base + added) / 2**20,
        size / 2**20,
        "envpack <= 1.1x floor",
        size <= 1.1 * (base + added),
        unit="MiB",
        note=f"base {base / 2**20:.0f} + added {added / 2**20:.0f} MiB; naive {naive / 2**20:.0f} MiB",
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--python", help="kernel interpreter with the data-science set")
    parser.add_argument("--skip-cold", action="store_true", help="no data-science builds")
    parser.add_argument("--only", choices=["siblings", "floor"], help="only these rows")
    args = parser.parse_args()
    client = connect()
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        if args.only is None:
            notebook_edit_row(client, Path(tmp))
        if not args.skip_cold and args.only != "siblings":
            ds_rows(client, Path(tmp), args.python or ensure_ds_venv())
        if not args.skip_cold and args.only != "floor":
            sibling_rows(client, Path(tmp), args.python or ensure_ds_venv())
    for ref in BASES:
        client.images.remove(ref)


if __name__ == "__main__":
    main()
