"""An old Python only conda provides (runtime.txt python-3.6), end to end: the real conda-lock CLI locks the
environment r2env writes for it (python=3.6, pip, ipykernel, requirements.txt as pip:) from a local channel,
and r2env builds exactly that lock; the environment is the kernel of a server on a current Python.

The channel's python 3.6.15 and ipykernel are stand-ins (integration/conda_channel.py old_python_packages): what
runs end to end is r2env's path (detection, the environment it writes, conda-lock, the hash-checked install, the
pip: packages, the kernel registration), not a real CPython 3.6."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterator

import docker
import pytest
from ruamel.yaml import YAML

from conda_channel import old_python_packages, serve_directory, write_channel
from support import ROOT, build_ok, r2env, run_in

REPO = ROOT / "integration" / "parity" / "old-python-from-conda"
IMAGE = "r2env-it/parity-old-python-from-conda"
SOLVER = ROOT / "integration" / "conda_solver"


@pytest.fixture(scope="module")
def channel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    directory = write_channel(tmp_path_factory.mktemp("conda-old") / "channel", old_python_packages())
    with serve_directory(directory) as url:
        yield directory, url


@pytest.fixture(scope="module")
def locked(tmp_path_factory: pytest.TempPathFactory, channel: tuple[Path, str]) -> Path:
    repo = tmp_path_factory.mktemp("old-python") / "repo"
    shutil.copytree(REPO, repo)
    lookup = repo.parent / "pypi-to-conda.json"
    lookup.write_text("{}")  # conda-lock downloads this mapping from a site these machines cannot reach
    result = r2env("lock", str(repo), "--conda-channel", channel[1], "--conda-pypi-lookup", str(lookup),
                   env={"PATH": f"{SOLVER}:{os.environ['PATH']}"})
    assert result.returncode == 0, result.stdout + result.stderr
    return repo


def test_the_old_python_is_locked_from_the_channel_with_requirements_as_pip_packages(locked: Path, channel: tuple[Path, str]) -> None:
    packages = YAML(typ="safe").load((locked / "conda-lock.yml").read_text())["package"]
    conda = {p["name"]: p for p in packages if p["manager"] == "conda"}
    assert conda["python"]["version"] == "3.6.15" and conda["python"]["url"].startswith(channel[1])
    assert {"pip", "ipykernel"} <= set(conda)
    assert [(p["name"], p["version"]) for p in packages if p["manager"] == "pip"] == [("six", "1.16.0")]
    r2env_lock = YAML(typ="safe").load((locked / "r2env.lock").read_text())
    assert r2env_lock["conda"]["lockfile"] == "conda-lock.yml" and r2env_lock["conda"]["server"] == []
    assert "runtime.txt" in r2env_lock["inputs"]["files"] and "requirements.txt" in r2env_lock["inputs"]["files"]


def test_an_old_python_builds_as_the_kernel_of_a_current_server(engine: docker.DockerClient, locked: Path, channel: tuple[Path, str]) -> None:
    build_ok(str(locked), "--image-name", IMAGE, "--channel-map", f"{channel[1]}={channel[0].as_uri()}")
    assert "all checks passed" in run_in(engine, IMAGE, ["./verify"])


def test_without_a_lock_the_build_says_to_lock_first() -> None:
    result = r2env("build", str(REPO), "--image-name", f"{IMAGE}-unlocked")
    assert result.returncode == 8
    assert result.stderr.strip() == (
        "r2env: error: runtime.txt is built from its lock, and r2env.lock does not exist: run `r2env lock` first (or `r2env build --relock`)"
    )
