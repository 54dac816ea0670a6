"""Imports → pinned closure against a (constructed or real) kernel environment (RELIABILITY D2-D5)."""

from __future__ import annotations

import json
import stat
import sys
import time
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from jupyter_envpack.errors import ProbeError
from jupyter_envpack.snapshot import SnapshotOptions, take_snapshot
from jupyter_envpack.snapshot.probe import Distribution, Environment, probe_interpreter
from jupyter_envpack.snapshot.resolve import Resolver, redact_url, valid_name

MARKERS = {
    "python_version": "3.11",
    "python_full_version": "3.11.7",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "os_name": "posix",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "implementation_version": "3.11.7",
    "platform_release": "",
    "platform_version": "",
}


def env(*dists: Distribution) -> Environment:
    return Environment(
        "3.11.7", "/k/bin/python", MARKERS, frozenset({"os", "sys", "json"}), list(dists)
    )


def d(name: str, version: str, requires=(), top=None, **kw) -> Distribution:
    return Distribution(
        name,
        version,
        list(requires),
        list(top if top is not None else [name]),
        kw.get("installer", "pip"),
        kw.get("direct_url"),
    )


def codes(res) -> list[str]:
    return [f.code for f in res.findings]


def test_closure_honours_markers_and_extras() -> None:
    e = env(
        d("ipykernel", "6.0"),
        d(
            "requests",
            "2.31.0",
            ["urllib3<3", "idna", "PySocks; extra == 'socks'", "colorama; sys_platform == 'win32'"],
        ),
        d("urllib3", "2.0.7"),
        d("idna", "3.6"),
        d("PySocks", "1.7.1", top=["socks"]),
        d("colorama", "0.4.6"),
    )
    res = Resolver(e).resolve([("requests", 0)], [])
    assert [p.requirement for p in res.packages] == [
        "idna==3.6",
        "ipykernel==6.0",
        "requests==2.31.0",
        "urllib3==2.0.7",
    ]
    assert [p.name for p in res.packages if p.requested] == ["requests"]
    res = Resolver(e).resolve([], [("requests[socks]==2.31.0", 1)])
    assert "PySocks" in [p.name for p in res.packages]


def test_unresolved_import_suggests_the_distribution() -> None:
    res = Resolver(env(d("ipykernel", "6.0"))).resolve([("sklearn", 3), ("os", 0)], [])
    [f] = res.findings
    assert (f.code, f.cell) == ("unresolved-import", 3)
    assert "scikit-learn" in (f.hint or "")


@pytest.mark.reliability("D4")
def test_ambiguous_import_pins_all_and_warns() -> None:
    e = env(
        d("ipykernel", "6.0"),
        d("opencv-python", "4.9.0.80", top=["cv2"]),
        d("opencv-python-headless", "4.9.0.80", top=["cv2"]),
    )
    res = Resolver(e).resolve([("cv2", 0)], [])
    assert codes(res) == ["ambiguous-import"]
    assert {p.name for p in res.packages if p.requested} == {
        "opencv-python",
        "opencv-python-headless",
    }


@pytest.mark.reliability("D2")
@pytest.mark.parametrize(
    ("version", "pinned", "code"),
    [
        ("latest", None, "invalid-version"),
        ("1.0\nRUN x", None, "invalid-version"),
        ("2.1.0+cu118", "2.1.0+cu118", "local-version"),
        ("1!2.0", "1!2.0", None),
        ("01.02", "1.2", None),
    ],
)
def test_versions_are_canonical_or_refused(version: str, pinned: str | None, code) -> None:
    res = Resolver(env(d("ipykernel", "6.0"), d("torch", version))).resolve([("torch", 0)], [])
    got = {p.name: p.version for p in res.packages}
    assert got.get("torch") == pinned
    assert codes(res) == ([code] if code else [])


@pytest.mark.reliability("D1")
@pytest.mark.parametrize(
    "name", ["numpy\nRUN curl x|sh", "a;rm -rf /", "$(id)", "-e .", " x", "numpy\n", "", "a" * 300]
)
def test_injection_names_are_never_pinned(name: str) -> None:
    assert not valid_name(name)
    res = Resolver(env(d("ipykernel", "6.0"), d(name, "1.0", top=["evil"]))).resolve(
        [("evil", 0)], []
    )
    assert all(p.name != name for p in res.packages)


@pytest.mark.reliability("D3")
def test_editable_vcs_local_and_conda_installs_warn_without_credentials() -> None:
    canary = "CANARY-7c1e"
    e = env(
        d("ipykernel", "6.0"),
        d(
            "mylib",
            "0.1",
            direct_url={"url": "file:///home/u/mylib", "dir_info": {"editable": True}},
        ),
        d(
            "gitlib",
            "1.0",
            direct_url={
                "url": f"https://user:{canary}@git.example/x.git",
                "vcs_info": {"vcs": "git", "commit_id": "abc"},
            },
        ),
        d("pathlib2x", "1.0", direct_url={"url": "file:///tmp/pathlib2x-1.0.whl"}),
        d("mkl", "2024.0", installer="conda"),
    )
    res = Resolver(e).resolve([("mylib", 0), ("gitlib", 1), ("pathlib2x", 2), ("mkl", 3)], [])
    assert sorted(codes(res)) == [
        "editable-install",
        "local-path-install",
        "not-from-index",
        "vcs-install",
    ]
    dump = json.dumps([f.to_json() for f in res.findings])
    assert canary not in dump and "/home/u" not in dump
    assert redact_url(f"https://user:{canary}@h/x") == "https://h/x"


def test_missing_ipykernel_is_flagged_for_the_index() -> None:
    res = Resolver(env(d("yaml-lib", "1", top=["yaml"]))).resolve([("yaml", 0)], [])
    assert res.needs_kernel


def test_every_lock_line_reparses(make_notebook) -> None:
    spec = take_snapshot(make_notebook(["import nbformat, yaml, packaging"]), python=sys.executable)
    assert spec.python_version == ".".join(map(str, sys.version_info[:3]))
    for line in spec.requirements_lines():
        req = Requirement(line)
        assert str(req) == line and valid_name(req.name)
        assert str(Version(line.split("==")[1])) == line.split("==")[1]
    names = {p.name.lower() for p in spec.packages}
    assert {"nbformat", "pyyaml", "packaging", "ipykernel", "jsonschema", "fastjsonschema"} <= names
    assert spec.to_json()["schema"] == "envpack.snapshot/1"


@pytest.mark.reliability("D5")
def test_a_hung_interpreter_times_out_with_a_clear_error(tmp_path: Path) -> None:
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\nsleep 30\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    started = time.monotonic()
    with pytest.raises(ProbeError, match="did not answer"):
        probe_interpreter(str(fake), timeout=1, use_cache=False)
    assert time.monotonic() - started < 10


@pytest.mark.reliability("D5")
def test_a_broken_interpreter_is_not_replaced_by_the_servers(tmp_path: Path) -> None:
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho boom >&2\nexit 3\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    with pytest.raises(ProbeError, match="exit 3"):
        probe_interpreter(str(fake), use_cache=False)
    with pytest.raises(ProbeError, match="not found"):
        probe_interpreter(str(tmp_path / "missing-python"))


def test_the_kernels_environment_is_probed_not_the_servers(tmp_path: Path, make_notebook) -> None:
    """A bare venv as the kernel: the server has PyYAML, the kernel does not → unresolved."""
    import subprocess

    venv = tmp_path / "kernel-env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next(venv.glob("lib/python3*/site-packages"))
    info = site / "fakepkg-2.5.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fakepkg\nVersion: 2.5\n")
    (info / "top_level.txt").write_text("fakemod\n")
    (info / "INSTALLER").write_text("pip\n")
    nb = make_notebook(["import yaml\nimport fakemod"])
    spec = take_snapshot(nb, python=str(venv / "bin" / "python"))
    by_reason = {p.name: p.reason for p in spec.packages}
    assert by_reason["fakepkg"] is None
    # no ipykernel in that env: pinned from the index for running, never as imported
    assert by_reason["ipykernel"] == "runner"
    assert not next(p for p in spec.packages if p.name == "ipykernel").requested
    assert {(w.code, w.cell) for w in spec.warnings} >= {
        ("unresolved-import", 0),
        ("runner-from-index", None),
    }
    assert spec.interpreter.startswith(str(venv))
    offline = take_snapshot(
        nb, python=str(venv / "bin" / "python"), options=SnapshotOptions(from_index=False)
    )
    assert [p.requirement for p in offline.packages] == ["fakepkg==2.5"]
    assert "no-ipykernel" in {w.code for w in offline.warnings}


@pytest.mark.reliability("C6")
def test_an_exact_pip_pin_the_kernel_lacks_is_pinned_from_the_index(make_notebook) -> None:
    """`%pip install tabulate==0.9.0` never ran in the kernel: pinned (with reason) and flagged."""
    nb = make_notebook(["%pip install tabulate==0.9.0 'cowsay>=1'", "import tabulate"])
    spec = take_snapshot(nb, python=sys.executable)
    pin = next(p for p in spec.packages if p.name.lower() == "tabulate")
    assert (pin.version, pin.reason, pin.requested) == ("0.9.0", "pip-pin", True)
    found = {(w.code, w.cell) for w in spec.warnings}
    assert ("pip-pin-from-index", 0) in found
    assert ("pip-not-installed", 0) in found  # a range stays a warning with the fix
