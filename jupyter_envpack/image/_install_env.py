"""Runs in a build step (base image's python3, stdlib only): install from the host's wheelhouse URL
with uv, then remove uv. Usage: install_env.py URL UV_VERSION STEP, where STEP is

- ``runner``: create both venvs; install runner.lock into the runner's;
- ``layer SHA256``: install the one wheel the wheelhouse lists with that sha256 (one heavy
  distribution) into the notebook's venv, with --require-hashes;
- ``rest``: install rest.lock (everything else) into it, then remove /tmp/envpack;
- ``all`` (default): runner.lock and requirements.lock in one step, then remove /tmp/envpack.

The uv wheel is checked against the sha256 in tools.lock before it runs, and locks with --hash
lines are installed with --require-hashes: a server impersonating the wheelhouse cannot change a
byte of what is installed (RELIABILITY L3).
"""

import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import urllib.request
import zipfile

TMP = "/tmp/envpack"
ENV = "/opt/envpack/env"
RUNNER = "/opt/envpack/runner"


def fetch_uv(url, uv_version):
    """Download, check and unpack the uv binary; return its path."""
    with urllib.request.urlopen(url, timeout=60) as resp:
        index = resp.read().decode()
    names = re.findall(r'href="(uv-%s-[^"#]+\.whl)[#"]' % re.escape(uv_version), index)
    if not names:
        sys.exit("envpack: uv %s is not in the wheelhouse at %s" % (uv_version, url))
    with urllib.request.urlopen(url + names[0], timeout=120) as resp:
        data = resp.read(256 * 1024 * 1024)
    expected = hashes_of(TMP + "/tools.lock")
    if expected and hashlib.sha256(data).hexdigest() not in expected:
        sys.exit("envpack: hash mismatch for %s: not the uv wheel that was fetched" % names[0])
    target = os.path.join(TMP, "uv", "uv")
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        member = next(n for n in zf.namelist() if n.endswith(".data/scripts/uv"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with zf.open(member) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst)
    os.chmod(target, 0o755)
    return target


def layer_lock(url, digest):
    """A lock of the one wheel listed with ``digest``: name==version --hash=sha256:digest."""
    if not re.fullmatch(r"[0-9a-f]{64}", digest):
        sys.exit("envpack: not a sha256: %r" % digest)
    with urllib.request.urlopen(url, timeout=60) as resp:
        index = resp.read().decode()
    names = re.findall(r'href="([^"#/]+\.whl)#sha256=%s"' % digest, index)
    if len(names) != 1:
        sys.exit("envpack: hash mismatch: no wheel with sha256 %s in the wheelhouse" % digest)
    name, version = names[0].split("-")[:2]
    lock = TMP + "/layer.lock"
    with open(lock, "w") as fh:
        fh.write("%s==%s --hash=sha256:%s\n" % (name, version, digest))
    return lock


def hashes_of(lock):
    with open(lock) as fh:
        return re.findall(r"--hash=sha256:([0-9a-f]{64})", fh.read())


def install(uv, url, prefix, lock):
    hashes = ["--require-hashes"] if hashes_of(lock) else []
    cmd = [uv, "pip", "install", "--no-deps", "--no-index", "--find-links", url]
    cmd.append("--compile-bytecode")  # the run's root is read-only: no .pyc could be written
    subprocess.run([*cmd, "--python", prefix + "/bin/python", "-r", lock, *hashes], check=True)


def venv(uv, prefix):
    subprocess.run([uv, "venv", "--quiet", "--python", "python3", prefix], check=True)


def main():
    url, uv_version = sys.argv[1], sys.argv[2]
    step = sys.argv[3] if len(sys.argv) > 3 else "all"
    uv = fetch_uv(url, uv_version)
    os.environ.update(UV_NO_CACHE="1", UV_PYTHON_DOWNLOADS="never", UV_LINK_MODE="copy")
    if step in ("runner", "all"):
        venv(uv, RUNNER)
        install(uv, url, RUNNER, TMP + "/runner.lock")
        venv(uv, ENV)
    if step == "layer":
        install(uv, url, ENV, layer_lock(url, sys.argv[4]))
    elif step in ("rest", "all"):
        install(uv, url, ENV, TMP + ("/rest.lock" if step == "rest" else "/requirements.lock"))
        shutil.rmtree(TMP, ignore_errors=True)
    shutil.rmtree(os.path.dirname(uv), ignore_errors=True)


if __name__ == "__main__":
    main()
