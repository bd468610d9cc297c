"""CUDA choice for GPU images: table-driven, from the frameworks a repository pins."""

from __future__ import annotations

import pytest

from r2env.cuda import CUDA_BASES, DEFAULT_CUDA, choose_cuda
from r2env.errors import SpecError
from r2env.inspect import inspect
from r2env.plan import PlanOptions, plan
from buildpacks import load_buildpacks
from r2env.repo import MemoryRepo
from r2env.select import select


@pytest.mark.parametrize(
    ("requirements", "requested", "version", "index"),
    [
        (["torch==2.4.1"], "auto", "12.4", "https://download.pytorch.org/whl/cu124"),
        (["torch==2.4.1+cu121"], "auto", "12.4", "https://download.pytorch.org/whl/cu124"),
        (["torch==2.4.1"], "11.8", "11.8", "https://download.pytorch.org/whl/cu118"),
        (["torch==2.7.0", "jax[cuda12]==0.4.30"], "auto", "12.8", "https://download.pytorch.org/whl/cu128"),
        (["torch==2.9.0"], "auto", "13.0", "https://download.pytorch.org/whl/cu130"),
        (["torch==2.9.0", "jax==0.5.0"], "auto", "12.8", "https://download.pytorch.org/whl/cu128"),
        (["tensorflow==2.15.1"], "auto", "12.2", ""),
        (["tensorflow==2.18.0; sys_platform == 'linux'"], "auto", "12.5", ""),
        (["torch>=2.0"], "auto", "13.0", "https://download.pytorch.org/whl/cu130"),  # unpinned: any build
        (["numpy==1.26.4"], "auto", DEFAULT_CUDA, ""),
        ([], "12.6", "12.6", ""),
    ],
)
def test_the_cuda_version_follows_the_pinned_frameworks(requirements: list[str], requested: str, version: str, index: str) -> None:
    choice = choose_cuda(requirements, requested)
    assert (choice.version, choice.torch_index) == (version, index)
    assert choice.base_image == CUDA_BASES[version]
    assert choice.base_image.startswith(f"nvidia/cuda:{version}.")


@pytest.mark.parametrize(
    ("requirements", "requested", "message"),
    [
        (["torch==2.4.1"], "12.8", "CUDA 12.8 does not suit: torch 2.4.1 has CUDA 11.8, 12.1, 12.4 builds: choose one of 11.8, 12.1, 12.4"),
        (["torch==2.1.0", "tensorflow==2.18.0"], "auto", "no CUDA version suits all of: torch 2.1.0 has CUDA 11.8, 12.1 builds; "
                                                         "tensorflow 2.18.0 has CUDA 12.5 builds"),
        (["torch==2.13.0"], "auto", "r2env does not know which CUDA builds torch 2.13.0 has: set the CUDA version yourself"),
        ([], "10.2", "CUDA 10.2 is not a version r2env knows"),
    ],
)
def test_impossible_cuda_choices_say_why(requirements: list[str], requested: str, message: str) -> None:
    with pytest.raises(SpecError) as raised:
        choose_cuda(requirements, requested)
    assert str(raised.value).startswith(message)


def test_a_newer_torch_than_the_table_takes_a_configured_cuda() -> None:
    assert choose_cuda(["torch==2.13.0"], "12.8").torch_index == "https://download.pytorch.org/whl/cu128"


def test_a_gpu_plan_uses_the_cuda_base_a_standalone_python_and_the_torch_index() -> None:
    facts = inspect(MemoryRepo({"requirements.txt": "torch==2.5.1\nnumpy==2.1.0\n"}))
    spec = plan(facts, select(facts, load_buildpacks()), PlanOptions(cuda="auto"))
    env = dict(spec.env)
    assert spec.base_image == "nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04"
    assert spec.interpreter is not None and spec.interpreter.source == "uv"
    assert env["PIP_EXTRA_INDEX_URL"] == env["UV_EXTRA_INDEX_URL"] == "https://download.pytorch.org/whl/cu124"
    assert (env["NVIDIA_VISIBLE_DEVICES"], env["NVIDIA_DRIVER_CAPABILITIES"], env["R2ENV_CUDA_VERSION"]) == ("all", "compute,utility", "12.4")
    assert [d.reason for d in spec.detections if d.buildpack == "cuda"] == [
        "CUDA 12.4 (nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04): torch 2.5.1 has CUDA 11.8, 12.1, 12.4 builds; the newest they share is 12.4"
    ]


def test_without_gpu_nothing_changes() -> None:
    facts = inspect(MemoryRepo({"requirements.txt": "torch==2.5.1\n"}))
    spec = plan(facts, select(facts, load_buildpacks()))
    assert spec.base_image == "debian:bookworm" and "PIP_EXTRA_INDEX_URL" not in dict(spec.env)
