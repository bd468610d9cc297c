"""`r2env serve` launching through a real JupyterHub: JupyterHub and DockerSpawner from the package index (a venv
that .ci/run makes under ~/.cache/r2env-it/hub-venv) and configurable-http-proxy from the npm registry
(~/.cache/r2env-it/chp), on the local engine. A repository built by the daemon is launched through the hub, a
kernel runs code in it, and stopping it removes the container and the hub user; bad hub settings are one line."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import docker
import pytest
import requests

from kernels import execute
from serve_support import Daemon, GitServer, free_port
from support import network_gateway

CACHE = Path.home() / ".cache" / "r2env-it"
HUB_VENV = CACHE / "hub-venv"
CHP_BIN = CACHE / "chp" / "node_modules" / ".bin"
NETWORK = "r2env-it-hubnet"
PREFIX = "r2env-it-"

HUB_CONFIG = """
import os
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {port}
# Spawned servers reach the hub's API on the test network's gateway.
c.JupyterHub.hub_ip = "0.0.0.0"
c.JupyterHub.hub_port = {hub_port}
c.JupyterHub.hub_connect_ip = "{gateway}"
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api_port}"
c.ConfigurableHTTPProxy.pid_file = "{state}/proxy.pid"
c.JupyterHub.db_url = "sqlite:///{state}/hub.sqlite"
c.JupyterHub.cookie_secret_file = "{state}/cookie_secret"
c.JupyterHub.pid_file = "{state}/hub.pid"
c.JupyterHub.authenticator_class = "dummy"
c.JupyterHub.spawner_class = "dockerspawner.DockerSpawner"
c.DockerSpawner.network_name = "{network}"
c.DockerSpawner.use_internal_ip = True
c.DockerSpawner.remove = True
c.DockerSpawner.name_template = "jupyter-{{raw_username}}"  # the test finds containers by user name
c.DockerSpawner.cmd = ["jupyterhub-singleuser"]
c.DockerSpawner.pull_policy = "never"
c.Spawner.start_timeout = 180
c.Spawner.http_timeout = 180

def allowed_images(spawner):
    # The test switches user_options images off by removing this file ("a hub without the expected spawner options").
    if not os.path.exists("{state}/allow-images"):
        return {{}}
    image = spawner.user_options.get("image", "")
    return {{image: image}} if image.startswith("r2env-serve/") else {{}}

c.DockerSpawner.allowed_images = allowed_images
c.JupyterHub.services = [{{"name": "r2env", "api_token": "{token}"}}]
c.JupyterHub.load_roles = [{{"name": "r2env", "services": ["r2env"], "scopes": ["admin:users", "admin:servers", "tokens", "read:users"]}}]
"""


class Hub:
    def __init__(self, state: Path, engine: docker.DockerClient) -> None:
        self.state, self.engine = state, engine
        self.port, self.token = free_port(), secrets.token_hex(32)
        self.url = f"http://127.0.0.1:{self.port}/"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> "Hub":
        for path, what in ((HUB_VENV / "bin" / "jupyterhub", "JupyterHub venv"), (CHP_BIN / "configurable-http-proxy", "configurable-http-proxy")):
            if not path.exists():
                pytest.fail(f"{path} is missing: .ci/run installs the {what}")
        try:
            network = self.engine.networks.get(NETWORK)
        except docker.errors.NotFound:
            network = self.engine.networks.create(NETWORK, driver="bridge")
        gateway = network_gateway(network)
        self.state.mkdir(parents=True)
        (self.state / "allow-images").touch()
        (self.state / "jupyterhub_config.py").write_text(HUB_CONFIG.format(
            port=self.port, hub_port=free_port(), proxy_api_port=free_port(), gateway=gateway, state=self.state,
            network=NETWORK, token=self.token))
        env = {**os.environ, "PATH": f"{CHP_BIN}:{HUB_VENV / 'bin'}:{os.environ['PATH']}"}
        with (self.state / "hub.log").open("wb") as log:
            self.process = subprocess.Popen([str(HUB_VENV / "bin" / "jupyterhub"), "-f", str(self.state / "jupyterhub_config.py")],
                                            cwd=self.state, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        for _ in range(300):
            try:
                if requests.get(self.url + "hub/api/", timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        pytest.fail(f"JupyterHub did not start:\n{self.log()}")

    def log(self) -> str:
        return (self.state / "hub.log").read_text(errors="replace")[-3000:]

    def users(self) -> list[str]:
        response = requests.get(self.url + "hub/api/users", headers={"Authorization": f"token {self.token}"}, timeout=10)
        response.raise_for_status()
        body = response.json()
        return [user["name"] for user in (body["items"] if isinstance(body, dict) else body)]

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for container in self.engine.containers.list(ignore_removed=True, all=True, filters={"name": f"jupyter-{PREFIX}"}):
            container.remove(force=True)
        try:
            self.engine.networks.get(NETWORK).remove()
        except docker.errors.APIError:
            pass


@pytest.fixture(scope="module")
def hub(engine: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    running = Hub(tmp_path_factory.mktemp("hub") / "state", engine).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def git_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitServer]:
    server = GitServer(tmp_path_factory.mktemp("hub-git")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def daemon(hub: Hub, git_server: GitServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    running = Daemon(tmp_path_factory.mktemp("hub-serve"), options=("--launch-backend", "jupyterhub", "--hub-url", hub.url,
                                                                      "--hub-user-prefix", PREFIX),
                     env={"JUPYTERHUB_API_TOKEN": hub.token}).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def repository(git_server: GitServer, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A repository whose image can be a hub's single-user server: jupyterhub at the hub's version."""
    source = tmp_path_factory.mktemp("hub-repo")
    (source / "requirements.txt").write_text("jupyterhub==6.1.1\npyparsing==3.1.2\n")
    git_server.publish("hubrepo", source, tmp_path_factory.mktemp("hub-work"))
    return git_server.url("hubrepo")


def test_a_build_is_launched_through_the_hub_runs_code_and_stops(daemon: Daemon, hub: Hub, repository: str, engine: docker.DockerClient) -> None:
    launch = daemon.ok("POST", "/api/v1/launches", {"repo": repository})
    running = daemon.wait_launch(launch["id"], timeout=900)
    assert running["state"] == "running", (running, daemon.stderr(), hub.log())
    user = f"{PREFIX}{launch['id']}"
    assert running["container_id"] == f"hub:{user}"
    base, token = running["url"].split("?token=")
    assert base == f"{hub.url}user/{user}/"  # the hub's URL for the server, not a port of the daemon's
    assert user in hub.users()
    output = execute(base, token, "import os, pyparsing; print(os.environ['JUPYTERHUB_USER'], pyparsing.__version__)")
    assert output.split() == [user, "3.1.2"]
    container = engine.containers.get(f"jupyter-{user}")  # DockerSpawner's container, from the daemon's image
    build = daemon.ok("GET", f"/api/v1/builds/{running['build']}")
    assert container.attrs["Config"]["Image"] == build["image"]
    assert daemon.api("DELETE", f"/api/v1/launches/{launch['id']}").status_code == 202
    daemon.wait_launch(launch["id"], ("stopped",))
    for _ in range(150):
        if user not in hub.users() and not engine.containers.list(ignore_removed=True, all=True, filters={"name": f"jupyter-{user}"}):
            break
        time.sleep(0.2)
    assert user not in hub.users()
    assert engine.containers.list(ignore_removed=True, all=True, filters={"name": f"jupyter-{user}"}) == []


def test_a_hub_whose_spawner_takes_no_image_fails_the_launch_and_leaves_no_user(daemon: Daemon, hub: Hub, repository: str) -> None:
    (hub.state / "allow-images").unlink()
    try:
        launch = daemon.ok("POST", "/api/v1/launches", {"repo": repository})
        failed = daemon.wait_launch(launch["id"], timeout=900)
    finally:
        (hub.state / "allow-images").touch()
    assert failed["state"] == "failed"
    assert failed["error"] == "the JupyterHub's spawner did not take the image to launch (Specifying image to launch is not allowed)", failed
    assert "allowed_images" in failed["hint"]
    assert [user for user in hub.users() if user.startswith(PREFIX)] == []  # no orphan user or server


@pytest.mark.parametrize("problem", ["refused token", "unreachable hub"])
def test_bad_hub_settings_stop_the_daemon_with_one_line(hub: Hub, tmp_path: Path, problem: str) -> None:
    url, token = (hub.url, "not-the-token") if problem == "refused token" else (f"http://127.0.0.1:{free_port()}/", hub.token)
    result = subprocess.run([sys.executable, "-m", "r2env.cli", "serve", "--port", "0", "--state-dir", str(tmp_path / "state"),
                             "--launch-backend", "jupyterhub", "--hub-url", url], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "JUPYTERHUB_API_TOKEN": token})
    assert result.returncode == 10, result.stderr
    expected = (f"the JupyterHub at {hub.url} refused the API token (403 on GET user)" if problem == "refused token"
                else f"cannot reach the JupyterHub at {url} (connection refused)")
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"r2env: error: {expected}: "), result.stderr
    assert result.stdout == ""
