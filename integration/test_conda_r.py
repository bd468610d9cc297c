"""R in a conda environment for real: an environment.yml with r-base is locked by the real conda-lock with
r-irkernel added (as repo2docker adds it), built exactly from that lock, and JupyterLab's R kernel runs code.

No conda-forge R can be had here (no conda channel is reachable), so the test channel's `r-base` is a stand-in
that links the environment's R to Debian's (the repository's apt.txt asks for r-base-core and r-cran-irkernel),
like the channel's `python` stand-in links to Debian's interpreter; `r-irkernel` is a marker package. What is
exercised is r2env's part: the addition to the solve, the exact install, the kernel registered with the
environment's R, and that kernel executing code over the kernel protocol."""

from __future__ import annotations

import os
from pathlib import Path

import docker
import pytest
from ruamel.yaml import YAML

from conda_channel import Package, example_packages, serve_directory, write_channel
from support import build_ok, r2env, run_in
from test_conda_env import SOLVER, kernel_check

IMAGE = "r2env-it/conda-r"
ENVIRONMENT = """\
name: r-in-conda
channels:
  - conda-forge
dependencies:
  - python=3.11
  - r-base=4.2
"""
R_KERNEL_CHECK = kernel_check("ir", 'cat("R", as.character(getRversion()), "at", Sys.which("R"))')


def r_packages() -> list[Package]:
    return [
        Package("r-base", "4.2.2", "h0_r2env_test", "linux-64", {"bin/R": "->/usr/bin/R", "bin/Rscript": "->/usr/bin/Rscript"}),
        Package("r-irkernel", "1.3.2", "r42h0_0", "noarch", {"share/r2env-test/r-irkernel.txt": "IRkernel comes from Debian here\n"},
                ("r-base >=4.2",), noarch="generic"),
    ]


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("conda-r") / "repo"
    (root / "binder").mkdir(parents=True)
    (root / "binder" / "environment.yml").write_text(ENVIRONMENT)
    # The stand-ins' Debian halves (a real environment needs no apt.txt).
    (root / "binder" / "apt.txt").write_text("python3\nr-base-core\nr-cran-irkernel\n")
    return root


def test_r_in_conda_gets_irkernel_and_a_working_r_kernel(engine: docker.DockerClient, repo: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    channel = write_channel(tmp_path_factory.mktemp("channel") / "channel", example_packages() + r_packages())
    lookup = tmp_path_factory.mktemp("lookup") / "pypi-to-conda.json"
    lookup.write_text("{}")
    env = {"PATH": f"{SOLVER}:{os.environ['PATH']}"}
    plan = r2env("plan", str(repo))
    assert "r-irkernel is added for the R kernel" in plan.stdout, plan.stdout + plan.stderr
    with serve_directory(channel) as served:
        locked = r2env("lock", str(repo), "--conda-channel", served, "--conda-pypi-lookup", str(lookup), env=env)
        assert locked.returncode == 0, locked.stdout + locked.stderr
        packages = {p["name"]: p["version"] for p in YAML(typ="safe").load((repo / "binder" / "conda-lock.yml").read_text())["package"]}
        assert packages["r-irkernel"] == "1.3.2" and packages["r-base"] == "4.2.2"
        build_ok(str(repo), "--image-name", IMAGE, "--channel-map", f"{served}={channel.as_uri()}")
    spec = run_in(engine, IMAGE, ["jupyter", "kernelspec", "list", "--json"])
    kernels = YAML(typ="safe").load(spec)["kernelspecs"]
    assert kernels["ir"]["resource_dir"] == "/srv/conda/envs/notebook/share/jupyter/kernels/ir", kernels
    output = run_in(engine, IMAGE, ["python", "-c", R_KERNEL_CHECK])
    assert "kernel: R 4.2.2 at /srv/conda/envs/notebook/bin/R" in output, output
