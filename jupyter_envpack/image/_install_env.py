"""Runs in a build step (base image's python3, stdlib only): install both venvs with uv from the
host's wheelhouse URL, then remove uv. Usage: install_env.py URL UV_VERSION.
"""

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
        data = resp.read()
    tmp = "/tmp/envpack/uv"
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        member = next(n for n in zf.namelist() if n.endswith(".data/scripts/uv"))
        os.makedirs(tmp, exist_ok=True)
        target = os.path.join(tmp, "uv")
        with zf.open(member) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.chmod(target, 0o755)
    os.environ.update(UV_NO_CACHE="1", UV_PYTHON_DOWNLOADS="never", UV_LINK_MODE="copy")
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
            ],
            check=True,
        )
    shutil.rmtree("/tmp/envpack", ignore_errors=True)


if __name__ == "__main__":
    main()
