"""Runs INSIDE an envpack image with the runner's own venv: execute a notebook with nbclient.

Usage: run_notebook.py [--input NB] [--output PATH] [--cell-timeout S] [--allow-errors]
[--emit-result]. Parameters arrive as the source of one cell in ``ENVPACK_PARAMETERS_CELL``; it is
inserted after the cell tagged ``parameters`` (or first), tagged ``injected-parameters``.
Progress: one JSON line per cell on stderr. Exit codes: 0 ok, 2 bad input, 3 a cell raised,
4 a cell timed out, 5 the kernel died.
"""

import argparse
import base64
import glob
import gzip
import json
import os
import re
import sys

ENVPACK_MAGIC = re.compile(r"^\s*(\w+\s*=\s*)?%+\s*(envpack\b|(re)?load_ext\s+jupyter_envpack\b)")
BEGIN = "----- ENVPACK RESULT BEGIN -----"
END = "----- ENVPACK RESULT END -----"


def _say(**fields):
    fields["envpack"] = fields.pop("event", "cell")
    sys.stderr.write(json.dumps(fields) + "\n")
    sys.stderr.flush()


def _without_envpack_magics(source):
    """envpack's own magics are not part of the reproduced environment: neutralise them."""
    lines = source.splitlines()
    if not any(ENVPACK_MAGIC.match(ln) for ln in lines):
        return source
    out = []
    for ln in lines:
        if ENVPACK_MAGIC.match(ln):
            indent = ln[: len(ln) - len(ln.lstrip())]
            ln = indent + "pass  # skipped by envpack: " + ln.strip()
        out.append(ln)
    return "\n".join(out)


def _default_input():
    found = sorted(glob.glob(os.path.join(os.getcwd(), "*.ipynb")))
    found = [f for f in found if not f.endswith(".envpack.ipynb")]
    if len(found) != 1:
        _say(event="error", message="expected exactly one notebook in %s" % os.getcwd())
        sys.exit(2)
    return found[0]


def main():
    parser = argparse.ArgumentParser(prog="run_notebook.py")
    parser.add_argument("--input")
    parser.add_argument("--output")
    parser.add_argument("--cell-timeout", type=float, default=600.0)
    parser.add_argument("--allow-errors", action="store_true")
    parser.add_argument("--emit-result", action="store_true")
    args = parser.parse_args()

    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    source = args.input or _default_input()
    try:
        # No schema validation here (its validator takes ~25 ms to build at every run): envpack
        # wrote this notebook, and the host validates what comes back.
        with open(source, encoding="utf-8") as fh:
            nb = nbformat.convert(nbformat.reader.reads(fh.read()), 4)
    except Exception as exc:
        _say(event="error", message="cannot read %s: %s" % (source, exc))
        return 2
    params = os.environ.get("ENVPACK_PARAMETERS_CELL")
    if params:
        cell = nbformat.v4.new_code_cell(params)
        cell.metadata["tags"] = ["injected-parameters"]
        at = 0
        for i, c in enumerate(nb.cells):
            if "parameters" in c.get("metadata", {}).get("tags", []):
                at = i + 1
                break
        nb.cells.insert(at, cell)
    for c in nb.cells:
        if c.cell_type == "code":
            c.source = _without_envpack_magics(c.source or "")
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    total = len(code_cells)
    counter = {"n": 0}

    started = {"kernel": False}

    def on_notebook_start(notebook):
        started["kernel"] = True

    def on_cell_start(cell, cell_index):
        counter["n"] += 1
        _say(index=cell_index, done=counter["n"] - 1, total=total)

    client = NotebookClient(
        nb,
        timeout=args.cell_timeout,
        kernel_name="envpack",
        allow_errors=args.allow_errors,
        resources={"metadata": {"path": os.path.dirname(os.path.abspath(source))}},
        on_cell_start=on_cell_start,
        on_notebook_start=on_notebook_start,
        shutdown_kernel="immediate",  # the container goes next: no graceful wait for the kernel
    )
    code = 0
    try:
        client.execute()
    except CellTimeoutError as exc:
        code = 4
        _say(event="error", message="a cell timed out: %s" % str(exc)[:500])
    except DeadKernelError as exc:
        code = 5
        _say(event="error", message="the kernel died: %s" % str(exc)[:500])
    except CellExecutionError as exc:
        code = 3
        _say(event="error", message="a cell raised %s: %s" % (exc.ename, str(exc.evalue)[:500]))
    except Exception as exc:
        code = 5
        _say(event="error", message="execution failed: %s: %s" % (type(exc).__name__, exc))
    if code != 0 and not started["kernel"]:
        code = 6  # the kernel never answered kernel_info: an infrastructure failure
        _say(event="error", message="the kernel could not start in the image")
    if code == 0 and args.allow_errors:
        for c in code_cells:
            if any(o.get("output_type") == "error" for o in c.get("outputs", [])):
                code = 3
                break
    nb.metadata.setdefault("envpack", {})["exit_code"] = code
    text = nbformat.v4.writes(nb)  # nbformat.writes minus the validation (see the read)
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        with open(args.output, "w", encoding="utf-8") as fh:
            fh.write(text)
    if args.emit_result:
        blob = base64.b64encode(gzip.compress(text.encode("utf-8"))).decode("ascii")
        sys.stdout.write(BEGIN + "\n")
        for i in range(0, len(blob), 76):
            sys.stdout.write(blob[i : i + 76] + "\n")
        sys.stdout.write(END + "\n")
        sys.stdout.flush()
    _say(event="done", exit_code=code, total=total)
    return code


if __name__ == "__main__":
    sys.exit(main())
