"""Dockerfile generation, references and the build context (RELIABILITY D1, D6, D7, B3, B4, E5)."""

from __future__ import annotations

import io
import tarfile
import time
from pathlib import Path
from typing import Any

import nbformat
import pytest
from dockerfile_parse import DockerfileParser
from hypothesis import given, settings
from hypothesis import strategies as st

from jupyter_envpack.errors import EngineError, InputError
from jupyter_envpack.image import BuildOptions, render_dockerfile
from jupyter_envpack.image.context import make_context
from jupyter_envpack.image.dockerfile import label_value
from jupyter_envpack.image.engine import connect
from jupyter_envpack.image.refs import validate_reference
from jupyter_envpack.snapshot.spec import EnvSpec, PinnedPackage

BASE = "envpack-test/debian-python:bookworm"
RUNNER = ["nbclient==0.11.0"]


def spec(name: str = "nb.ipynb") -> EnvSpec:
    return EnvSpec(
        notebook=name,
        python_version="3.11.7",
        packages=[
            PinnedPackage("numpy", "2.0.0", True, ("numpy",)),
            PinnedPackage("ipykernel", "6.29.0"),
        ],
    )


def instructions(text: str) -> list[tuple[str, str]]:
    parser = DockerfileParser(fileobj=io.BytesIO(text.encode()))
    return [(i["instruction"], i["value"]) for i in parser.structure]


@pytest.mark.reliability("D7")
def test_dockerfile_invariants() -> None:
    text = render_dockerfile(spec(), BuildOptions(base_image=BASE))
    ins = instructions(text)
    users = [v for k, v in ins if k == "USER"]
    assert users[-1] == "1000:1000"
    assert not any(k in {"ARG", "ADD"} for k, _ in ins)
    froms = [v for k, v in ins if k == "FROM"]
    assert froms == [f"{BASE} AS envpack-deps", BASE]
    # dependency layers come before the notebook layer
    copies = [v for k, v in ins if k == "COPY"]
    assert copies[-1] == "--chown=1000:1000 work/ /home/envpack/work/"
    assert next(i for i, (k, v) in enumerate(ins) if "requirements.lock" in v) < next(
        i for i, (k, v) in enumerate(ins) if v.startswith("--chown")
    )
    env_lines = " ".join(v for k, v in ins if k == "ENV")
    assert not any(word in env_lines.upper() for word in ("TOKEN", "PASSWORD", "SECRET"))
    labels = DockerfileParser(fileobj=io.BytesIO(text.encode())).labels
    assert labels["org.jupyter.envpack.snapshot"] == spec().hash
    assert labels["org.opencontainers.image.base.name"] == BASE


def test_default_base_image_matches_the_kernels_python() -> None:
    froms = [v for k, v in instructions(render_dockerfile(spec())) if k == "FROM"]
    assert froms == ["python:3.11-slim AS envpack-deps", "python:3.11-slim"]


@pytest.mark.reliability("D1")
@settings(max_examples=200)
@given(st.text(min_size=1, max_size=80))
def test_any_notebook_name_cannot_add_instructions(name: str) -> None:
    text = render_dockerfile(spec(name), BuildOptions(base_image=BASE), notebook_name=name)
    ins = instructions(text)
    baseline = instructions(render_dockerfile(spec(), BuildOptions(base_image=BASE)))
    assert [k for k, _ in ins] == [k for k, _ in baseline]
    assert label_value(name).count('"') == 0 and "\n" not in label_value(name)


@pytest.mark.reliability("D6")
@pytest.mark.parametrize(
    "ref",
    [
        "python:3.11\nRUN x",
        "python:3.11 AS x",
        "Python:3.11",
        "a@sha256:short",
        "x:" + "t" * 300,
        "",
        "a b",
        "-rf",
    ],
)
def test_bad_base_image_references_are_refused(ref: str) -> None:
    with pytest.raises(InputError):
        validate_reference(ref)
    with pytest.raises(InputError):
        render_dockerfile(spec(), BuildOptions(base_image=ref))


@pytest.mark.parametrize(
    "ref",
    ["python:3.11-slim", "127.0.0.1:5000/team/nb:abc", "ghcr.io/o/r@sha256:" + "a" * 64, BASE],
)
def test_good_references(ref: str) -> None:
    assert validate_reference(ref) == ref


@pytest.mark.reliability("B3", "B4", "E5")
def test_context_is_an_allowlist_without_outputs_or_outside_files(tmp_path: Path) -> None:
    canary = "CANARY-ctx-41"
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.py").write_text(f"X = '{canary}'\n")
    root = tmp_path / "project"
    root.mkdir()
    for hidden in (".env", ".netrc", "pip.conf", "jpserver-1.json"):
        (root / hidden).write_text(canary)
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text(canary)
    (root / "helper.py").write_text("VALUE = 1\n")
    (root / "secret.py").symlink_to(outside / "secret.py")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(1)")])
    nb.cells[0].outputs = [nbformat.v4.new_output("stream", name="stdout", text=canary)]
    nb.cells[0].execution_count = 1
    path = root / "nb.ipynb"
    nbformat.write(nb, path)
    s = EnvSpec(notebook=str(path), python_version="3.11.7", local_files=["helper.py", "secret.py"])
    ctx = make_context(s, path, BuildOptions(base_image=BASE), runner=RUNNER)
    assert set(ctx.files) == {
        "Dockerfile",
        ".dockerignore",
        "envpack/requirements.lock",
        "envpack/runner.lock",
        "envpack/tools.lock",
        "envpack/run_notebook.py",
        "envpack/install_env.py",
        "envpack/kernel.json",
        "work/nb.ipynb",
        "work/helper.py",
    }
    with tarfile.open(fileobj=ctx.tar()) as tar:
        blob = b"".join(tar.extractfile(m).read() for m in tar.getmembers() if m.isfile())
    assert canary.encode() not in blob


def test_tag_is_content_addressed(tmp_path: Path) -> None:
    path = tmp_path / "nb.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1")]), path)
    s = EnvSpec(notebook=str(path), python_version="3.11.7")
    a = make_context(s, path, BuildOptions(base_image=BASE), runner=RUNNER)
    b = make_context(s, path, BuildOptions(base_image=BASE), runner=RUNNER)
    assert a.image == b.image and a.image.startswith("envpack/nb:")
    s.packages.append(PinnedPackage("six", "1.16.0", True))
    c = make_context(s, path, BuildOptions(base_image=BASE), runner=RUNNER)
    assert c.image != a.image


@pytest.mark.reliability("F1")
@pytest.mark.parametrize("host", ["unix:///tmp/envpack-no-such.sock", "tcp://10.255.255.1:2375"])
def test_dead_engine_is_a_clear_error_within_5s(monkeypatch, host: str) -> None:
    monkeypatch.setenv("DOCKER_HOST", host)
    started = time.monotonic()
    with pytest.raises(EngineError, match="Docker engine not reachable at") as info:
        connect()
    assert time.monotonic() - started < 6.5
    assert info.value.status == 503


def test_served_wheelhouse_variant_installs_runner_then_heavy_layers_then_the_rest() -> None:
    url = "http://172.17.0.1:45333/" + "ab" * 16 + "/"
    heavy = ["numpy==1.26.4", "pandas==2.1.4"]
    digests = {"numpy==1.26.4": "a" * 64, "pandas==2.1.4": "b" * 64}
    opts = BuildOptions(base_image=BASE)
    text = render_dockerfile(spec(), opts, wheel_url=url, heavy=heavy, digests=digests)
    ins = instructions(text)
    assert [v for k, v in ins if k == "FROM"] == [BASE]
    runs = [v for k, v in ins if k == "RUN" and "install_env" in v]
    steps = ["runner", f"layer {'a' * 64}", f"layer {'b' * 64}", "rest"]
    assert runs == [f"python3 /tmp/envpack/install_env.py {url} 0.9.7 {s}" for s in steps]
    with pytest.raises(ValueError):  # a RUN line only ever carries a sha256
        render_dockerfile(spec(), opts, wheel_url=url, heavy=heavy, digests={})
    assert [v for k, v in ins if k == "USER"][-1] == "1000:1000"
    assert not any("wheels" in v for k, v in ins if k == "COPY")
    with pytest.raises(ValueError):
        render_dockerfile(spec(), BuildOptions(base_image=BASE), wheel_url="http://x/\nRUN id")


def test_wheel_server_serves_only_wheels_behind_its_token(tmp_path: Path) -> None:
    import urllib.error
    import urllib.request

    from jupyter_envpack.image.wheelserver import serve_wheels

    (tmp_path / "a-1.0-py3-none-any.whl").write_bytes(b"wheel")
    (tmp_path / "secret.txt").write_text("CANARY")
    with serve_wheels(tmp_path, "127.0.0.1") as url:
        index = urllib.request.urlopen(url, timeout=5).read().decode()  # noqa: S310 - local test server
        assert "a-1.0-py3-none-any.whl" in index and "secret" not in index
        assert urllib.request.urlopen(url + "a-1.0-py3-none-any.whl", timeout=5).read() == b"wheel"  # noqa: S310 - local test server
        root = url.rsplit("/", 2)[0] + "/"
        for bad in (url + "secret.txt", url + "..%2fserve.json", root, url + "../serve.json"):
            with pytest.raises(urllib.error.HTTPError):
                urllib.request.urlopen(bad, timeout=5)  # noqa: S310 - local test server
    with serve_wheels(tmp_path, "127.0.0.1") as again:
        assert again == url  # the same URL every time: the RUN line and its cache stay valid
    assert oct((tmp_path / "serve.json").stat().st_mode & 0o777) == "0o600"


@pytest.mark.reliability("L3", "F8")
def test_concurrent_builds_of_one_process_share_the_server_they_started(tmp_path: Path) -> None:
    """The server's two concurrent builds: the second joins the first's server (no copy of its
    wheels), each sees only its own wheels plus the other's while both run, and the port is free
    again after the last; a socket of anyone else on the port is still never trusted."""
    import socket
    import urllib.error
    import urllib.request

    from jupyter_envpack.image.wheelserver import WheelServerBusy, serve_wheels

    for name in ("a-1.0-py3-none-any.whl", "b-1.0-py3-none-any.whl", "c-1.0-py3-none-any.whl"):
        (tmp_path / name).write_bytes(name.encode())
    first_names = frozenset({"a-1.0-py3-none-any.whl"})
    with serve_wheels(tmp_path, "127.0.0.1", first_names) as url:
        with serve_wheels(tmp_path, "127.0.0.1", frozenset({"b-1.0-py3-none-any.whl"})) as again:
            assert again == url
            index = urllib.request.urlopen(url, timeout=5).read().decode()  # noqa: S310 - local
            assert "a-1.0" in index and "b-1.0" in index and "c-1.0" not in index
        with pytest.raises(urllib.error.HTTPError):  # the second build is over: b is gone
            urllib.request.urlopen(url + "b-1.0-py3-none-any.whl", timeout=5)  # noqa: S310
        assert urllib.request.urlopen(url + "a-1.0-py3-none-any.whl", timeout=5).read()  # noqa: S310
    port = int(url.split(":")[2].split("/")[0])
    with socket.socket() as squatter:  # someone else takes the port: never trusted, never asked
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", port))
        squatter.listen(1)
        with pytest.raises(WheelServerBusy), serve_wheels(tmp_path, "127.0.0.1", first_names):
            pass


@pytest.mark.reliability("F2")
@pytest.mark.timeout(30)
def test_a_hung_engine_is_a_clear_error_within_the_connect_timeout(monkeypatch, tmp_path) -> None:
    """A daemon that accepts connections but never answers (RELIABILITY F2's chaos socket)."""
    import socket
    import threading

    path = tmp_path / "hung.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                accepted.append(conn)  # read nothing, answer nothing
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")
    started = time.monotonic()
    try:
        with pytest.raises(EngineError, match="not reachable"):
            connect()
        assert time.monotonic() - started < 8
    finally:
        stop.set()
        t.join(timeout=2)
        for conn in accepted:
            conn.close()
        server.close()


@pytest.mark.reliability("D7", "B3", "B4", "L5")
def test_data_files_get_their_own_layer_before_the_notebook(tmp_path: Path) -> None:
    from jupyter_envpack.snapshot.spec import DataFile

    nb = nbformat.v4.new_notebook()
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x.csv").write_text("a,b\n")
    s = spec()
    s.data_files = [DataFile("data/x.csv", 4)]
    ctx = make_context(s, path, BuildOptions(base_image=BASE), runner=RUNNER)
    assert ctx.files["data/data/x.csv"] == b"a,b\n"
    copies = [v for k, v in instructions(ctx.files["Dockerfile"].decode()) if k == "COPY"]
    data_at = copies.index("--chown=1000:1000 data/ /home/envpack/work/")
    assert data_at == len(copies) - 2 and copies[-1].endswith("work/ /home/envpack/work/")
    assert "!data/" in ctx.files[".dockerignore"].decode()
    assert " data/ " not in render_dockerfile(spec(), BuildOptions(base_image=BASE))
    # a data file swapped for a symlink after the snapshot is never read through
    (tmp_path / "data" / "x.csv").unlink()
    (tmp_path / "data" / "x.csv").symlink_to("/etc/hostname")
    with pytest.raises(InputError, match="changed or disappeared"):
        make_context(s, path, BuildOptions(base_image=BASE), runner=RUNNER)


def test_base_image_by_digest_is_accepted_and_labelled() -> None:
    digest = "sha256:" + "ab" * 32
    ref = f"127.0.0.1:5000/team/base:1.0@{digest}"
    opts = BuildOptions(base_image=ref)
    opts.validate()
    text = render_dockerfile(spec(), opts)
    assert ("FROM", ref) in instructions(text)
    assert f'org.opencontainers.image.base.digest="{digest}"' in text
    with pytest.raises(InputError):
        BuildOptions(base_image="base@sha256:xyz").validate()
    local = render_dockerfile(
        spec(), BuildOptions(base_image="b:1", base_image_id="sha256:" + "c" * 64)
    )
    assert 'org.jupyter.envpack.base.id="sha256:' in local and "base.digest" not in local


def test_the_engine_is_named_in_reports() -> None:
    from jupyter_envpack.image.engine import engine_name

    class Podman:  # Podman's API service is not running here: its /version answer
        def version(self) -> dict[str, Any]:
            return {"Components": [{"Name": "Podman Engine", "Version": "4.3.1"}]}

    assert engine_name(Podman()) == "podman"
    assert engine_name(connect()) == "docker"
