"""GPUs on the real engines, for real: no GPU and no NVIDIA toolkit exist on this machine, so
what is checked is the base-image advice and the error an engine without a GPU runtime gives."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from jupyter_envpack.errors import NoGpuRuntimeError
from jupyter_envpack.execute import RunOptions, run_notebook
from jupyter_envpack.execute.limits import RunLimits
from jupyter_envpack.gpu import cuda_base_advice, gpu_summary

pytestmark = pytest.mark.docker


def test_cuda_base_advice_on_the_real_base_image(docker_client: Any, test_base_image: str) -> None:
    attrs = docker_client.images.get(test_base_image).attrs
    cupy = gpu_summary([("cupy-cuda12x", "13.1.0")])
    assert cupy is not None
    advice = cuda_base_advice(test_base_image, attrs, cupy)
    assert advice is not None and "nvidia/cuda:" in advice and "cupy-cuda12x" in advice
    torch = gpu_summary([("torch", "2.3.1+cu121"), ("nvidia-cudnn-cu12", "8.9.2.26")])
    assert torch is not None
    assert cuda_base_advice(test_base_image, attrs, torch) is None  # they bring their own CUDA
    from jupyter_envpack.image.syslibs import probe_base

    facts = probe_base(docker_client, test_base_image)  # the real base: ldconfig -p inside it
    assert facts is not None and "libc.so.6" in facts.sonames
    assert cuda_base_advice(test_base_image, attrs, cupy, facts.sonames) == advice
    assert cuda_base_advice(test_base_image, attrs, cupy, {"libcudart.so.12"}) is None
    cuda_base = {"Config": {"Env": ["PATH=/usr/bin", "CUDA_VERSION=12.4.1"], "Labels": None}}
    assert cuda_base_advice("nvidia/cuda:12.4.1", cuda_base, cupy) is None


def _engines() -> list[Any]:
    return ["docker", pytest.param("podman", marks=pytest.mark.podman)]


@pytest.mark.parametrize("engine", _engines())
def test_gpus_on_an_engine_without_a_gpu_runtime_is_a_clear_error(
    engine: str, request: pytest.FixtureRequest, make_notebook: Any, test_base_image: str
) -> None:
    """For real: Docker answers the device request with 'could not select device driver', Podman
    (which would silently ignore a device request) refuses the CDI name; both become
    NoGpuRuntimeError naming the NVIDIA Container Toolkit."""
    client = _podman(request) if engine == "podman" else request.getfixturevalue("docker_client")
    nb = make_notebook(["print(1)"])
    label = {"org.jupyter.envpack.test": "gpu-error"}
    opts = RunOptions(labels=label, limits=RunLimits(gpus="all"))
    with pytest.raises(NoGpuRuntimeError) as info:
        run_notebook(test_base_image, nb, opts, client=client)
    assert "NVIDIA Container Toolkit" in (info.value.hint or "")
    assert info.value.reason == "no-gpu-runtime"
    leftovers = client.containers.list(
        all=True, filters={"label": "org.jupyter.envpack.test=gpu-error"}
    )
    assert leftovers == []
    with pytest.raises(NoGpuRuntimeError):
        run_notebook(test_base_image, nb, replace(opts, limits=RunLimits(gpus="1")), client=client)


def _podman(request: pytest.FixtureRequest) -> Any:
    import os

    import docker

    url = os.environ.get("ENVPACK_TEST_PODMAN_URL", "unix:///run/podman/podman.sock")
    try:
        client = docker.DockerClient(base_url=url, timeout=60)
        client.ping()
    except Exception as exc:
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(f"Podman's API service does not answer at {url} ({exc})")
        pytest.skip("no Podman API service; run `bash .ci/podman-up`")
    request.addfinalizer(client.close)
    return client
