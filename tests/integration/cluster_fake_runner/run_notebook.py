"""A stand-in for envpack's image runner, for backend tests (labelled fake-runner).

It honours the runner contract of docs/core-api.md: parameters arrive in ENVPACK_PARAMETERS_CELL,
progress goes to stderr, ``--emit-result`` prints the executed notebook gzip+base64 between the
markers, and the exit code says how it went. The parameters steer it: ``sleep`` (seconds before
finishing), ``exit_code``, ``payload`` (bytes of random output to make a large result), ``bomb``
(GiB of zeros gzipped into the result block: a gzip bomb, RELIABILITY L6).
"""

import base64
import gzip
import json
import os
import sys
import time
import zlib

params = {}
exec(os.environ.get("ENVPACK_PARAMETERS_CELL", ""), {}, params)  # noqa: S102 - test stand-in
print(json.dumps({"envpack": "cell", "index": 0, "total": 1}), file=sys.stderr, flush=True)
time.sleep(float(params.get("sleep", 0)))
payload = base64.b64encode(os.urandom(int(params.get("payload", 0)))).decode()
nb = {
    "nbformat": 4,
    "nbformat_minor": 5,
    "metadata": {"envpack": {"fake_runner": True}},
    "cells": [
        {
            "cell_type": "code",
            "id": "c0",
            "metadata": {},
            "execution_count": 1,
            "source": os.environ.get("ENVPACK_PARAMETERS_CELL", ""),
            "outputs": [
                {
                    "output_type": "stream",
                    "name": "stdout",
                    "text": f"hello from {os.uname().nodename} uid={os.getuid()}\n" + payload,
                }
            ],
        }
    ],
}
if "--emit-result" in sys.argv:
    blob = base64.b64encode(gzip.compress(json.dumps(nb).encode())).decode()
    if params.get("bomb"):
        packer, zeros = zlib.compressobj(9, zlib.DEFLATED, 31), bytes(2**20)
        parts = [packer.compress(zeros) for _ in range(int(params["bomb"] * 1024))]
        blob = base64.b64encode(b"".join(parts) + packer.flush()).decode()
    print("----- ENVPACK RESULT BEGIN -----")
    for i in range(0, len(blob), 76):
        print(blob[i : i + 76])
    print("----- ENVPACK RESULT END -----", flush=True)
sys.exit(int(params.get("exit_code", 0)))
