"""pixi for real: examples/pixi with a pixi.lock written in the test by py-rattler against the tests' local conda
channel and a local PyPI-style index (both on loopback http servers, pixi itself cannot be installed here). r2env
builds the default environment exactly from the lock, without r2env.lock and then with it; `verify` checks the
locked versions, the PyPI package, the server running in the environment, apt.txt and postBuild; a pixi task runs
through `r2env launch --task`; broken locks and unreachable files are one line."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Iterator

import docker
import pytest
from ruamel.yaml import YAML

from conda_channel import example_packages, serve_directory, write_channel
from pixi_lock import EXAMPLE_ENVIRONMENTS, WHEEL_NAME, hello_pypi, write_pixi_lock, write_pypi_index
from support import EXAMPLES, build_ok, r2env, run_in

IMAGE = "r2env-it/pixi-example"
KERNEL_CHECK = """
from jupyter_client.manager import run_kernel
out = []
hook = lambda m: out.append(m["content"]["text"]) if m["msg_type"] == "stream" else None
with run_kernel(kernel_name="python3") as client:
    client.execute_interactive("import sys, hello_pypi, pyhello; print(sys.prefix, hello_pypi.__version__)", output_hook=hook, timeout=120)
print("kernel:", "".join(out).strip())
"""
PREFIX = "/srv/conda/envs/notebook"


@pytest.fixture(scope="module")
def channel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_channel(tmp_path_factory.mktemp("pixi-conda") / "channel", example_packages())


@pytest.fixture(scope="module")
def served(channel: Path) -> Iterator[str]:
    with serve_directory(channel) as url:
        yield url


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serve_directory(write_pypi_index(tmp_path_factory.mktemp("pypi-index"))) as url:
        yield url


def pixi_repo(target: Path, channel: Path, channel_url: str, pypi_base: str) -> Path:
    """examples/pixi with a lock naming the local servers; its manifest names the same channel (as pixi requires)."""
    shutil.copytree(EXAMPLES / "pixi", target)
    manifest = target / "pixi.toml"
    manifest.write_text(manifest.read_text().replace('channels = ["conda-forge"]', f'channels = ["{channel_url}"]'))
    # The channel's `python` stand-in links to Debian's python3.11 (no real CPython conda package can be had here).
    (target / "apt.txt").write_text((target / "apt.txt").read_text() + "python3\n")
    write_pixi_lock(target / "pixi.lock", channel, EXAMPLE_ENVIRONMENTS, [hello_pypi(pypi_base)], channel_url)
    return target


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory, channel: Path, served: str, index: str) -> Path:
    return pixi_repo(tmp_path_factory.mktemp("pixi-repo") / "pixi", channel, served, f"{index}/files")


def _locked_conda(repo: Path) -> set[str]:
    data = YAML(typ="safe").load((repo / "pixi.lock").read_text())
    locations = [p["conda"] for p in data["environments"]["default"]["packages"]["linux-64"] if "conda" in p]
    return {location.rsplit("/", 1)[1].removesuffix(".tar.bz2") + ".json" for location in locations}


def test_a_pixi_project_builds_exactly_its_lock_without_r2env_lock(engine: docker.DockerClient, repo: Path, index: str) -> None:
    result = build_ok(str(repo), "--image-name", IMAGE)
    # Fetched, or present from an earlier run (the package image is named by the files' hashes).
    assert re.search(r"pixi packages: (fetching 6 conda and 1 PyPI packages from pixi.lock|\S+ is present \(6 conda and 1 PyPI packages\))", result.stdout)
    assert "all checks passed" in run_in(engine, IMAGE, ["./verify"])
    installed = set(run_in(engine, IMAGE, ["ls", f"{PREFIX}/conda-meta"]).split())
    assert installed - {"history"} == _locked_conda(repo)
    assert run_in(engine, IMAGE, ["python", "-c", "import importlib.metadata as m; print(m.version('hello-pypi'))"]).strip() == "0.2.0"
    # The kernel the server starts runs in the environment, with its conda and PyPI packages.
    assert f"kernel: {PREFIX} 0.2.0" in run_in(engine, IMAGE, ["python", "-c", KERNEL_CHECK])


def test_r2env_lock_refers_to_pixi_lock_and_the_locked_build_passes_verify(engine: docker.DockerClient, repo: Path) -> None:
    before = (repo / "pixi.lock").read_bytes()
    result = r2env("lock", str(repo))
    assert result.returncode == 0, result.stdout + result.stderr
    assert (repo / "pixi.lock").read_bytes() == before  # pixi's lock is pixi's: r2env never writes it
    section = YAML(typ="safe").load((repo / "r2env.lock").read_text())["conda"]
    assert section["lockfile"] == "pixi.lock" and section["environment"] == "default" and section["platform"] == "linux-64"
    assert [p["name"] for p in section["installer"]] == ["py-rattler"]
    assert "jupyterlab" in [p["name"] for p in section["server"]] and "hello-pypi" not in [p["name"] for p in section["server"]]
    assert r2env("lock", "--check", str(repo)).returncode == 0
    build_ok(str(repo), "--image-name", f"{IMAGE}-locked")
    assert "all checks passed" in run_in(engine, f"{IMAGE}-locked", ["./verify"])
    # Another environment than the lock was made for: r2env.lock is stale, and --check says so.
    check = r2env("lock", "--check", str(repo), "--pixi-environment", "latest")
    assert check.returncode == 8 and "the option pixi-environment" in check.stderr


def test_launch_task_runs_a_pixi_task_after_its_dependency(repo: Path) -> None:
    result = r2env("launch", str(repo), "--image-name", f"{IMAGE}-locked", "--task", "where")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"hello-cli 1.0.0 from {PREFIX}: greetings 1.0.0" in result.stdout  # `greet`, which `where` depends on
    assert f"{PREFIX} 0.2.0" in result.stdout


def test_an_unknown_task_is_one_line(repo: Path) -> None:
    result = r2env("launch", str(repo), "--task", "nope")
    assert result.returncode == 4 and "Traceback" not in result.stderr
    assert result.stderr.strip() == ("r2env: error: pixi.toml: environment 'default' has no task 'nope' (its tasks: greet, where): "
                                     "give one of its tasks to --task")


def test_an_unreachable_index_and_a_tampered_wheel_stop_before_the_build(channel: Path, served: str, index: str, tmp_path: Path) -> None:
    unreachable = pixi_repo(tmp_path / "unreachable", channel, served, "http://127.0.0.1:9/files")
    result = r2env("build", str(unreachable), "--image-name", f"{IMAGE}-unreachable", "--no-cache")
    assert result.returncode == 5 and "Traceback" not in result.stderr, result.stdout + result.stderr
    assert result.stderr.strip().startswith(f"r2env: error: pixi.lock: cannot fetch {WHEEL_NAME} from http://127.0.0.1:9/files/{WHEEL_NAME}")
    assert len(result.stderr.strip().splitlines()) == 1 and "[build " not in result.stdout
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / WHEEL_NAME).write_bytes(b"not the locked wheel")
    tampered = r2env("build", str(unreachable), "--image-name", f"{IMAGE}-tampered", "--no-cache",
                     "--channel-map", f"http://127.0.0.1:9/files={mirror.as_uri()}")
    assert tampered.returncode == 5 and "Traceback" not in tampered.stderr, tampered.stdout + tampered.stderr
    assert f"{WHEEL_NAME} from {mirror.as_uri()}/{WHEEL_NAME} does not match its locked sha256" in tampered.stderr
