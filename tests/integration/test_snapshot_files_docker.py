"""What a notebook needs besides packages, in a REAL image: data files, %run scripts, ipykernel.

Each build runs on the offline base; the promises are checked inside the image (its work folder
read back from a container, its history) and by rerunning the notebook there (issue 9.2-9.4, 10.5).
"""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import nbformat
import pytest

from jupyter_envpack.errors import RunError
from jupyter_envpack.execute import RunOptions, run_notebook
from jupyter_envpack.image import BuildOptions, build_image
from jupyter_envpack.snapshot import SnapshotOptions, take_snapshot

pytestmark = pytest.mark.docker
CANARY = "CANARY-7f3e-never-in-an-image"
WORK = "/home/envpack/work"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def execute_here(path: Path) -> None:
    """Run the notebook with this machine's kernel in its own folder (as its author did)."""
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    NotebookClient(
        nb, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    ).execute()
    nbformat.write(nb, path)


def work_folder(client: Any, image: str, labels: dict[str, str]) -> dict[str, bytes]:
    """Every file under the image's work folder (read from a created, never started container)."""
    container = client.containers.create(image, "true", labels=labels)
    try:
        chunks, _ = container.get_archive(WORK)
        blob = b"".join(chunks)
    finally:
        container.remove(force=True)
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        return {
            m.name.removeprefix("work/"): tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.isfile()
        }


def scan_layers(client: Any, image: str, tmp_path: Path) -> tuple[set[str], bool]:
    """Every file name in every layer of ``docker save``, and whether any holds the canary."""
    archive = tmp_path / "saved.tar"
    with archive.open("wb") as fh:
        for chunk in client.images.get(image).save(chunk_size=2**20):
            fh.write(chunk)
    names: set[str] = set()
    found = False
    with tarfile.open(archive) as outer:
        for member in outer.getmembers():
            blob = outer.extractfile(member) if member.isfile() else None
            if blob is None:
                continue
            try:
                with tarfile.open(fileobj=blob, mode="r:*") as layer:
                    for entry in layer:
                        names.add(entry.name)
                        data = layer.extractfile(entry) if entry.isfile() else None
                        found = found or (data is not None and CANARY.encode() in data.read())
            except tarfile.TarError:
                continue  # a config or manifest blob, not a layer
    archive.unlink()
    return names, found


@pytest.mark.reliability("L5", "B3", "B4", "C8")
def test_data_files_and_run_scripts_ship_and_the_rerun_reproduces(
    docker_client, test_base_image, tmp_path, test_labels
) -> None:
    outside = write(tmp_path / "elsewhere" / "private.txt", CANARY)
    root = tmp_path / "project"
    write(root / "data" / "x.csv", "a,b\n1,2\n")
    write(root / "data" / "key.pem", CANARY)
    write(root / "data" / ".env", f"TOKEN={CANARY}")
    write(root / "data" / "credentials.json", CANARY)
    (root / "data" / "link.txt").symlink_to(outside)
    write(root / "inputs" / "t.txt", "from inputs\n")
    write(root / "scripts" / "helper.py", "from helpmod import greet\nmessage = greet()\n")
    write(
        root / "helpmod.py",
        "import yaml\n\ndef greet():\n"
        "    return yaml.safe_dump({'hi': open('inputs/t.txt').read().strip()}).strip()\n",
    )
    write(root / "helpmod_unused" / "x.py", CANARY)
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "p"}
    nb.cells = [
        nbformat.v4.new_code_cell(
            "import csv, os\nnames = os.listdir('data')  # the folder ships, minus secrets\n"
            "print(list(csv.reader(open(os.path.join('data', 'x.csv')))))"
        ),
        nbformat.v4.new_code_cell("%run scripts/helper.py\nprint(message)"),
    ]
    path = root / "nb.ipynb"
    nbformat.write(nb, path)
    execute_here(path)
    spec = take_snapshot(path, python=sys.executable)
    assert spec.local_files == ["helpmod.py", "scripts/helper.py"]
    assert [(d.path, d.size) for d in spec.data_files] == [("data/x.csv", 8), ("inputs/t.txt", 12)]
    built = build_image(spec, path, BuildOptions(base_image=test_base_image), client=docker_client)
    files = work_folder(docker_client, built.image, test_labels)
    assert files["data/x.csv"] == b"a,b\n1,2\n" and files["inputs/t.txt"] == b"from inputs\n"
    assert {"helpmod.py", "scripts/helper.py", "nb.ipynb"} <= set(files)
    assert not any(CANARY.encode() in blob for blob in files.values())
    assert not {"data/key.pem", "data/.env", "data/link.txt", "data/credentials.json"} & set(files)
    names, leaked = scan_layers(docker_client, built.image, tmp_path)
    assert "home/envpack/work/data/x.csv" in names and not leaked
    assert not any(n.endswith(("key.pem", "/.env", "credentials.json")) for n in names)
    history = docker_client.api.history(built.image)
    assert not any(CANARY in (h.get("CreatedBy") or "") for h in history)
    result = run_notebook(built.image, path, RunOptions(labels=test_labels))
    assert result.report.reproduced, [c.diff for c in result.report.cells]
    assert [c.status for c in result.report.cells] == ["same", "same"]
    executed = nbformat.read(result.output_path, as_version=4)
    assert "[['a', 'b'], ['1', '2']]" in executed.cells[0].outputs[0]["text"]
    assert "hi: from inputs" in executed.cells[1].outputs[0]["text"]


@pytest.mark.reliability("H3")
def test_a_kernel_env_without_ipykernel_builds_and_reruns(
    docker_client, test_base_image, tmp_path, make_notebook, test_labels
) -> None:
    venv = tmp_path / "plain-env"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = str(venv / "bin" / "python")
    assert subprocess.run([python, "-c", "import ipykernel"], check=False).returncode != 0
    out = {"output_type": "stream", "name": "stdout", "text": "42\n"}
    path = make_notebook([("import json\nprint(json.loads('42'))", [out])], name="plain.ipynb")
    spec = take_snapshot(path, python=python)
    runner = {p.name: p for p in spec.packages if p.reason == "runner"}
    assert "ipykernel" in runner and not runner["ipykernel"].requested
    assert "runner-from-index" in {w.code for w in spec.warnings}
    built = build_image(spec, path, BuildOptions(base_image=test_base_image), client=docker_client)
    version = docker_client.containers.run(
        built.image,
        ["/opt/envpack/env/bin/python", "-c", "import ipykernel; print(ipykernel.__version__)"],
        remove=True,
        network_disabled=True,
        labels=test_labels,
    )
    assert version.decode().strip() == runner["ipykernel"].version
    result = run_notebook(built.image, path, RunOptions(labels=test_labels))
    assert result.report.reproduced and result.exit_code == 0

    # without the index the image has no ipykernel: an infrastructure error naming cause + fix
    bare = take_snapshot(path, python=python, options=SnapshotOptions(from_index=False))
    assert "no-ipykernel" in {w.code for w in bare.warnings}
    broken = build_image(bare, path, BuildOptions(base_image=test_base_image), client=docker_client)
    with pytest.raises(RunError) as info:
        run_notebook(broken.image, path, RunOptions(labels=test_labels))
    assert info.value.reason == "kernel-start"
    assert "ipykernel" in (info.value.hint or "")
    # the CLI: an infrastructure error (exit 2) naming the cause and the fix, not "did not reproduce"
    proc = subprocess.run(
        [sys.executable, "-m", "jupyter_envpack.cli", "run", str(path), "--image", broken.image],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    assert "kernel could not start" in proc.stderr and "hint:" in proc.stderr
