"""What a user feels on an unchanged notebook: the no-op build through the CLI process, the REST
operation of a real ``jupyter server`` and the in-process API, each next to the whole
``docker build -q`` process of the naive Dockerfile (fully cached); and the snapshot as a whole
process next to the whole ``pipreqs --scan-notebooks --use-local`` process.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import BASE_IMAGE, REPO, process_median, row, timed, user_venv, write_notebook
from bench_build import naive_context_dir

from jupyter_envpack.image import BuildOptions, build_image
from jupyter_envpack.image.engine import connect
from jupyter_envpack.snapshot import take_snapshot

CORPUS = Path("/work/shared/corpus/whirlwind")
MODULES = ["yaml", "requests", "dateutil", "docker", "nbformat", "jinja2", "packaging", "rich"]
N = 7
BIN = Path()
"""The user's venv (:func:`_common.user_venv`), set by :func:`main`."""


def cli(*args: str) -> list[str]:
    return [str(BIN / "jupyter"), "envpack", *args]


def direct(*args: str) -> list[str]:
    """The ``jupyter-envpack`` console script of the venv (one interpreter start: ``jupyter
    envpack`` starts ``jupyter`` first, which then starts ``jupyter-envpack``)."""
    return [str(BIN / "jupyter-envpack"), *args]


def compile_package() -> None:
    """Bytecode for envpack, as ``pip install`` of a wheel leaves it (a checkout run with
    PYTHONDONTWRITEBYTECODE=1 would otherwise compile it in every process)."""
    package = REPO / "jupyter_envpack"
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(package)], check=True)


def noop_rows(tmp: Path) -> None:
    client = connect()
    nb = write_notebook(tmp / "noop" / "noop.ipynb", ["import yaml\nprint(1)"])
    spec = take_snapshot(nb, python=sys.executable)
    opts = BuildOptions(base_image=BASE_IMAGE)
    build_image(spec, nb, opts, client=client)
    ctx = naive_context_dir(tmp / "naive", spec.requirements_lines())
    naive = [
        "docker",
        "build",
        "-q",
        "--label",
        "org.jupyter.envpack=1",
        "-t",
        "envpack-bench/naive-noop:1",
        str(ctx),
    ]
    subprocess.run(naive, check=True, capture_output=True)
    base, code, err = process_median(naive, N)
    assert code == 0, err
    floor = process_median([str(BIN / "python"), "-c", "pass"], N)[0]
    verb = ["build", str(nb), "--python", sys.executable, "--base-image", BASE_IMAGE, "-q"]
    subprocess.run(cli(*verb), check=True, capture_output=True)  # the memo entry, once
    for how, cmd in both(*verb):
        ours = ok_median(cmd, N)
        row(
            f"no-op build, CLI process {how} vs `docker build -q` process (median of 7)",
            base,
            ours,
            ">= 1.5x",
            base / ours >= 1.5,
            note=f"`python -c pass` alone: {floor:.3f} s",
        )
    api = timed(
        lambda: build_image(take_snapshot(nb, python=sys.executable), nb, opts, client=client),
        repeat=N,
    )
    row(
        "no-op build, in-process API (snapshot + build_image) vs `docker build -q` process",
        base,
        api,
        "<= 100 ms",
        api <= 0.1,
    )
    rest_row(nb, base)
    subprocess.run(
        ["docker", "rmi", "envpack-bench/naive-noop:1"], capture_output=True, check=False
    )


def rest_row(nb: Path, base: float) -> None:
    spec = importlib.util.spec_from_file_location(
        "server_conftest", REPO / "tests" / "integration" / "server" / "conftest.py"
    )
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    folder = nb.parent.parent / "server"
    root = folder / "root"
    root.mkdir(parents=True)
    server = mod.ServerProcess(folder, root)
    server.start()
    try:
        shutil.copy(nb, root / nb.name)  # the notebook's name is part of its image
        post_build(server, nb.name)  # builds (or finds) the image; later POSTs are no-ops
        client_side, server_side = [], []
        for _ in range(N):
            start = time.perf_counter()
            op = post_build(server, nb.name)
            client_side.append(time.perf_counter() - start)
            server_side.append(op["updated"] - op["created"])
        ours = statistics.median(client_side)
        row(
            "no-op build, REST POST -> terminal state (client side) vs `docker build -q` process",
            base,
            ours,
            "server-side < 50 ms",
            statistics.median(server_side) < 0.05,
            note=f"server-side (updated - created) median {statistics.median(server_side):.3f} s",
        )
    finally:
        server.kill(15)


def post_build(server: Any, path: str) -> dict[str, Any]:
    """POST a build operation of ``path`` and poll it until it is terminal (it must succeed)."""
    options = {"base_image": BASE_IMAGE}
    code, op = server.request(
        "POST", "envpack/operations", {"kind": "build", "path": path, "options": options}
    )
    assert code in (200, 202), op
    while op["state"] not in ("succeeded", "failed", "cancelled", "lost"):
        time.sleep(0.005)
        op = server.request("GET", f"envpack/operations/{op['id']}")[1]
    assert op["state"] == "succeeded", op
    return dict(op)


def big_notebook(path: Path) -> Path:
    """400 cells, ~5 MB with outputs (a PNG-sized base64 blob every 20 cells)."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "P"}
    blob = ("iVBORw0KGgo" * 22000)[:240000]
    for i in range(400):
        cell = nbformat.v4.new_code_cell(f"import {MODULES[i % 8]}\nx{i} = {i} * 2\nx{i}")
        cell.outputs = [
            nbformat.v4.new_output(
                "execute_result", {"text/plain": str(2 * i)}, execution_count=i + 1
            )
        ]
        if i % 20 == 0:
            cell.outputs.append(nbformat.v4.new_output("display_data", {"image/png": blob}))
        nb.cells.append(cell)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def scan_rows(tmp: Path) -> None:
    nb = big_notebook(tmp / "big" / "big.ipynb")
    mb = nb.stat().st_size / 1e6
    for label, folder, target in (
        (f"400 cells, {mb:.1f} MB", nb.parent, nb),
        ("whirlwind corpus", CORPUS, None),
    ):
        pipreqs = ["pipreqs", "--scan-notebooks", "--use-local", "--print", str(folder)]
        base, code, err = process_median(pipreqs, 5)
        note = pipreqs_note(pipreqs, code, err)
        if target is None:
            timings = [("", corpus_snapshot_time())]
        else:
            args = ("snapshot", str(target), "--python", sys.executable, "--json")
            subprocess.run(cli(*args), capture_output=True, check=True)  # the probe cache, once
            timings = [(f" {how}", ok_median(cmd, 5)) for how, cmd in both(*args)]
        for how, ours in timings:
            row(
                f"snapshot process{how} vs pipreqs process ({label})",
                base,
                ours,
                ">= 20x",
                base / ours >= 20,
                note=note,
            )


def both(*args: str) -> list[tuple[str, list[str]]]:
    """The verb through ``jupyter envpack`` and through ``jupyter-envpack``."""
    return [("`jupyter envpack`", cli(*args)), ("`jupyter-envpack`", direct(*args))]


def ok_median(cmd: list[str], repeat: int) -> float:
    """Median of ``cmd`` as a whole process; it must succeed."""
    seconds, code, err = process_median(cmd, repeat)
    assert code == 0, err
    return seconds


def pipreqs_note(cmd: list[str], code: int, err: str) -> str:
    """What pipreqs pinned, and (from ``--debug``) which imports it found before pinning."""
    proc = subprocess.run([*cmd, "--debug"], capture_output=True, text=True, check=False)
    pinned = {norm(ln.split("==")[0]) for ln in proc.stdout.splitlines() if "==" in ln}
    found = next((ln for ln in proc.stderr.splitlines() if "Found imports:" in ln), "")
    note = f"pipreqs exit {code}, pinned {len(pinned)}"
    if not pinned:
        last = err.strip().splitlines()[-1][:80] if err.strip() else ""
        note += f"; stderr: {last!r}; {found.replace('DEBUG: ', '')[:160]}"
    return note


def corpus_snapshot_time() -> float:
    """Every corpus notebook as its own snapshot process, summed (pipreqs scans the folder)."""
    total = 0.0
    for nb in sorted(CORPUS.glob("*.ipynb")):
        t, code, err = process_median(
            cli("snapshot", str(nb), "--python", sys.executable, "--json"), 3
        )
        assert code in (0, 1), err
        total += t
    return total


def main() -> None:
    """All rows, or only ``scan`` / ``noop`` (``python3 bench_user.py noop``)."""
    global BIN
    wanted = set(sys.argv[1:]) or {"scan", "noop"}
    BIN = user_venv()
    compile_package()
    with tempfile.TemporaryDirectory() as tmp:
        if "scan" in wanted:
            scan_rows(Path(tmp))
        if "noop" in wanted:
            noop_rows(Path(tmp))


if __name__ == "__main__":
    main()
