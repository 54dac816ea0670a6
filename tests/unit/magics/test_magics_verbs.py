"""``%envpack`` in a real IPython shell: arguments, notebook discovery, verbs that need no Docker."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from IPython.core.error import UsageError
from IPython.testing import globalipapp

from jupyter_envpack.errors import InputError, NotFoundError
from jupyter_envpack.magics import EnvpackMagics, register_verb
from jupyter_envpack.widgets import FieldsView, SnapshotView, TextView

SESSION_KEYS = ("__session__", "__vsc_ipynb_file__")


@pytest.fixture
def ip(monkeypatch):
    """The test IPython shell with the extension loaded, attached to no notebook."""
    shell = globalipapp.get_ipython()
    shell.run_line_magic("load_ext", "jupyter_envpack")
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    monkeypatch.setenv("ENVPACK_MAGICS_DISPLAY", "text")
    for key in SESSION_KEYS:
        shell.user_ns.pop(key, None)
    yield shell
    for key in SESSION_KEYS:
        shell.user_ns.pop(key, None)


@pytest.fixture
def notebook(make_notebook):
    return make_notebook(
        ["import packaging.version\nprint(packaging.version.Version('1'))"], name="analysis.ipynb"
    )


def test_loading_the_extension_imports_nothing_heavy():
    code = (
        "import sys\nfrom IPython.core.interactiveshell import InteractiveShell\n"
        "ip = InteractiveShell.instance()\nip.run_line_magic('load_ext', 'jupyter_envpack')\n"
        "heavy = [m for m in ('docker', 'nbclient', 'ipywidgets', 'jupyter_envpack.image') "
        "if m in sys.modules]\nprint(heavy)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert out.strip() == "[]"


def test_help_lists_every_verb_and_option(ip):
    doc = ip.find_line_magic("envpack").__doc__
    for word in (
        "snapshot",
        "dockerfile",
        "build",
        "run",
        "binder",
        "status",
        "--notebook",
        "--base-image",
        "--parameter",
        "--write",
        "--host",
        "--plain",
        "%envpack run",
    ):
        assert word in doc


def test_snapshot_of_the_session_notebook_probes_this_kernel(ip, notebook):
    ip.user_ns["__session__"] = str(notebook)
    view = ip.run_line_magic("envpack", "snapshot")
    assert isinstance(view, SnapshotView)
    spec = view.spec
    assert spec.interpreter == sys.executable
    assert spec.python_minor == f"{sys.version_info[0]}.{sys.version_info[1]}"
    requested = {p.name.lower() for p in spec.packages if p.requested}
    assert "packaging" in requested
    assert "<td>packaging</td>" in view._repr_html_().lower()
    assert "packaging==" in repr(view)


def test_notebook_found_from_env_vscode_and_relative_session(ip, notebook, monkeypatch):
    magics = EnvpackMagics(shell=ip)
    monkeypatch.setenv("JPY_SESSION_NAME", str(notebook))
    assert magics.notebook_path() == notebook
    ip.user_ns["__vsc_ipynb_file__"] = str(notebook)
    assert magics.notebook_path() == notebook
    ip.user_ns.pop("__vsc_ipynb_file__")
    monkeypatch.setenv("JPY_SESSION_NAME", "some/folder/analysis.ipynb")  # root-relative
    monkeypatch.chdir(notebook.parent)
    assert magics.notebook_path() == Path.cwd() / "analysis.ipynb"
    assert magics.notebook_path(str(notebook)) == notebook


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ("snapshot", "which notebook"),
        ("frobnicate --notebook x.ipynb", "unknown verb"),
        ("snapshot --bogus", "unrecognized arguments"),
        ('build "a;id"', "unrecognized arguments"),
        ("snapshot --write", "--write does not apply"),
        ("binder -p n 1", "--parameter does not apply"),
        ("snapshot --notebook 'unbalanced", "cannot parse"),
        ("snapshot --python /x --kernel k", "either --python or --kernel"),
        ("snapshot --notebook notes.txt", "not a notebook"),
    ],
)
@pytest.mark.reliability("K2")
def test_usage_errors_are_short(ip, line, needle):
    with pytest.raises(UsageError) as err:
        ip.run_line_magic("envpack", line)
    assert needle in str(err.value)


@pytest.mark.reliability("K2")
def test_no_shell_is_ever_used(ip, notebook, monkeypatch):
    calls = []
    real_init = subprocess.Popen.__init__

    def spy(self, *args, **kwargs):
        calls.append(kwargs.get("shell", False))
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(subprocess.Popen, "__init__", spy)
    ip.run_line_magic("envpack", f"snapshot --notebook {notebook} --python {sys.executable}")
    ip.run_line_magic("envpack", f"binder --notebook {notebook}")
    assert not any(calls)  # the probe may be cached, and git is read without a process (L2)


def test_envpack_errors_are_short_cell_errors(ip, tmp_path, capsys):
    missing = tmp_path / "gone.ipynb"
    with pytest.raises(NotFoundError) as err:
        ip.run_line_magic("envpack", f"snapshot --notebook {missing}")
    lines = err.value._render_traceback_()
    assert "NotFoundError" in lines[0] and str(missing) in lines[0]
    assert lines[1].startswith("hint: ")
    result = ip.run_cell(f"%envpack snapshot --notebook {missing}")
    assert isinstance(result.error_in_exec, NotFoundError)
    out = capsys.readouterr()
    shown = out.out + out.err
    assert "hint:" in shown and "Traceback" not in shown and "magics.py" not in shown


def test_bad_parameters_fail_before_any_docker_work(ip, notebook):
    with pytest.raises(InputError) as err:
        ip.run_line_magic("envpack", f"run --notebook {notebook} --image x -p 1bad 2")
    assert "1bad" in err.value.message


@pytest.mark.parametrize(
    ("flags", "needle"),
    [("--image x --reconstruct", "builds its own image"), ("--image x --engine venv", "venv")],
)
def test_contradicting_run_flags_are_refused_as_on_the_command_line(ip, notebook, flags, needle):
    with pytest.raises(InputError, match=needle):
        ip.run_line_magic("envpack", f"run --notebook {notebook} {flags}")


def test_dockerfile_uses_the_cell_options(ip, notebook):
    view = ip.run_line_magic(
        "envpack",
        f"dockerfile --notebook {notebook} --base-image envpack-test/debian-python:bookworm",
    )
    assert isinstance(view, TextView)
    assert "FROM envpack-test/debian-python:bookworm" in view.text
    assert view._repr_html_().startswith("<pre>")


def test_binder_verb_writes_the_folder_and_gives_the_link(ip, make_notebook, tmp_path):
    repo = tmp_path / "repo"
    nb = make_notebook(["import packaging"], name="n b.ipynb", folder=repo)
    for cmd in (
        ["init", "-q", "-b", "main"],
        ["add", "."],
        ["-c", "user.email=t@e.org", "-c", "user.name=T", "commit", "-qm", "nb"],
        ["remote", "add", "origin", "git@github.com:envpack-test/demo.git"],
    ):
        subprocess.run(["git", "-C", str(repo), *cmd], check=True)
    ip.user_ns["__session__"] = str(nb)
    view = ip.run_line_magic("envpack", "binder --write --branch")
    assert isinstance(view, FieldsView)
    assert view.data["link"] == (
        "https://mybinder.org/v2/gh/envpack-test/demo/main?urlpath=lab/tree/n%2520b.ipynb"
    )
    assert (repo / "binder/requirements.txt").is_file()
    assert {w["code"] for w in view.data["warnings"]} >= {"commit-not-pushed", "binder-uncommitted"}
    assert "fix: git push" in repr(view)
    with pytest.raises(InputError):
        ip.run_line_magic("envpack", "binder --host http://evil.example")


def test_status_says_clearly_when_docker_is_absent(ip, notebook, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    view = ip.run_line_magic("envpack", f"status --notebook {notebook}")
    assert view.fields["docker"].startswith("not reachable")
    assert "binder still work" in view.fields["docker"]
    assert view.fields["binder"].startswith("the notebook is not in a git repository")


def test_other_areas_can_register_verbs(ip, notebook, monkeypatch):
    import jupyter_envpack.magics as magics_module

    monkeypatch.setattr(magics_module, "_VERBS", dict(magics_module._VERBS))
    monkeypatch.setattr(
        magics_module, "VERB_OPTIONS", {k: set(v) for k, v in magics_module.VERB_OPTIONS.items()}
    )
    register_verb("echo", lambda m, args: str(m.notebook_path(args.notebook)), ("image",))
    assert ip.run_line_magic("envpack", f"echo --notebook {notebook} --image x") == str(notebook)


def test_submit_dry_run_shows_the_job_and_changes_nothing(ip, make_notebook, tmp_path, monkeypatch):
    monkeypatch.setenv("ENVPACK_JOBS_DB", str(tmp_path / "jobs.sqlite"))
    nb = make_notebook(["n = 2", "print(n)"], name="job.ipynb")
    view = ip.run_line_magic(
        "envpack",
        f"submit --notebook {nb} --dry-run --backend swarm "
        "-p n 3 --base-image envpack-test/debian-python:bookworm",
    )
    assert isinstance(view, TextView)
    assert "ReplicatedJob" in view.text and "n = 3" in view.text
    assert "org.jupyter.envpack.kind: job" in view.text
    assert "Image: envpack/job:" in view.text
    jobs = ip.run_line_magic("envpack", "jobs")
    assert jobs.rows == [] and jobs.headline.startswith("no jobs yet")
    with pytest.raises(UsageError, match="--wait does not apply"):
        ip.run_line_magic("envpack", f"run --notebook {nb} --wait")


def test_run_engine_venv_needs_no_docker(ip, notebook, tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent.sock")
    monkeypatch.setenv("ENVPACK_VENV_CACHE", str(tmp_path / "venvs"))
    view = ip.run_line_magic(
        "envpack", f"run --notebook {notebook} --python {sys.executable} --engine venv"
    )
    assert isinstance(view, FieldsView)
    report = view.data.report
    assert report.engine == "venv" and report.image.startswith("venv:")
    assert (tmp_path / "venvs" / report.image.removeprefix("venv:") / ".envpack-complete").is_file()
    assert report.run_status == "completed"
    executed = nbformat.read(view.data.output_path, as_version=4)
    assert executed.cells[0].outputs[0]["text"] == "1\n"


def test_a_reconstructed_dockerfile_and_snapshot_say_so(ip, notebook):
    """``--reconstruct --as-of`` in the magic: real index, real uv; no kernel package is used."""
    line = f"--notebook {notebook} --reconstruct --as-of 2024-03-01"
    view = ip.run_line_magic("envpack", f"snapshot {line}")
    assert view.spec.origin == "reconstructed"
    assert view.spec.reconstruction["as_of_used"] == "2024-03-01"
    shown = " ".join(repr(view).split())
    assert "an educated guess, not what ran" in shown and "packaging==23.2" in shown, shown
    text = ip.run_line_magic(
        "envpack", f"dockerfile {line} --base-image envpack-test/debian-python:bookworm"
    ).text
    assert "# RECONSTRUCTED environment (packages as of 2024-03-01)" in text
