"""Does a published notebook still reproduce under ``--reconstruct``? (issue 13.2)

For every notebook of the shared corpus (``tests/shared_corpus.py`` finds it): reconstruct its
environment (no kernel environment is used: candidates verified on wheels, resolved as of
``--as-of``), build the image, rerun it and compare with the notebook's STORED outputs. Prints one
row per notebook: reproduced / differs (which cells, first differing line) / failed (stage, why),
and ``--json FILE`` keeps everything. ``--engine venv`` reruns in a fresh venv instead of Docker;
``--fallback-venv`` does so only when the Docker stage fails.

    PYTHONPATH=. python3 benchmarks/reconstruct_corpus.py --as-of 2017-08-15 \\
        --base-image envpack-test/debian-python:bookworm
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import shared_corpus

from jupyter_envpack.errors import EnvpackError
from jupyter_envpack.execute import RunOptions
from jupyter_envpack.image import BuildOptions
from jupyter_envpack.pipeline import prepare, rerun
from jupyter_envpack.snapshot import ReconstructOptions, SnapshotOptions


def measure(nb: Path, args: argparse.Namespace, engine: str) -> dict[str, Any]:
    """Reconstruct, build and rerun one notebook (a copy in a temporary folder)."""
    row: dict[str, Any] = {"notebook": nb.name, "engine": engine}
    with tempfile.TemporaryDirectory(prefix="envpack-recon-corpus-") as tmp:
        copy = Path(tmp) / nb.name
        shutil.copyfile(nb, copy)
        stage, start = "reconstruct", time.monotonic()
        try:
            ropts = ReconstructOptions(args.as_of, args.python_version, args.base_image)
            build = BuildOptions(base_image=args.base_image)
            snapshot = SnapshotOptions(reconstruct=ropts)
            prepared = prepare(copy, build, snapshot=snapshot, use_lock=False)
            row["reconstruction"] = prepared.spec.reconstruction
            row["reconstruct_s"] = round(time.monotonic() - start, 1)
            stage, start = "build and run", time.monotonic()
            run = RunOptions(labels={"org.jupyter.envpack.test": "reconstruct-corpus"})
            result, _ = rerun(copy, prepared, engine, run)
        except EnvpackError as exc:
            return {**row, "verdict": "failed", "stage": stage, "why": exc.message[:300]}
        row["run_s"] = round(time.monotonic() - start, 1)
        report = result.report
        row.update(verdict=report.verdict, summary=report.summary, origin=report.origin)
        row["differs"] = [_why(c.to_json()) for c in report.cells if c.status not in _SAME]
    return row


_SAME = {"same", "skipped", "error"}  # "error": the stored error came back


def _why(cell: dict[str, Any]) -> str:
    lines = [ln for ln in (cell.get("diff") or "").splitlines() if ln[:1] in "-+"]
    lines = [ln for ln in lines if not ln.startswith(("---", "+++"))]
    detail = " / ".join(ln[:90] for ln in lines[:2]) or cell.get("ename") or ""
    return f"cell {cell['index']} {cell['status']}: {detail}"


def table(rows: list[dict[str, Any]]) -> str:
    """The Markdown table of docs/reconstruction.md."""
    out = [
        "| notebook | as of (used) | Python | verdict | cells | why |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        rec = r.get("reconstruction") or {}
        used = f"{rec.get('as_of', '?')} ({rec.get('as_of_used', '-')})"
        cells = ", ".join(f"{n} {s}" for s, n in sorted((r.get("summary") or {}).items()))
        why = r.get("why") or "; ".join(r.get("differs") or []) or "-"
        verdict = r["verdict"] + (f" at {r['stage']}" if r.get("stage") else "")
        out.append(
            f"| {r['notebook']} | {used} | {rec.get('python', '-')} | {verdict} | {cells} | "
            + why.replace("|", "\\|")
            + " |"
        )
    return "\n".join(out)


def main() -> int:
    """Measure the corpus and print the table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--as-of", help="package date (default: each notebook's commit date/mtime)")
    p.add_argument("--python-version", metavar="X.Y")
    p.add_argument("--base-image", default=os.environ.get("ENVPACK_BASE_IMAGE"))
    p.add_argument("--engine", choices=("docker", "venv"), default="docker")
    p.add_argument("--fallback-venv", action="store_true", help="venv when the docker run fails")
    p.add_argument("--only", action="append", help="notebook names to measure (repeatable)")
    p.add_argument("--json", metavar="FILE", help="write every row as JSON")
    args = p.parse_args()
    notebooks = [
        n for n in shared_corpus.corpus_notebooks() if not args.only or n.name in args.only
    ]
    if not notebooks:
        sys.exit(f"no corpus notebooks found (set {shared_corpus.CORPUS_ENV})")
    rows = []
    for nb in notebooks:
        row = measure(nb, args, args.engine)
        if row["verdict"] == "failed" and args.fallback_venv and args.engine == "docker":
            row = {**measure(nb, args, "venv"), "docker_failure": row}
        rows.append(row)
        print(json.dumps({k: row.get(k) for k in ("notebook", "verdict", "summary")}), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    print(table(rows))
    reproduced = sum(r["verdict"] == "reproduced" for r in rows)
    print(f"\n{reproduced} of {len(rows)} reproduced their stored outputs under --reconstruct")
    return 0


if __name__ == "__main__":
    sys.exit(main())
