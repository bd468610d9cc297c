"""conda for real: the real conda-lock CLI locks examples/environment-yml from a local channel the tests build
(served over loopback http), r2env builds exactly that lock from an air-gapped copy (--channel-map), and the
image has the locked packages, the pip: section, the notebook server and the environment's server extension in the
environment, its kernel, apt.txt and postBuild."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterator

import docker
import pytest
from ruamel.yaml import YAML

from conda_channel import example_packages, serve_directory, write_channel
from support import EXAMPLES, ROOT, Result, build_ok, r2env, run_in

IMAGE = "r2env-it/conda-example"
SOLVER = ROOT / "integration" / "conda_solver"  # a test-only micromamba stand-in (py-rattler's solver)


def kernel_check(kernel_name: str, code: str) -> str:
    """Python to run in the image: `code` in a kernel the server would start, over the kernel protocol."""
    return f"""
from jupyter_client.manager import run_kernel
out = []
hook = lambda m: out.append(m["content"]["text"]) if m["msg_type"] == "stream" else None
with run_kernel(kernel_name={kernel_name!r}) as client:
    client.execute_interactive({code!r}, output_hook=hook, timeout=120)
print("kernel:", "".join(out).strip())
"""


KERNEL_CHECK = kernel_check("python3", "import sys, tabulate, pyhello; print(sys.prefix, pyhello.__version__)")


@pytest.fixture(scope="module")
def channel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_channel(tmp_path_factory.mktemp("conda") / "channel", example_packages())


@pytest.fixture(scope="module")
def served(channel: Path) -> Iterator[str]:
    with serve_directory(channel) as url:
        yield url


@pytest.fixture(scope="module")
def conda_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    lookup = tmp_path_factory.mktemp("lookup") / "pypi-to-conda.json"
    lookup.write_text("{}")  # conda-lock downloads this mapping from a site these machines cannot reach
    return {"PATH": f"{SOLVER}:{os.environ['PATH']}", "R2ENV_TEST_LOOKUP": str(lookup)}


def lock(repo: Path, channel_url: str, env: dict[str, str], *extra: str) -> Result:
    return r2env("lock", str(repo), "--conda-channel", channel_url, "--conda-pypi-lookup", env["R2ENV_TEST_LOOKUP"], *extra, env=env)


@pytest.fixture(scope="module")
def locked_repo(tmp_path_factory: pytest.TempPathFactory, served: str, conda_env: dict[str, str]) -> Path:
    repo = tmp_path_factory.mktemp("conda-repo") / "environment-yml"
    shutil.copytree(EXAMPLES / "environment-yml", repo)
    with_debian_python(repo)
    result = lock(repo, served, conda_env)
    assert result.returncode == 0, result.stdout + result.stderr
    return repo


def with_debian_python(repo: Path) -> None:
    """The test channel's `python` is a stand-in that links to Debian's python3.11 (no real CPython conda package
    can be had here), so the test's copy of the example asks apt for it; a real environment needs no such line."""
    apt = repo / "binder" / "apt.txt"
    apt.write_text(apt.read_text() + "python3\n")


def _conda_lock(repo: Path) -> dict[str, object]:
    data: dict[str, object] = YAML(typ="safe").load((repo / "binder" / "conda-lock.yml").read_text())
    return data


def test_the_lock_is_conda_locks_own_file_with_hashes_and_r2env_lock_refers_to_it(locked_repo: Path, served: str) -> None:
    data = _conda_lock(locked_repo)
    packages = data["package"]
    assert isinstance(packages, list)
    conda = {p["name"]: p for p in packages if p["manager"] == "conda"}
    assert conda["libgreet"]["version"] == "1.0.0"  # the pin, not the newest (1.1.0)
    assert conda["hello-cli"]["url"].startswith(served + "/noarch/")
    assert all(len(p["hash"]["sha256"]) == 64 for p in packages)
    pip = [p for p in packages if p["manager"] == "pip"]
    assert [(p["name"], p["version"]) for p in pip] == [("tabulate", "0.9.0")] and pip[0]["hash"]["sha256"]
    r2env_lock = YAML(typ="safe").load((locked_repo / "binder" / "r2env.lock").read_text())
    assert r2env_lock["conda"]["lockfile"] == "binder/conda-lock.yml"
    assert [p["name"] for p in r2env_lock["conda"]["installer"]] == ["py-rattler"]
    server = [p["name"] for p in r2env_lock["conda"]["server"]]
    assert "jupyterlab" in server and "ipykernel" in server and r2env_lock["conda"]["kernel"] == []
    assert "tabulate" not in server  # the environment's own pip: package is not the server's


def test_an_air_gapped_build_installs_exactly_the_lock(engine: docker.DockerClient, locked_repo: Path, channel: Path, served: str) -> None:
    # The lock names the http mirror; the build fetches the same files from a local copy instead.
    build_ok(str(locked_repo), "--image-name", IMAGE, "--channel-map", f"{served}={channel.as_uri()}")
    assert "all checks passed" in run_in(engine, IMAGE, ["./verify"])
    installed = set(run_in(engine, IMAGE, ["ls", "/srv/conda/envs/notebook/conda-meta"]).split())
    locked = {f"{p['name']}-{p['version']}-{p['url'].rsplit('-', 1)[1].removesuffix('.tar.bz2')}.json"
              for p in _conda_lock(locked_repo)["package"] if p["manager"] == "conda"}  # type: ignore[union-attr]
    assert installed - {"history"} == locked
    # The installer stayed in the build stage: the image has no py-rattler and no package cache.
    run_in(engine, IMAGE, ["bash", "-c", "! test -e /opt/r2env-rattler && ! test -e /r2env-conda"])


def test_the_kernel_the_server_starts_runs_in_the_environment(engine: docker.DockerClient, locked_repo: Path) -> None:
    output = run_in(engine, IMAGE, ["python", "-c", KERNEL_CHECK])
    assert "kernel: /srv/conda/envs/notebook 0.1.0" in output, output


def test_an_unchanged_lock_reuses_the_image(engine: docker.DockerClient, locked_repo: Path, channel: Path, served: str) -> None:
    again = build_ok(str(locked_repo), "--image-name", IMAGE, "--channel-map", f"{served}={channel.as_uri()}")
    assert "nothing to build" in again.stdout and "[build " not in again.stdout


def test_a_tampered_package_stops_the_build_naming_it_and_both_hashes(locked_repo: Path, channel: Path, served: str, tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    shutil.copytree(channel, mirror)
    tampered = mirror / "noarch" / "pyhello-0.1.0-pyh0_0.tar.bz2"
    tampered.write_bytes(tampered.read_bytes() + b"\0")
    result = r2env("build", str(locked_repo), "--image-name", f"{IMAGE}-tampered", "--no-cache", "--channel-map", f"{served}={mirror.as_uri()}")
    assert result.returncode == 5, result.stdout + result.stderr
    last = result.stderr.strip().splitlines()
    assert len(last) == 1 and "Traceback" not in result.stderr
    assert last[0].startswith("r2env: error: pyhello-0.1.0-pyh0_0.tar.bz2 from file://") and "does not match its locked sha256" in last[0]
    assert "[build " not in result.stdout  # stopped before any build step


def test_unsatisfiable_specs_give_the_solvers_explanation_and_write_nothing(served: str, conda_env: dict[str, str], tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(EXAMPLES / "environment-yml", repo)
    environment = repo / "binder" / "environment.yml"
    environment.write_text(environment.read_text().replace("libgreet=1.0.0", "libgreet>=9"))
    result = lock(repo, served, conda_env)
    assert result.returncode == 8
    error = result.stderr.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("r2env: error: binder/environment.yml: cannot lock the conda environment: ")
    assert "libgreet >=9" in error[0]
    assert sorted(p.name for p in (repo / "binder").iterdir()) == ["apt.txt", "environment.yml", "postBuild", "requirements.txt"]


def test_an_unknown_local_channel_is_one_line(conda_env: dict[str, str], tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(EXAMPLES / "environment-yml", repo)
    result = lock(repo, (tmp_path / "no-such-channel").as_uri(), conda_env)
    assert result.returncode == 8
    assert result.stderr.strip().startswith(f"r2env: error: binder/environment.yml: channel {(tmp_path / 'no-such-channel').as_uri()} is not a conda channel")
    assert not (repo / "binder" / "conda-lock.yml").exists()


def test_build_relock_locks_a_conda_repository_without_a_lock(engine: docker.DockerClient, channel: Path, conda_env: dict[str, str], tmp_path: Path) -> None:
    repo = tmp_path / "environment-yml"
    shutil.copytree(EXAMPLES / "environment-yml", repo)
    with_debian_python(repo)
    result = r2env("build", str(repo), "--relock", "--conda-channel", channel.as_uri(), "--conda-pypi-lookup", conda_env["R2ENV_TEST_LOOKUP"],
                   "--image-name", f"{IMAGE}-relocked", env=conda_env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "binder/r2env.lock does not exist: relocking" in result.stdout
    assert r2env("lock", "--check", str(repo)).returncode == 0
    assert "all checks passed" in run_in(engine, f"{IMAGE}-relocked", ["./verify"])
