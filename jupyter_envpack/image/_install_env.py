"""Runs in a build step (base image's python3, stdlib only): install both venvs with uv from the
host's wheelhouse URL, then remove uv. Usage: install_env.py URL UV_VERSION.

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


def main():
    url, uv_version = sys.argv[1], sys.argv[2]
    with urllib.request.urlopen(url, timeout=60) as resp:
        index = resp.read().decode()
    names = re.findall(r'href="(uv-%s-[^"]+\.whl)"' % re.escape(uv_version), index)
    if not names:
        sys.exit("envpack: uv %s is not in the wheelhouse at %s" % (uv_version, url))
    with urllib.request.urlopen(url + names[0], timeout=120) as resp:
        data = resp.read(256 * 1024 * 1024)
    with open("/tmp/envpack/tools.lock") as fh:
        expected = re.findall(r"--hash=sha256:([0-9a-f]{64})", fh.read())
    if expected and hashlib.sha256(data).hexdigest() not in expected:
        sys.exit("envpack: hash mismatch for %s: not the uv wheel that was fetched" % names[0])
    tmp = "/tmp/envpack/uv"
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        member = next(n for n in zf.namelist() if n.endswith(".data/scripts/uv"))
        os.makedirs(tmp, exist_ok=True)
        target = os.path.join(tmp, "uv")
        with zf.open(member) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.chmod(target, 0o755)
    os.environ.update(UV_NO_CACHE="1", UV_PYTHON_DOWNLOADS="never", UV_LINK_MODE="copy")
    hashes = ["--require-hashes"] if expected else []
    for prefix, lock in (
        ("/opt/envpack/runner", "/tmp/envpack/runner.lock"),
        ("/opt/envpack/env", "/tmp/envpack/requirements.lock"),
    ):
        subprocess.run([target, "venv", "--quiet", "--python", "python3", prefix], check=True)
        subprocess.run(
            [
                target,
                "pip",
                "install",
                "--no-deps",
                "--no-index",
                "--find-links",
                url,
                "--python",
                prefix + "/bin/python",
                "-r",
                lock,
                "--compile-bytecode",  # the run's root is read-only: no .pyc could be written
                *hashes,
            ],
            check=True,
        )
    shutil.rmtree("/tmp/envpack", ignore_errors=True)


if __name__ == "__main__":
    main()
