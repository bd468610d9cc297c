"""GPU passthrough end to end without a GPU: a second Docker daemon with a fake nvidia-container-runtime-hook
on its PATH turns r2env's unchanged device requests into NVIDIA_VISIBLE_DEVICES and /dev/nvidia* nodes."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Iterator

import docker
import pytest

from support import ROOT, r2env

HOOK_DIR = ROOT / "integration" / "fixtures" / "gpu"
BRIDGE = "r2gpubr0"
IMAGE = "debian:bookworm"  # any image will do: the command runs instead of a server


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


@pytest.fixture(scope="module")
def gpu_daemon(engine: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second dockerd on its own socket, bridge and roots; the main daemon is never touched."""
    if shutil.which("dockerd") is None:
        pytest.fail("dockerd is not installed")
    state = Path("/tmp") / f"r2env-gpu-{os.getpid()}"  # short: the socket path must fit in 108 bytes
    state.mkdir()
    log = tmp_path_factory.mktemp("gpu-daemon") / "dockerd.log"
    subprocess.run(["ip", "link", "delete", BRIDGE], capture_output=True)  # left over from an interrupted run
    _run("ip", "link", "add", BRIDGE, "type", "bridge")
    _run("ip", "addr", "add", "172.31.254.1/24", "dev", BRIDGE)
    _run("ip", "link", "set", BRIDGE, "up")
    socket_path = state / "gpu.sock"
    env = {**os.environ, "PATH": f"{HOOK_DIR}:{os.environ['PATH']}"}
    # Never --bridge none: it deletes the main daemon's docker0.
    log_file = log.open("w")
    daemon = subprocess.Popen(
        ["dockerd", "--host", f"unix://{socket_path}", "--data-root", str(state / "root"), "--exec-root", str(state / "exec"),
         "--pidfile", str(state / "gpu.pid"), "--bridge", BRIDGE, "--iptables=false", "--ip-masq=false", "--ip-forward=false"],
        stdout=log_file, stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )
    host = f"unix://{socket_path}"
    try:
        for _ in range(150):
            if socket_path.exists() and subprocess.run(["/usr/bin/docker", "-H", host, "info"], capture_output=True).returncode == 0:
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"the GPU test daemon did not start:\n{log.read_text()[-2000:]}")
        client = docker.DockerClient(base_url=host, timeout=120)
        client.images.load(b"".join(engine.images.get(IMAGE).save(named=True)))
        client.close()
        yield host
    finally:
        daemon.terminate()
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        log_file.close()
        subprocess.run(["ip", "link", "delete", BRIDGE], capture_output=True)
        shutil.rmtree(state, ignore_errors=True)


@pytest.mark.parametrize(
    ("gpus", "visible", "nodes"),
    [
        ("all", "all", ["/dev/nvidia0", "/dev/nvidia1"]),
        ("1", "0", ["/dev/nvidia0"]),
        ("device=0,1", "0,1", ["/dev/nvidia0", "/dev/nvidia1"]),
    ],
)
def test_gpu_requests_reach_the_container(gpu_daemon: str, gpus: str, visible: str, nodes: list[str]) -> None:
    result = r2env(
        "launch", IMAGE, "--gpus", gpus, "--",
        "sh", "-c", 'echo "visible=$NVIDIA_VISIBLE_DEVICES"; ls /dev/ | grep "^nvidia[0-9]" | sed "s|^|/dev/|"; cat /etc/fake-gpu-hook',
        env={"DOCKER_HOST": gpu_daemon},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"visible={visible}" in result.stdout
    assert [line.strip() for line in result.stdout.splitlines() if line.strip().startswith("/dev/nvidia")] == nodes
    assert "fake-gpu-hook ran" in result.stdout
    client = docker.DockerClient(base_url=gpu_daemon)
    try:
        assert client.containers.list(ignore_removed=True, all=True) == []  # the probe and the command both cleaned up
    finally:
        client.close()


def test_a_gpu_build_names_the_cuda_base_it_cannot_pull(tmp_path: Path, engine: docker.DockerClient) -> None:
    """No registry is reachable here: the planned CUDA base cannot be pulled, and the build says so in one line."""
    (tmp_path / "requirements.txt").write_text("torch==2.4.1\n")
    result = r2env("build", str(tmp_path), "--gpu", "--image-name", "r2env-it/gpu-plan")
    assert result.returncode == 6, result.stdout + result.stderr
    assert "cuda (gpu): CUDA 12.4 (nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04)" in result.stdout
    assert result.stderr.strip() == (
        "r2env: error: base image nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04 is not present and cannot be pulled: "
        "load it into the engine (docker load), or use a debian:bookworm/trixie base that r2env can bootstrap"
    )
