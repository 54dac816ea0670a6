#!/usr/bin/env bash
# Every benchmark; one table (benchmarks/report.py) with the date, engine version, storage driver
# and load, and docs/performance.md regenerated from it. Needs the Docker engine and the offline
# base image (bash .ci/provision) and pipreqs + papermill (pip install -e ".[bench]").
# Usage: bash benchmarks/run_all.sh [--skip-cold]     (--skip-cold: no data-science builds)
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p results
out=results/run.jsonl
start=$(date +%s)
python3 - > "$out" <<'PY'
import json, os, subprocess, time
fmt = lambda f: subprocess.run(["docker", "info", "--format", f], capture_output=True, text=True).stdout.strip()
print(json.dumps({"header": {
    "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    "engine": fmt("{{.ServerVersion}}"), "storage": fmt("{{.Driver}}"),
    "cpus": os.cpu_count(), "load_before": os.getloadavg()[0]}}))
PY
run() {  # a failing benchmark becomes a row saying so; the others still run
  python3 "$@" | tee -a /dev/stderr | sed -n 's/^ROW //p' >> "$out" ||
    printf '{"name": "%s FAILED (see its output)", "baseline": null, "envpack": 0, "unit": "s", "ratio": null, "target": "runs", "met": false, "note": ""}\n' "$1" >> "$out"
}
run bench_user.py
run bench_rerun.py
run bench_build.py "$@"
python3 - "$out" "$(( $(date +%s) - start ))" <<'PY'
import json, os, sys
lines = open(sys.argv[1]).read().splitlines()
head = json.loads(lines[0])
head["header"].update(load_after=os.getloadavg()[0], seconds=int(sys.argv[2]))
open(sys.argv[1], "w").write("\n".join([json.dumps(head), *lines[1:]]) + "\n")
PY
python3 report.py "$out"
