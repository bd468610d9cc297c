"""A client's repository built by `r2env serve` cannot reach the daemon's host (issue 17), on the real engine:
`ADD http://127.0.0.1:PORT/secret` is refused with one line before anything is built, and a RUN step connecting to a
server on the host's bridge address or its other addresses is refused by the daemon's firewall. Every server here
is on this machine, answers for the test's duration only, and each connection attempt is bounded by `timeout 5`."""

from __future__ import annotations

import http.server
import socket
import subprocess
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import docker
import pytest

from serve_support import Daemon, GitServer

SECRET = "r2env-h17-host-only-" + uuid.uuid4().hex


@contextmanager
def secret_server(host: str) -> Iterator[tuple[int, list[str]]]:
    """Serves SECRET at /secret on host:<free port>; yields the port and the paths asked for."""
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            hits.append(self.path)
            body = SECRET.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    server = http.server.ThreadingHTTPServer((host, 0), Handler)
    server.timeout = 5
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], hits
    finally:
        server.shutdown()
        server.server_close()


def host_addresses(engine: docker.DockerClient) -> list[str]:
    """The host's IPv4 addresses, its bridge address (the host as a container sees it: 172.17.0.1) among them."""
    bridge = engine.networks.get("bridge").attrs["Options"]["com.docker.network.bridge.name"]
    shown = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True, check=True).stdout.splitlines()
    addresses = {line.split()[1]: line.split()[3].split("/")[0] for line in shown}
    assert bridge in addresses, f"the engine's bridge {bridge} has no IPv4 address"
    return [addresses[bridge]] + sorted(a for name, a in addresses.items() if name != bridge and not a.startswith("127."))


@pytest.fixture(scope="module")
def git_server(tmp_path_factory: pytest.TempPathFactory, engine: docker.DockerClient) -> Iterator[GitServer]:
    server = GitServer(tmp_path_factory.mktemp("git-server")).start()
    yield server
    server.stop()


def _run_daemon(state: Path, config: str = "") -> Daemon:
    options: tuple[str, ...] = ()
    if config:
        (state.parent / "r2env_config.py").write_text(config)
        options = ("--config", str(state.parent / "r2env_config.py"))
    return Daemon(state, options).start()


def _stop(daemon: Daemon, engine: docker.DockerClient) -> None:
    for build in daemon.ok("GET", "/api/v1/builds"):
        try:
            engine.images.remove(build["image"])
        except docker.errors.APIError:
            pass
    assert daemon.stop() == 0


def test_a_dockerfile_adding_a_url_on_the_hosts_loopback_is_refused_with_one_line(
    tmp_path: Path, git_server: GitServer, engine: docker.DockerClient
) -> None:
    with secret_server("127.0.0.1") as (port, hits):
        dockerfile = f"FROM debian:bookworm\nADD http://127.0.0.1:{port}/secret /secret\nRUN cat /secret\n"
        (tmp_path / "empty").mkdir()
        git_server.publish("h17-add", tmp_path / "empty", tmp_path / "work", {"Dockerfile": dockerfile})
        daemon = _run_daemon(tmp_path / "state")
        try:
            answer = daemon.api("POST", "/api/v1/builds", {"repo": git_server.url("h17-add")})
            assert answer.status_code == 403, answer.text
            assert answer.json()["error"] == f"Dockerfile, line 2: ADD http://127.0.0.1:{port}/secret: downloading with ADD is not allowed by this server (the engine would fetch it from the server's own network)"
            assert daemon.ok("GET", "/api/v1/builds") == []
        finally:
            _stop(daemon, engine)
        assert hits == []
        assert SECRET not in "\n".join(daemon.output + daemon.errors)
        assert SECRET.encode() not in b"".join(path.read_bytes() for path in (tmp_path / "state").glob("r2env-serve.sqlite*"))


def _probe_dockerfile(addresses: list[str], port: int) -> str:
    attempts = "; ".join(
        f'(exec 3<>/dev/tcp/{address}/{port} && printf "GET /secret HTTP/1.0\\r\\n\\r\\n" >&3 && timeout 5 cat <&3) '
        f'|| echo "r2env-unreachable {address}"'
        for address in addresses
    )
    return f"FROM debian:bookworm\nRUN timeout 30 bash -c '{attempts}'\n"


def _build_log(daemon: Daemon, build_id: str) -> str:
    return "\n".join(str(data.get("message", "")) if isinstance(data, dict) else str(data) for _, data, _ in daemon.events(build_id))


@pytest.mark.parametrize("firewalled", [False, True], ids=["control-without-firewall", "firewalled"])
def test_a_run_step_cannot_connect_to_a_server_on_the_host(
    tmp_path: Path, git_server: GitServer, engine: docker.DockerClient, firewalled: bool
) -> None:
    """The control shows the hole is real here (the step reads the secret) and that the firewall is what closes it."""
    addresses = host_addresses(engine)
    with secret_server("0.0.0.0") as (port, hits):
        (tmp_path / "empty").mkdir()
        name = f"h17-run-{'on' if firewalled else 'off'}"
        git_server.publish(name, tmp_path / "empty", tmp_path / "work", {"Dockerfile": _probe_dockerfile(addresses, port), "nonce": uuid.uuid4().hex})
        daemon = _run_daemon(tmp_path / "state", "" if firewalled else "c.Serve.block_host_network = False\n")
        try:
            build = daemon.ok("POST", "/api/v1/builds", {"repo": git_server.url(name)})
            done = daemon.wait_build(build["id"])
            log = _build_log(daemon, build["id"])
        finally:
            _stop(daemon, engine)
    assert done["state"] == "built", log
    if firewalled:
        assert hits == [] and SECRET not in log
        for address in addresses:
            assert f"r2env-unreachable {address}" in log
    else:
        assert SECRET in log and len(hits) == len(addresses)
    chains = subprocess.run(["iptables", "-w", "-S"], capture_output=True, text=True, check=True).stdout
    assert daemon.process is not None and f"R2ENV-SERVE-{daemon.process.pid}" not in chains, "the daemon left its chain behind"
