"""System needs, commands, hashes, the in-image check and index credentials (issue 9.5/9.7, 10.3/10.7)."""

from __future__ import annotations

import gzip
import hashlib
import io
import subprocess
import zipfile
from pathlib import Path

import pytest
from wheel_builder import canary_wheel, serve_guarded_index

from jupyter_envpack.errors import BuildError
from jupyter_envpack.image import wheels as wheels_mod
from jupyter_envpack.image.dockerfile import apt_layer, render_dockerfile
from jupyter_envpack.image.options import BuildOptions
from jupyter_envpack.image.syslibs import (
    SystemNeeds,
    _parse_probe,
    contents_url,
    parse_contents,
    plan_system,
    scan_wheel,
)
from jupyter_envpack.image.verify import lock_mismatches
from jupyter_envpack.image.wheels import ensure_wheels, hashed_lock, record_hashes, wheel_hashes
from jupyter_envpack.snapshot.commands import CommandUse, commands_in_source, programs_in_shell
from jupyter_envpack.snapshot.spec import EnvSpec, PinnedPackage

HOST_ELF = Path("/usr/lib/x86_64-linux-gnu/libz.so.1")


@pytest.mark.parametrize(
    ("source", "programs"),
    [
        ("!file data.npy", ["file"]),
        ("x = !ls -l | grep foo", ["ls", "grep"]),
        ("!!wc -l x\n%sx unzip a.zip", ["wc", "unzip"]),
        (
            "%%bash\nfor f in *.npy; do file $f; done\nif [ -f x ]; then gzip x; fi # c",
            ["file", "gzip"],
        ),
        ("%%script sh\nA=1 sudo -E convert a b && echo hi; cd x", ["convert"]),
        ("import subprocess\nsubprocess.run(['ffmpeg', '-i', f])", ["ffmpeg"]),
        ("import subprocess as s, os\nos.system('curl -s x | jq .')", ["curl", "jq"]),
        ("import subprocess\nsubprocess.check_output('tar xf a', shell=True)", ["tar"]),
        ("!{sys.executable} -m pip list\n!$PY x\nsubprocess.run(cmd)", []),
        ("!/usr/bin/file x\n!./script.sh", ["file"]),
        ("%%python\nimport os", []),
        ("!echo 'unbalanced", []),
    ],
)
def test_commands_a_cell_runs_are_parsed_never_run(source: str, programs: list[str]) -> None:
    assert commands_in_source(source) == programs


def test_shell_words_that_are_not_literal_programs_are_skipped() -> None:
    assert programs_in_shell("export X=1; ${CMD} a; $(which y); exit 0") == ["which"]


def test_the_contents_index_maps_sonames_and_programs_to_packages() -> None:
    text = (
        "usr/lib/x86_64-linux-gnu/libGL.so.1                       libs/libgl1\n"
        "usr/lib/x86_64-linux-gnu/libglib-2.0.so.0   libs/libglib2.0-0,debug/libglib2.0-0-dbg\n"
        "usr/bin/file                                               utils/file\n"
        "usr/share/doc/file/README                                  utils/file\n"
        "usr/lib/python3/dist-packages/x/y/z/libq.so.1              python/python3-q\n"
        "usr/bin/evil;rm                                            utils/bad;name\n"
    )
    index = parse_contents(io.BytesIO(gzip.decompress(gzip.compress(text.encode()))))
    assert index["libs"] == {
        "libGL.so.1": ["libgl1"],
        "libglib-2.0.so.0": ["libglib2.0-0", "libglib2.0-0-dbg"],
    }
    assert index["bins"] == {"file": ["file"], "evil;rm": []}


PROBE = (
    'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_CODENAME=bookworm\n@@\n'
    "\t90 libs found\n\tlibz.so.1 (libc6,x86-64) => /lib/x86_64-linux-gnu/libz.so.1\n"
    "\tlibc.so.6 (libc6,x86-64) => /lib/x86_64-linux-gnu/libc.so.6\n@@\n"
    "deb http://deb.example.org/debian bookworm main\n@@\nls\nsh\n@@\n/usr/bin/apt-get\n"
)


def test_the_base_probe_is_parsed_into_facts() -> None:
    facts = _parse_probe("sha256:x", PROBE)
    assert (facts.os_id, facts.codename, facts.mirror) == (
        "debian",
        "bookworm",
        "http://deb.example.org/debian",
    )
    assert facts.has_sources and facts.has_apt
    assert facts.sonames == {"libz.so.1", "libc.so.6"}
    assert facts.programs == {"ls", "sh"}
    url = "http://deb.example.org/debian/dists/bookworm/main/Contents-amd64.gz"
    assert contents_url(facts, "x86_64") == url
    bare = _parse_probe(
        "sha256:y", PROBE.replace("deb http://deb.example.org/debian bookworm main", "")
    )
    assert not bare.has_sources and bare.mirror == "http://deb.debian.org/debian"


def fake_wheel(folder: Path, name: str, members: dict[str, bytes]) -> Path:
    wheel = folder / name
    with zipfile.ZipFile(wheel, "w") as zf:
        for member, data in members.items():
            zf.writestr(member, data)
    return wheel


@pytest.mark.skipif(not HOST_ELF.is_file(), reason="needs the host's zlib as a real ELF file")
def test_needed_sonames_come_from_the_elf_and_vendored_ones_are_dropped(
    tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("ENVPACK_WHEEL_CACHE", str(tmp_path / "cache"))
    elf = HOST_ELF.read_bytes()  # a real shared object: DT_NEEDED libc.so.6, DT_SONAME libz.so.1
    members = {
        "z.libs/libz-abc.so.1.2.k": elf,
        "z-1.0.dist-info/entry_points.txt": b"[console_scripts]\nztool = z:main\n",
        "z-1.0.data/scripts/zsh-helper": b"#!python\n",
    }
    wheel = fake_wheel(tmp_path, "z-1.0-py3-none-any.whl", members)
    assert scan_wheel(wheel) == {
        "needed": ["libc.so.6"],
        "provided": ["libz-abc.so.1.2.k", "libz.so.1"],
        "scripts": ["zsh-helper", "ztool"],
    }

    facts = _parse_probe("sha256:x", PROBE.replace("\tlibc.so.6", "\tlibm.so.6"))
    monkeypatch.setattr(
        "jupyter_envpack.image.syslibs.file_index",
        lambda *a: {"libs": {"libc.so.6": ["libc6"]}, "bins": {"file": ["file"]}},
    )  # the mirror's real index is exercised in the integration tier
    uses = [CommandUse("file", 3), CommandUse("nope", 4), CommandUse("ztool", 5)]
    needs = plan_system([wheel], uses, facts, "x86_64", BuildOptions())
    assert needs.packages == ["file", "libc6"]
    assert [(f.code, f.cell) for f in needs.findings] == [("missing-command", 4)]


def test_the_apt_layer_is_validated_and_comes_before_the_light_environment() -> None:
    needs = SystemNeeds(
        packages=["libgl1", "bad;rm -rf /"],
        reasons={"libgl1": ["libGL.so.1", "x\nRUN id"]},
        sources="deb http://deb.debian.org/debian bookworm main",
    )
    layer = apt_layer(needs)
    assert "bad" not in layer and "RUN id" not in layer
    assert "--no-install-recommends" in layer and "rm -rf /var/lib/apt/lists/*" in layer
    assert "echo 'deb http://deb.debian.org/debian bookworm main' > /etc/apt/sources.list" in layer
    spec = EnvSpec(
        notebook="nb.ipynb", python_version="3.11.7", packages=[PinnedPackage("six", "1.15.0")]
    )
    text = render_dockerfile(spec, BuildOptions(base_image="debian:12"), system=needs)
    assert text.index("FROM debian:12\nUSER 0:0\n# System") < text.index("COPY --from=envpack-deps")
    # served: after the heavy layers (runtime needs; siblings' chains must not fork on them)
    url = "http://172.17.0.1:4000/" + "0" * 32 + "/"
    opts = BuildOptions(base_image="debian:12")
    pin = "six==1.15.0"
    text = render_dockerfile(
        spec, opts, wheel_url=url, system=needs, heavy=[pin], digests={pin: "0" * 64}
    )
    assert text.index(" layer 000") < text.index("# System") < text.index(" rest\n")
    assert apt_layer(SystemNeeds()) == ""


def test_hashes_are_recorded_at_fetch_and_a_changed_wheel_is_refused(tmp_path) -> None:
    wheel = fake_wheel(tmp_path, "six-1.15.0-py2.py3-none-any.whl", {"six.py": b"x = 1\n"})
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    assert record_hashes(tmp_path) == {wheel.name: digest}
    assert wheel_hashes([wheel]) == {wheel.name: digest}
    assert hashed_lock(["six==1.15.0"], {wheel.name: digest}) == [
        f"six==1.15.0 --hash=sha256:{digest}"
    ]
    fake_wheel(tmp_path, wheel.name, {"six.py": b"IMPOSTOR = 1\n"})
    with pytest.raises(BuildError) as info:
        wheel_hashes([wheel])
    assert info.value.reason == "hash-mismatch" and wheel.name in str(info.value)


def test_lock_mismatches_name_every_distribution() -> None:
    lock = ["six==1.15.0", "Tabulate==0.8.10", "gone==1.0"]
    inside = {"six": "1.15.0", "tabulate": "0.9.0", "smuggled": "6.6"}
    assert lock_mismatches(lock, inside) == [
        "gone==1.0 (image has nothing)",
        "tabulate==0.8.10 (image has 0.9.0)",
        "smuggled==6.6 (not in the lock)",
    ]
    assert lock_mismatches(["six==1.15"], {"six": "1.15.0"}) == []


@pytest.mark.reliability("L7")
def test_index_credentials_never_reach_a_command_line(tmp_path, httpserver, monkeypatch) -> None:
    """Spy on every argv given to a subprocess while pip fetches from a password-protected index."""
    canary = "CANARYargv7731"
    wheel = canary_wheel(tmp_path)
    serve_guarded_index(httpserver, wheel, "u", canary)
    seen: list[list[str]] = []
    real = subprocess.Popen

    def spy(argv, *args, **kwargs):
        seen.append([str(a) for a in argv])
        return real(argv, *args, **kwargs)

    monkeypatch.setattr(wheels_mod.subprocess, "Popen", spy)
    monkeypatch.setenv("ENVPACK_WHEEL_CACHE", str(tmp_path / "cache"))
    index = f"http://u:{canary}@127.0.0.1:{httpserver.port}/simple"
    opts = BuildOptions(index_url=index, extra_index_urls=(index,), ca_bundle=None)
    files = ensure_wheels(["envpack-canary-pkg==1.0"], "3.11", opts)
    assert [f.name for f in files] == [wheel.name]  # the credentials did reach pip...
    assert seen and all(canary not in " ".join(argv) for argv in seen)  # ...never through argv


def test_the_image_python_is_compared_with_the_kernels() -> None:
    from jupyter_envpack.image.verify import python_difference

    assert python_difference("3.11.7", "3.11.7") is None
    assert python_difference("3.11.7", "3.11.2") == "patch"
    assert python_difference("3.11.7", "3.12.1") == "minor"
    assert python_difference("3.11", "3.11.2") == "patch"  # a kernel that reported X.Y only


@pytest.mark.reliability("L3")
def test_fetched_wheels_must_have_a_hash_the_lock_records() -> None:
    from jupyter_envpack.errors import BuildError
    from jupyter_envpack.image.wheels import check_lock_hashes

    fetched = {
        "PyYAML-6.0.1-cp311-cp311-manylinux_2_17_x86_64.whl": "a" * 64,
        "six-1.16.0-py2.py3-none-any.whl": "b" * 64,
    }
    check_lock_hashes(fetched, {"pyyaml": ["a" * 64, "c" * 64]})  # six: not in the lock's hashes
    check_lock_hashes(fetched, {})  # no lock
    with pytest.raises(BuildError, match=r"PyYAML-6\.0\.1.* for pyyaml") as info:
        check_lock_hashes(fetched, {"PyYAML": ["c" * 64]})
    assert info.value.reason == "hash-mismatch"
