"""GPUs: CUDA wheels found in a closure, ``--gpus`` parsed once, and the error an engine without
a GPU runtime gives, for real (no GPU and no NVIDIA toolkit on this machine)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jupyter_envpack.cluster.jobs import SubmitOptions, make_job_spec
from jupyter_envpack.errors import InputError
from jupyter_envpack.execute.limits import RunLimits
from jupyter_envpack.gpu import gpu_host_config, gpu_summary, parse_gpus
from jupyter_envpack.snapshot import EnvSpec, PinnedPackage
from jupyter_envpack.snapshot.__init__ import gpu_findings

CUDA_CLOSURES = [
    ([("torch", "2.3.1+cu121"), ("numpy", "1.26.4")], "12", ["torch==2.3.1+cu121"]),
    ([("nvidia-cublas-cu12", "12.1.3.1"), ("tensorflow", "2.16.1")], "12", None),
    ([("cupy-cuda11x", "13.1.0")], "11", None),
    (
        [("jax", "0.4.30"), ("jax-cuda12-plugin", "0.4.30"), ("jax_cuda12_pjrt", "0.4.30")],
        "12",
        None,
    ),
    ([("jaxlib", "0.4.23+cuda12.cudnn89")], "12", None),
]


@pytest.mark.parametrize(("closure", "cuda", "packages"), CUDA_CLOSURES)
def test_cuda_wheels_are_found(closure: list, cuda: str, packages: list | None) -> None:
    gpu = gpu_summary(closure)
    assert gpu is not None and gpu["required"] is True and gpu["cuda"] == cuda
    if packages is not None:
        assert gpu["packages"] == packages


@pytest.mark.parametrize(
    "closure",
    [
        [("torch", "2.3.1"), ("torch", "2.3.1+cpu")],
        [("nvidia-ml-py", "12.535.161"), ("cupy", "13.1.0"), ("jax", "0.4.30")],
        [("numpy", "1.26.4")],
    ],
)
def test_cpu_closures_need_no_gpu(closure: list) -> None:
    assert gpu_summary(closure) is None


def test_the_snapshot_says_the_notebook_needs_a_gpu() -> None:
    packages = [PinnedPackage("torch", "2.3.1+cu121", True), PinnedPackage("numpy", "1.26.4")]
    spec = EnvSpec("nb.ipynb", "3.11.7", packages, warnings=gpu_findings(packages))
    data = spec.to_json()
    assert data["gpu"] == {"required": True, "cuda": "12", "packages": ["torch==2.3.1+cu121"]}
    (finding,) = data["warnings"]
    assert finding["code"] == "gpu-required" and "--gpus" in finding["hint"]
    assert (
        EnvSpec.from_json(json.loads(json.dumps(data))).gpu == data["gpu"]
    )  # old readers: a field
    assert EnvSpec("nb.ipynb", "3.11.7", packages[1:]).to_json()["gpu"] is None


def test_gpus_is_parsed_once_for_every_surface() -> None:
    assert [parse_gpus(v) for v in (None, "", "0", "all", "ALL", "2", 3)] == [
        None,
        None,
        None,
        "all",
        "all",
        2,
        3,
    ]
    for bad in ("-1", "two", True):
        with pytest.raises(InputError, match="--gpus"):
            parse_gpus(bad)
    with pytest.raises(InputError, match="not 'all'"):
        SubmitOptions(backend="kubernetes", gpus="all").validate()
    spec = make_job_spec("abc", "nb.ipynb", "img:1", SubmitOptions(gpus="2"))  # c.EnvPack is text
    assert spec.gpus == 2
    assert SubmitOptions(backend="slurm", gpus="2").backend_options()["gpus"] == 2


def test_config_gpus_reaches_runs_and_jobs(tmp_path: Path) -> None:
    from jupyter_envpack.config import EnvPack

    config = EnvPack(gpus="all")
    assert config.run_options().limits.gpus == "all"
    assert config.run_options(gpus="1").limits.gpus == "1"  # the flag wins
    assert config.submit_options(gpus="2").gpus == "2"
    request = gpu_host_config("all")["device_requests"][0]
    assert (request["Count"], request["Capabilities"]) == (-1, [["gpu"]])
    assert gpu_host_config(2, "podman") == {"devices": ["nvidia.com/gpu=0", "nvidia.com/gpu=1"]}
    assert gpu_host_config(None) == {}
    assert RunLimits(gpus="1").to_json()["gpus"] == 1 and "gpus" not in RunLimits().to_json()


def test_the_rest_api_takes_gpus_for_runs() -> None:
    from types import SimpleNamespace

    from jupyter_envpack.config import EnvPack
    from jupyter_envpack.server.kinds import _run_options
    from jupyter_envpack.server.schema import RUN_FIELDS, check_fields

    assert check_fields({"gpus": "all"}, RUN_FIELDS, "run") == {"gpus": "all"}
    assert check_fields({"gpus": 2}, RUN_FIELDS, "run") == {"gpus": 2}
    for bad in ("two", -1, True):
        with pytest.raises(InputError, match="'gpus'"):
            check_fields({"gpus": bad}, RUN_FIELDS, "run")
    op = SimpleNamespace(options={"gpus": 2}, config=EnvPack(), labels={})
    assert _run_options(op).limits.gpus == "2"
