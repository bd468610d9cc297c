"""`r2env launch` against a real engine: a real JupyterLab server, its token, a kernel over the Jupyter
protocol, detach / ps / stop, Ctrl-C and SIGTERM, commands, mounts, and the failures, each leaving no container."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

import docker
import pytest

from kernels import execute
from support import EXAMPLES, ROOT, build_ok, r2env

IMAGE = "r2env-it/launch"
READY = re.compile(r"\[launch\] JupyterLab is ready: (http://\S+)")
DETACHED = re.compile(r"stop it with `r2env stop (\w+)`")


@pytest.fixture(scope="module")
def image(engine: docker.DockerClient) -> str:
    build_ok(str(EXAMPLES / "requirements"), "--image-name", IMAGE)
    return IMAGE


def launched(client: docker.DockerClient) -> set[str]:
    return {c.id for c in client.containers.list(ignore_removed=True, all=True, filters={"label": "org.r2env.launch"})}


def all_containers(client: docker.DockerClient) -> set[str]:
    return {c.id for c in client.containers.list(ignore_removed=True, all=True)}


@pytest.fixture
def detached(image: str, engine: docker.DockerClient) -> Iterator[tuple[str, str]]:
    result = r2env("launch", image, "--detach")
    assert result.returncode == 0, result.stdout + result.stderr
    url = READY.search(result.stdout)
    container = DETACHED.search(result.stdout)
    assert url and container, result.stdout
    yield url.group(1), container.group(1)
    r2env("stop", container.group(1))


def _get(url: str, headers: dict[str, str] | None = None) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def _split(url: str) -> tuple[str, str]:
    match = re.match(r"(http://[^/]+)/\?token=(\w+)$", url)
    assert match, url
    return match.group(1), match.group(2)


def test_the_server_needs_its_token(detached: tuple[str, str]) -> None:
    base, token = _split(detached[0])
    assert base.startswith("http://127.0.0.1:")
    assert _get(f"{base}/api/status?token={token}") == 200
    assert _get(f"{base}/api/status") == 403
    assert _get(f"{base}/api/status", {"Authorization": "token wrong"}) == 403


def test_a_kernel_runs_code_with_the_examples_packages(detached: tuple[str, str]) -> None:
    base, token = _split(detached[0])
    output = execute(base, token, "import sys, pyparsing; print(sys.prefix, pyparsing.__version__)")
    assert output.split() == ["/srv/venv", "3.1.2"]  # the version requirements.txt pins


def test_ps_lists_and_stop_removes(detached: tuple[str, str], engine: docker.DockerClient) -> None:
    url, container = detached
    listing = r2env("ps")
    assert listing.returncode == 0
    assert any(line.startswith(container) and url in line for line in listing.stdout.splitlines()), listing.stdout
    stopped = r2env("stop", container)
    assert stopped.returncode == 0, stopped.stderr
    assert not any(c.startswith(container) for c in all_containers(engine))
    assert container not in r2env("ps", "--all").stdout


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_attached_server_stops_and_is_removed_on_a_signal(image: str, engine: docker.DockerClient, signum: int) -> None:
    before = launched(engine)
    # As from a terminal: a job started in the background by a non-interactive shell inherits an ignored SIGINT,
    # which Python then leaves ignored (and which no shell in between can reset).
    process = subprocess.Popen([sys.executable, "-m", "r2env.cli", "launch", image], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, cwd=ROOT,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        lines.append(line)
        if READY.search(line):
            break
    assert READY.search("".join(lines)), "".join(lines)
    assert _get(READY.search("".join(lines)).group(1)) == 200  # type: ignore[union-attr]
    assert len(launched(engine) - before) == 1
    process.send_signal(signum)
    rest, _ = process.communicate(timeout=60)
    assert process.returncode == 0, rest
    assert "the container is removed" in rest
    assert launched(engine) == before


@pytest.fixture(scope="module")
def start_repo(tmp_path_factory: pytest.TempPathFactory, image: str) -> Path:
    repo = tmp_path_factory.mktemp("start-repo")
    shutil.copy(EXAMPLES / "requirements" / "requirements.txt", repo)
    shutil.copy(EXAMPLES / "requirements" / "requirements-extra.txt", repo)
    (repo / "start").write_text('#!/bin/bash\nexport GREETING="set by start"\nexec "$@"\n')
    (repo / "start").chmod(0o755)
    return repo


def test_a_command_runs_after_start_and_its_exit_code_comes_back(start_repo: Path, engine: docker.DockerClient) -> None:
    before = all_containers(engine)
    result = r2env("launch", str(start_repo), "--image-name", "r2env-it/launch-start", "--", "sh", "-c", 'echo "greeting: $GREETING"; exit 7')
    assert result.returncode == 7, result.stdout + result.stderr
    assert "greeting: set by start" in result.stdout
    assert all_containers(engine) == before


def test_editable_and_volumes_share_files_owned_by_the_host_user(start_repo: Path, tmp_path: Path, engine: docker.DockerClient) -> None:
    data = tmp_path / "data"
    data.mkdir()
    # Written after the build: only a mount (not the image's copy) can show it.
    (start_repo / "edited-on-host.txt").write_text("fresh edit\n")
    try:
        result = r2env(
            "launch", str(start_repo), "--image-name", "r2env-it/launch-start", "--editable", "--volume", f"{data}:results",
            "--", "sh", "-c", "cat edited-on-host.txt && echo from-container > made-in-container.txt && echo out > results/out.txt && id -u",
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "fresh edit" in result.stdout
        for made in (start_repo / "made-in-container.txt", data / "out.txt"):
            assert made.is_file()
            assert (made.stat().st_uid, made.stat().st_gid) == (os.getuid(), os.getgid())
    finally:
        (start_repo / "edited-on-host.txt").unlink()
        (start_repo / "made-in-container.txt").unlink(missing_ok=True)


def test_a_port_in_use_is_one_line_and_leaves_nothing(image: str, engine: docker.DockerClient) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        before = all_containers(engine)
        result = r2env("launch", image, "--port", str(port))
    assert result.returncode == 10
    assert result.stderr.strip().splitlines()[-1] == (
        f"r2env: error: port {port} on 127.0.0.1 is already in use: choose another --port, or leave --port out for a free one"
    )
    assert all_containers(engine) == before


def test_a_server_that_dies_at_start_shows_its_last_lines(tmp_path: Path, engine: docker.DockerClient, image: str) -> None:
    repo = tmp_path / "dies"
    repo.mkdir()
    shutil.copy(EXAMPLES / "requirements" / "requirements.txt", repo)
    shutil.copy(EXAMPLES / "requirements" / "requirements-extra.txt", repo)
    (repo / "start").write_text('#!/bin/sh\necho "cannot find the data set" >&2\nexit 4\n')
    (repo / "start").chmod(0o755)
    before = all_containers(engine)
    result = r2env("launch", str(repo), "--image-name", "r2env-it/launch-dies")
    assert result.returncode == 10, result.stdout + result.stderr
    assert "cannot find the data set" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("r2env: error: the container exited with code 4 before the server answered")
    assert "Traceback" not in result.stderr
    assert all_containers(engine) == before


def test_a_missing_image_is_one_line(engine: docker.DockerClient) -> None:
    result = r2env("launch", "r2env-it/no-such-image")
    assert result.returncode == 10
    assert result.stderr.strip() == (
        "r2env: error: r2env-it/no-such-image is neither a directory, a git URL nor a local image: "
        "give a repository, or build the image first with `r2env build`"
    )


def test_gpus_on_an_engine_without_a_gpu_runtime_fail_plainly(image: str, engine: docker.DockerClient) -> None:
    before = all_containers(engine)
    result = r2env("launch", image, "--gpus", "all")
    assert result.returncode == 10
    assert result.stderr.strip() == (
        "r2env: error: the Docker engine at unix:///var/run/docker.sock has no GPU runtime (no NVIDIA device driver is registered), "
        "so it cannot pass --gpus all: install the NVIDIA Container Toolkit on the Docker host and restart dockerd "
        "(https://docs.nvidia.com/datacenter/cloud-native/container-toolkit/latest/install-guide.html), or launch without --gpus"
    )
    assert all_containers(engine) == before
