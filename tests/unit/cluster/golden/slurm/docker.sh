#!/bin/bash
#SBATCH --job-name=analysis-0123456789
#SBATCH --output=/shared/envpack/envpack-%j.out
#SBATCH --error=/shared/envpack/envpack-%j.err
#SBATCH --chdir=/shared/envpack
#SBATCH --time=0-01:30:00
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=3
#SBATCH --export=NONE
#SBATCH --no-requeue
#SBATCH --comment=envpack-job=0123456789ab
#SBATCH --mem=3072M
# jupyter-envpack job 0123456789ab
set -eu
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export ENVPACK_PARAMETERS_CELL='alpha = 0.5
name = '"'"'it'"'"''"'"'s'"'"'
'
export HOME=/home/envpack
exec docker run --rm --init --label=org.jupyter.envpack=1 --label=org.jupyter.envpack.job=0123456789ab --label=org.jupyter.envpack.kind=job --user=1000:1000 --cap-drop=ALL --security-opt=no-new-privileges --pids-limit=1024 --memory=3221225472 --memory-swap=3221225472 --cpus=2.5 --env=ENVPACK_PARAMETERS_CELL --env=HOME registry.example:5000/envpack/analysis:0f1e2d3c4b5a69788796 /opt/envpack/runner/bin/python /opt/envpack/run_notebook.py --emit-result --cell-timeout 120
