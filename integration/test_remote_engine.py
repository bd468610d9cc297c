"""Builds and launches on a remote engine: a second dockerd on a loopback TCP port with TLS (certificates made in
the test), reached through --docker-host/--docker-cert-path, DOCKER_HOST, ssh://, and a named buildx builder; the
local daemon sees none of it. And the daemon building on one engine while launching on another."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Iterator

import docker
import pytest
import requests

from git_repos import git
from r2env.engine import docker_client
from remote_engine import SshServer, TlsDaemon, make_certificates
from serve_support import Daemon, GitServer
from support import r2env

BASE = "debian:bookworm"
IMAGE = "r2env-it/remote-tls"
BUILDX = Path.home() / ".cache" / "r2env-it" / "buildx" / "docker-buildx"  # installed by .ci/run (env-notes: trixie's docker-buildx)


@pytest.fixture(scope="module")
def remote(engine: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsDaemon]:
    if shutil.which("dockerd") is None:
        pytest.fail("dockerd is not installed")
    daemon = TlsDaemon(Path("/tmp") / f"r2env-remote-{os.getpid()}", tmp_path_factory.mktemp("certs") / "tls")
    try:
        daemon.start()
        client = remote_client(daemon)
        # The only thing read from the local engine: the base image, as an air-gapped site would copy it over.
        client.images.load(b"".join(engine.images.get(BASE).save(named=True)))
        client.close()
        yield daemon
    finally:
        daemon.stop()


def remote_client(daemon: TlsDaemon) -> docker.DockerClient:
    return docker_client(daemon.environment(), timeout=300)  # REQUESTS_CA_BUNDLE must not replace the engine's CA


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small requirements.txt repository (pip with the CA secret and cache mounts, JupyterLab)."""
    repo = tmp_path_factory.mktemp("remote-repo") / "repo"
    repo.mkdir()
    (repo / "requirements.txt").write_text("pyparsing==3.1.2\n")
    (repo / "verify").write_text("#!/bin/sh\nset -e\npython -c 'import pyparsing; print(\"pyparsing\", pyparsing.__version__)'\n")
    (repo / "verify").chmod(0o755)
    git("init", "-q", cwd=repo)
    git("add", ".", cwd=repo)
    git("commit", "-q", "-m", "remote", cwd=repo)
    return repo


def local_has(engine: docker.DockerClient, image: str) -> bool:
    try:
        engine.images.get(image)
        return True
    except docker.errors.ImageNotFound:
        return False


def local_containers_of(engine: docker.DockerClient, image: str) -> list[str]:
    return [c.id for c in engine.containers.list(ignore_removed=True, all=True) if image in (c.attrs.get("Config") or {}).get("Image", "")]


def test_build_and_launch_on_a_tls_engine_leave_the_local_engine_untouched(engine: docker.DockerClient, remote: TlsDaemon, repository: Path) -> None:
    image = f"{IMAGE}:options"
    built = r2env("build", str(repository), "--image-name", image, "--docker-host", remote.host, "--docker-cert-path", str(remote.client_certs))
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr
    # BuildKit through the docker CLI, with r2env's cache mounts and the CA bundle as a secret, on the remote engine
    assert re.search(r"building r2env-it/remote-tls:options with (buildkit|buildx)", built.stdout), built.stdout[:2000]
    client = remote_client(remote)
    try:
        assert client.images.get(image).labels["org.r2env.source.commit"]
        assert not local_has(engine, image)
        # launched through DOCKER_HOST and friends this time, as most users name a remote engine
        env = remote.environment()
        launched = r2env("launch", "--detach", image, env=env)
        assert launched.returncode == 0, launched.stdout[-2000:] + launched.stderr
        url = re.search(r"http://127\.0\.0\.1:(\d+)/", launched.stdout)
        assert url, launched.stdout
        remote_containers = client.containers.list(ignore_removed=True, filters={"label": "org.r2env.launch=server"})
        assert [c.image.tags for c in remote_containers] == [[image]]
        # the printed URL hides the token; the container's environment has it
        token = next(v.split("=", 1)[1] for v in remote_containers[0].attrs["Config"]["Env"] if v.startswith("JUPYTER_TOKEN="))
        status = requests.get(f"{url.group(0)}api/status", headers={"Authorization": f"token {token}"}, timeout=30)
        assert status.status_code == 200, status.text[:300]
        assert local_containers_of(engine, IMAGE) == []
        listed = r2env("ps", env=env)
        assert remote_containers[0].id[:12] in listed.stdout
        assert r2env("stop", "--all", env=env).returncode == 0
        assert client.containers.list(ignore_removed=True, all=True, filters={"label": "org.r2env.launch=server"}) == []
    finally:
        client.close()


def test_an_untrusted_engine_certificate_is_one_line(remote: TlsDaemon, repository: Path, tmp_path: Path) -> None:
    _, strangers = make_certificates(tmp_path / "other-ca")  # a client certificate and CA the engine does not know
    result = r2env("build", str(repository), "--docker-host", remote.host, "--docker-cert-path", str(strangers))
    assert result.returncode == 7
    assert result.stderr.strip().splitlines() == [
        f"r2env: error: cannot reach the Docker engine at {remote.host} (its TLS certificate is not trusted): start the Docker daemon "
        "(e.g. 'dockerd' or 'systemctl start docker') or set DOCKER_HOST and its TLS certificates (DOCKER_CERT_PATH)"]


def test_an_unreachable_engine_is_one_line(repository: Path, tmp_path: Path) -> None:
    port = 9  # discard: nothing listens on loopback
    result = r2env("build", str(repository), "--docker-host", f"tcp://127.0.0.1:{port}")
    assert result.returncode == 7
    assert result.stderr.strip().splitlines() == [
        f"r2env: error: cannot reach the Docker engine at tcp://127.0.0.1:{port} (connection refused): start the Docker daemon "
        "(e.g. 'dockerd' or 'systemctl start docker') or set DOCKER_HOST and its TLS certificates (DOCKER_CERT_PATH)"]


def test_build_over_ssh(engine: docker.DockerClient, remote: TlsDaemon, repository: Path, tmp_path: Path) -> None:
    server = SshServer(tmp_path / "sshd").start(remote.environment())
    try:
        image = f"{IMAGE}:ssh"
        env = {"PATH": f"{server.bin}:{os.environ['PATH']}", "DOCKER_HOST": server.host}
        built = r2env("build", str(repository), "--image-name", image, env=env)
        assert built.returncode == 0, built.stdout[-3000:] + built.stderr
        client = remote_client(remote)
        try:
            assert client.images.get(image).labels["org.r2env.source.commit"]
        finally:
            client.close()
        assert not local_has(engine, image)
    finally:
        server.stop()


def test_a_missing_named_buildx_builder_is_one_line(remote: TlsDaemon, repository: Path, tmp_path: Path) -> None:
    """--builder NAME goes to `docker buildx build --builder NAME` (argv: tests/test_remote_engine_unit.py). A builder
    that can run such a build needs the docker-container driver (the moby/buildkit image, which no registry here
    serves) or a remote buildkitd (not packaged by Debian); buildx's docker driver is not selectable by name
    ("use `docker --context=NAME buildx` to switch"). So here: the plugin is found and the builder checked."""
    if not BUILDX.is_file():
        pytest.fail(f"{BUILDX} is missing: .ci/run installs Debian trixie's docker-buildx plugin there")
    config = tmp_path / "docker-config"
    (config / "cli-plugins").mkdir(parents=True)
    shutil.copy(BUILDX, config / "cli-plugins" / "docker-buildx")
    env = {"DOCKER_CONFIG": str(config)}
    missing = r2env("build", str(repository), "--builder", "no-such-builder", "--docker-host", remote.host,
                    "--docker-cert-path", str(remote.client_certs), env=env)
    assert missing.returncode == 7
    assert missing.stderr.strip().startswith("r2env: error: --builder no-such-builder: docker buildx has no such builder (")
    assert len(missing.stderr.strip().splitlines()) == 1
    without_plugin = r2env("build", str(repository), "--builder", "no-such-builder", "--docker-host", remote.host,
                           "--docker-cert-path", str(remote.client_certs), env={"DOCKER_CONFIG": str(tmp_path / "empty")})
    assert without_plugin.returncode == 7
    assert "a named builder needs the docker buildx plugin" in without_plugin.stderr


def r2env_cli(*argv: str, env: dict[str, str]) -> "subprocess.CompletedProcess[str]":
    return subprocess.run(argv, capture_output=True, text=True, env={**os.environ, **env}, timeout=60)


def test_the_daemon_builds_locally_and_launches_on_the_tls_engine(engine: docker.DockerClient, remote: TlsDaemon, tmp_path: Path) -> None:
    git_server = GitServer(tmp_path / "git").start()
    daemon = Daemon(tmp_path / "state", options=("--launch-docker-host", remote.host, "--launch-docker-cert-path", str(remote.client_certs)))
    config = tmp_path / "r2env_config.py"
    config.write_text("c.Serve.block_host_network = False\n")  # the launch engine's bridge is not the daemon's to firewall
    daemon.options = (*daemon.options, "--config", str(config))
    client = remote_client(remote)
    try:
        daemon.start()
        git_server.publish("requirements", Path(__file__).resolve().parent.parent / "examples" / "requirements", tmp_path / "work")
        launch = daemon.ok("POST", "/api/v1/launches", {"repo": git_server.url("requirements")})
        running = daemon.wait_launch(launch["id"], timeout=900)
        assert running["state"] == "running", (running, daemon.stderr())
        base, token = running["url"].split("?token=")
        assert requests.get(f"{base}api/status", headers={"Authorization": f"token {token}"}, timeout=30).status_code == 200
        on_remote = client.containers.get(running["container_id"])
        assert on_remote.labels["org.r2env.serve.launch"] == launch["id"]
        with pytest.raises(docker.errors.NotFound):
            engine.containers.get(running["container_id"])  # built here, launched there
        assert any("launching on tcp://127.0.0.1:" in line for line in daemon.errors)
        assert daemon.api("DELETE", f"/api/v1/launches/{launch['id']}").status_code == 202
        daemon.wait_launch(launch["id"], ("stopped",))
        for _ in range(100):
            if not client.containers.list(ignore_removed=True, all=True, filters={"label": f"org.r2env.serve.launch={launch['id']}"}):
                break
            time.sleep(0.2)
        assert client.containers.list(ignore_removed=True, all=True, filters={"label": f"org.r2env.serve.launch={launch['id']}"}) == []
    finally:
        if daemon.process is not None:
            daemon.stop()
        git_server.stop()
        client.close()

