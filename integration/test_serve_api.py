"""`r2env serve` against a real engine, through its HTTP API: builds and their event streams, deduplication,
launches of real JupyterLab servers, cancellation, time limits, idle culling, and the refusals."""

from __future__ import annotations

import concurrent.futures
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Iterator

import docker
import pytest
import requests

from serve_support import EXAMPLES, Daemon, GitServer, parse_sse

# A postBuild that runs until stopped; its unique sleep shows whether BuildKit really stopped the step.
SLOW_POSTBUILD = "#!/bin/sh\necho r2env-slow-step-started-{marker}\nexec sleep {seconds}\n"


def slow_postbuild() -> tuple[str, str, int]:
    """(postBuild text, the line it prints when it starts, its sleep's seconds)."""
    marker, seconds = uuid.uuid4().hex, 600_000 + uuid.uuid4().int % 100_000
    return SLOW_POSTBUILD.format(marker=marker, seconds=seconds), f"r2env-slow-step-started-{marker}", seconds


@pytest.fixture(scope="module")
def git_server(tmp_path_factory: pytest.TempPathFactory, engine: docker.DockerClient) -> Iterator[GitServer]:
    server = GitServer(tmp_path_factory.mktemp("git-server")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("git-work")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, git_server: GitServer) -> Iterator[Daemon]:
    running = Daemon(tmp_path_factory.mktemp("serve-state")).start()
    yield running
    shut_down(running)


def shut_down(daemon: Daemon) -> None:
    """Stop its servers, remove the images it built, stop it (SIGTERM: exit 0)."""
    for launch in daemon.ok("GET", "/api/v1/launches"):
        daemon.api("DELETE", f"/api/v1/launches/{launch['id']}")
    client = docker.from_env()
    for build in daemon.ok("GET", "/api/v1/builds"):
        try:
            client.images.remove(build["image"])
        except docker.errors.APIError:
            pass  # never built, or shared with a build that is reused
    client.close()
    assert daemon.stop() == 0


def _wait_for_line(daemon: Daemon, build_id: str, text: str) -> None:
    for kind, data, _ in daemon.events(build_id):
        if kind == "log" and text in data["message"]:
            return
        assert kind != "end", f"the build ended before {text!r}: {data}"


def test_a_build_streams_its_events_replays_them_and_is_reused(daemon: Daemon, git_server: GitServer, work: Path) -> None:
    commit = git_server.publish("requirements", EXAMPLES / "requirements", work)
    created = daemon.api("POST", "/api/v1/builds", {"repo": git_server.url("requirements"), "ref": "main"})
    assert created.status_code == 201, created.text
    build = created.json()
    assert (build["commit"], build["state"]) == (commit, "queued")
    streamed = list(daemon.events(build["id"]))
    kinds = [kind for kind, _, _ in streamed]
    assert kinds[-1] == "end" and set(kinds[:-1]) == {"log"}
    messages = [data["message"] for kind, data, _ in streamed if kind == "log"]
    assert any("--compile-bytecode -r requirements.txt" in message and "uv pip install" in message for message in messages)
    assert messages[-1] == f"built {build['image']}"
    ended = streamed[-1][1]
    assert ended["state"] == "built" and ended["finished"], ended
    seqs = [int(event_id) for kind, _, event_id in streamed if kind == "log"]
    assert seqs == list(range(1, len(seqs) + 1))
    # Replayable after the end, and resumable from any event.
    assert [data for _, data, _ in daemon.events(build["id"])] == [data for _, data, _ in streamed]
    resumed = [int(event_id) for kind, _, event_id in daemon.events(build["id"], last_event_id=seqs[-3]) if kind == "log"]
    assert resumed == seqs[-2:]
    # The same commit again, by branch or by commit: the cached image at once.
    for ref in ("main", commit, commit[:10], ""):
        again = daemon.api("POST", "/api/v1/builds", {"repo": git_server.url("requirements"), "ref": ref})
        assert (again.status_code, again.json()["id"], again.json()["state"]) == (200, build["id"], "built"), again.text
    image = docker.from_env().images.get(build["image"])
    assert image.labels["org.r2env.source.commit"] == commit
    assert image.labels["org.r2env.spec-digest"] == build["spec_digest"]


def test_twenty_concurrent_requests_make_one_build(daemon: Daemon, git_server: GitServer, work: Path) -> None:
    commit = git_server.publish("requirements", EXAMPLES / "requirements", work, {"concurrent.txt": uuid.uuid4().hex})
    url = git_server.url("requirements")
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda _: daemon.api("POST", "/api/v1/builds", {"repo": url, "ref": "main"}), range(20)))
    assert sorted(answer.status_code for answer in answers) == [200] * 19 + [201], [a.text for a in answers]
    assert len({answer.json()["id"] for answer in answers}) == 1
    assert [b["id"] for b in daemon.ok("GET", "/api/v1/builds") if b["commit"] == commit] == [answers[0].json()["id"]]
    assert daemon.wait_build(answers[0].json()["id"])["state"] == "built"


def test_a_launch_serves_jupyterlab_with_its_token_until_stopped(daemon: Daemon, git_server: GitServer, work: Path,
                                                                 engine: docker.DockerClient) -> None:
    git_server.publish("requirements", EXAMPLES / "requirements", work)
    launch = daemon.ok("POST", "/api/v1/launches", {"repo": git_server.url("requirements")})
    assert launch["state"] in ("waiting", "starting")
    running = daemon.wait_launch(launch["id"])
    assert running["state"] == "running", running
    url = running["url"]
    base, token = url.split("?token=")
    assert requests.get(f"{base}api/status", headers={"Authorization": f"token {token}"}, timeout=10).status_code == 200
    assert requests.get(f"{base}api/status", timeout=10).status_code == 403
    contents = requests.get(f"{base}api/contents", headers={"Authorization": f"token {token}"}, timeout=10).json()
    assert "analysis.ipynb" in {item["name"] for item in contents["content"]}
    container = engine.containers.get(running["container_id"])
    assert container.labels["org.r2env.serve.launch"] == launch["id"]
    assert daemon.api("DELETE", f"/api/v1/launches/{launch['id']}").status_code == 202
    stopped = daemon.wait_launch(launch["id"], ("stopped",))
    assert stopped["stopped_reason"] == "stopped on request"
    assert _gone(engine, running["container_id"])


def test_the_binderhub_stream_builds_launches_and_says_ready(daemon: Daemon, git_server: GitServer, work: Path) -> None:
    commit = git_server.publish("requirements", EXAMPLES / "requirements", work)
    spec = requests.utils.quote(git_server.url("requirements"), safe="") + "/main"
    with requests.get(f"{daemon.url}/build/git/{spec}", params={"token": daemon.token}, stream=True, timeout=600) as response:
        assert response.status_code == 200
        messages = [data for _, data, _ in parse_sse(response.iter_lines(decode_unicode=True))]
    phases = [message["phase"] for message in messages]
    assert phases[0] == "waiting" and phases[-3:] == ["built", "launching", "ready"], phases
    assert all(message["message"].endswith("\n") for message in messages)
    ready = messages[-1]
    assert ready["resolved_ref"] == commit and ready["repo_url"] == git_server.url("requirements")
    status = requests.get(ready["url"] + "api/status", headers={"Authorization": f"token {ready['token']}"}, timeout=10)
    assert status.status_code == 200
    # Without the token, nothing: not even the stream's first message.
    assert requests.get(f"{daemon.url}/build/git/{spec}", timeout=10).status_code == 401
    # A provider this server cannot fetch from fails in the stream, as BinderHub reports failures.
    with requests.get(f"{daemon.url}/build/zenodo/10.5281/zenodo.3242074", params={"token": daemon.token}, stream=True, timeout=60) as response:
        last = [data for _, data, _ in parse_sse(response.iter_lines(decode_unicode=True))][-1]
    assert last["phase"] == "failed" and "zenodo" in last["message"]


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"repo": "https://github.com/binder-examples/requirements"}, 403, "scheme 'https' is not allowed"),
        ({"repo": "git://example.org/repo.git"}, 403, "host 'example.org' is not allowed"),
        ({"repo": "file:///etc"}, 403, ""),
        ({"repo": "/srv/repositories/secret"}, 403, ""),
        ({"repo": "--upload-pack=touch /tmp/pwned"}, 400, ""),
        ({"repo": "git://127.0.0.1:9/x.git", "ref": "--output=/tmp/pwned"}, 400, "ref"),
        ({"repo": "git://127.0.0.1/x.git", "image": "evil"}, 400, "unknown field 'image'"),
        ({"repo": 42}, 400, "must be a str"),
        ({}, 400, "'repo' is missing"),
    ],
)
def test_disallowed_or_malformed_requests_are_refused_with_one_line(daemon: Daemon, body: dict[str, object], status: int, error: str) -> None:
    before = len(daemon.ok("GET", "/api/v1/builds"))
    answer = daemon.api("POST", "/api/v1/builds", body)
    assert answer.status_code == status, answer.text
    assert error in answer.json()["error"] and answer.json()["hint"] and "\n" not in answer.json()["error"]
    assert len(daemon.ok("GET", "/api/v1/builds")) == before
    assert not Path("/tmp/pwned").exists()


def test_an_unknown_ref_or_repository_is_a_clear_error(daemon: Daemon, git_server: GitServer, work: Path) -> None:
    git_server.publish("requirements", EXAMPLES / "requirements", work)
    answer = daemon.api("POST", "/api/v1/builds", {"repo": git_server.url("requirements"), "ref": "no-such-branch"})
    assert answer.status_code == 422 and "unknown ref 'no-such-branch'" in answer.json()["error"], answer.text
    answer = daemon.api("POST", "/api/v1/builds", {"repo": git_server.url("does-not-exist")})
    assert answer.status_code == 422 and "does-not-exist" in answer.json()["error"], answer.text
    # A link to a file of the daemon's host: refused before anything reads it.
    git_server.publish("linked", EXAMPLES / "requirements", work)
    (work / "linked" / "apt.txt").symlink_to("/etc/passwd")
    git_server.publish("linked", EXAMPLES / "requirements", work)
    answer = daemon.api("POST", "/api/v1/builds", {"repo": git_server.url("linked")})
    assert answer.status_code == 422 and "apt.txt is a symbolic link out of the repository" in answer.json()["error"], answer.text
    assert "root:" not in answer.text


def test_every_api_call_needs_the_token(daemon: Daemon) -> None:
    for method, path in [("GET", "/api/v1/builds"), ("POST", "/api/v1/builds"), ("GET", "/api/v1/launches"),
                         ("DELETE", "/api/v1/builds/b-1"), ("GET", "/api/v1/builds/b-1/events")]:
        for token in ("", "wrong-" + daemon.token):
            answer = daemon.api(method, path, {"repo": "x"}, token=token)
            assert answer.status_code == 401, (method, path, answer.text)
            assert answer.headers["WWW-Authenticate"].startswith("Bearer")
            assert "API token" in answer.json()["error"]
    # The token in a query string is for event streams only (EventSource cannot send headers).
    assert requests.get(f"{daemon.url}/api/v1/builds", params={"token": daemon.token}, timeout=10).status_code == 401
    health = requests.get(f"{daemon.url}/api/v1/health", timeout=10).json()
    assert health == {"status": "ok", "version": health["version"]}
    detailed = daemon.ok("GET", "/api/v1/health")
    assert detailed["engine"] == "ok" and set(detailed["builds"]) == {"queued", "building"}


def test_cancel_stops_a_running_build_and_the_queue_moves_on(tmp_path: Path, git_server: GitServer, work: Path) -> None:
    daemon = Daemon(tmp_path / "state", options=("--max-builds", "1")).start()
    try:
        postbuild, started, seconds = slow_postbuild()
        git_server.publish("slow-cancel", EXAMPLES / "requirements", work, {"postBuild": postbuild})
        git_server.publish("queued-after", EXAMPLES / "requirements", work, {"queued.txt": started})
        slow = daemon.ok("POST", "/api/v1/builds", {"repo": git_server.url("slow-cancel")})
        _wait_for_line(daemon, slow["id"], started)
        assert _processes_sleeping(seconds, timeout=0)
        queued = daemon.ok("POST", "/api/v1/builds", {"repo": git_server.url("queued-after")})
        time.sleep(1)
        assert daemon.ok("GET", f"/api/v1/builds/{queued['id']}")["state"] == "queued"  # --max-builds 1
        assert daemon.api("DELETE", f"/api/v1/builds/{slow['id']}").status_code == 202
        ended = daemon.wait_build(slow["id"])
        assert ended["state"] == "cancelled" and ended["error"] == "the build was cancelled"
        assert daemon.wait_build(queued["id"])["state"] == "built"
        assert daemon.api("DELETE", f"/api/v1/builds/{slow['id']}").status_code == 409
        assert _processes_sleeping(seconds) == []  # BuildKit stopped the step: cancelling reached the engine
    finally:
        shut_down(daemon)


def test_a_build_over_its_time_limit_is_stopped_and_failed(tmp_path: Path, git_server: GitServer, work: Path) -> None:
    daemon = Daemon(tmp_path / "state", options=("--build-timeout", "20")).start()
    try:
        postbuild, _, seconds = slow_postbuild()
        git_server.publish("slow-timeout", EXAMPLES / "requirements", work, {"postBuild": postbuild})
        build = daemon.ok("POST", "/api/v1/builds", {"repo": git_server.url("slow-timeout")})
        ended = daemon.wait_build(build["id"])
        assert ended["state"] == "failed"
        assert ended["error"] == "the build took longer than 20 s and was stopped"
        assert ended["hint"] == "make the build faster, or raise c.Serve.build_timeout"
        assert _processes_sleeping(seconds) == []
    finally:
        shut_down(daemon)


def test_idle_servers_are_culled(tmp_path: Path, git_server: GitServer, work: Path, engine: docker.DockerClient) -> None:
    daemon = Daemon(tmp_path / "state", options=("--cull-idle-timeout", "4")).start()
    try:
        git_server.publish("requirements", EXAMPLES / "requirements", work)
        launch = daemon.ok("POST", "/api/v1/launches", {"repo": git_server.url("requirements")})
        running = daemon.wait_launch(launch["id"])
        assert running["state"] == "running", running
        culled = daemon.wait_launch(launch["id"], ("stopped",), timeout=60)
        assert culled["stopped_reason"].startswith("culled after "), culled
        assert _gone(engine, running["container_id"])
    finally:
        shut_down(daemon)


def test_the_token_is_printed_once_and_can_be_replaced(tmp_path: Path) -> None:
    first = Daemon(tmp_path / "state").start()
    token = first.token
    assert token and any(token in line for line in first.output)
    # One daemon per state directory: a second would take the first's builds for interrupted ones.
    second_daemon = subprocess.run([sys.executable, "-m", "r2env.cli", "serve", "--port", "0", "--state-dir", str(tmp_path / "state")],
                                   capture_output=True, text=True, timeout=60)
    assert second_daemon.returncode == 2
    assert second_daemon.stderr == (f"r2env: error: another r2env serve (pid {first.process.pid if first.process else 0}) uses the state "
                                    f"directory {tmp_path / 'state'}: stop it first, or give this one its own --state-dir\n")
    first.stop()
    second = Daemon(tmp_path / "state").start()
    assert not any(token in line for line in second.output)
    assert any("using the API token generated at first start" in line for line in second.output)
    second.token = token
    assert second.api("GET", "/api/v1/builds").status_code == 200
    second.stop()
    database = (tmp_path / "state" / "r2env-serve.sqlite").read_bytes()
    assert token.encode() not in database  # only its digest is kept
    third = Daemon(tmp_path / "state", options=("--new-token",)).start()
    assert third.token and third.token != token
    assert third.api("GET", "/api/v1/builds", token=token).status_code == 401
    assert third.api("GET", "/api/v1/builds").status_code == 200
    third.stop()
    chosen = "a-configured-token-of-at-least-32-characters"  # shorter ones are refused (tests/test_serve_config.py)
    configured = Daemon(tmp_path / "state", env={"R2ENV_SERVE_TOKEN": chosen}).start(token=chosen)
    assert not any(chosen in line for line in configured.output)
    assert configured.api("GET", "/api/v1/builds").status_code == 200
    configured.stop()


def _gone(engine: docker.DockerClient, container_id: str, timeout: float = 30) -> bool:
    """Whether the container is removed (within `timeout`: stopping takes Jupyter a moment)."""
    deadline = time.monotonic() + timeout
    while container_id in {c.id for c in engine.containers.list(ignore_removed=True, all=True)}:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.3)
    return True


def _processes_sleeping(seconds: int, timeout: float = 20) -> list[str]:
    """Processes running `sleep SECONDS` (a build step's), once they have had `timeout` seconds to go."""
    deadline = time.monotonic() + timeout
    while True:
        found = subprocess.run(["pgrep", "-f", f"^sleep {seconds}$"], capture_output=True, text=True).stdout.split()
        if not found or time.monotonic() >= deadline:
            return found
        time.sleep(0.5)
