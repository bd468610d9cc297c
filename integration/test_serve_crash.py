"""kill -9 of `r2env serve` in the middle of things, then a restart on the same state: the running build is
reported failed with its log so far, its build step really stopped, a server that was still starting is failed and
its container removed, a server that was running is kept, and new builds work."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import docker
import requests

from serve_support import EXAMPLES, Daemon, GitServer, serve_containers
from test_serve_api import _processes_sleeping, _wait_for_line, shut_down, slow_postbuild

SLOW_START = "#!/bin/sh\nsleep 600\nexec \"$@\"\n"


def test_a_restart_after_kill_9_fails_what_was_running_and_removes_orphans(tmp_path: Path, engine: docker.DockerClient) -> None:
    git_server = GitServer(tmp_path / "git").start()
    work = tmp_path / "work"
    work.mkdir()
    try:
        _crash_and_restart(tmp_path, git_server, work, engine)
    finally:
        git_server.stop()


def _crash_and_restart(tmp_path: Path, git_server: GitServer, work: Path, engine: docker.DockerClient) -> None:
    daemon = Daemon(tmp_path / "state").start()
    token = daemon.token
    # A server that is running, and one whose start script never gets to the server (still "starting").
    git_server.publish("crash-running", EXAMPLES / "requirements", work)
    running = daemon.wait_launch(daemon.ok("POST", "/api/v1/launches", {"repo": git_server.url("crash-running")})["id"])
    assert running["state"] == "running", running
    git_server.publish("crash-starting", EXAMPLES / "requirements", work, {"start": SLOW_START})
    starting = daemon.ok("POST", "/api/v1/launches", {"repo": git_server.url("crash-starting")})
    deadline = time.monotonic() + 300
    while daemon.ok("GET", f"/api/v1/launches/{starting['id']}")["state"] != "starting" and time.monotonic() < deadline:
        time.sleep(0.3)
    deadline = time.monotonic() + 30
    daemon_id = engine.containers.get(running["container_id"]).labels["org.r2env.serve"]
    while len(serve_containers(daemon_id)) < 2 and time.monotonic() < deadline:
        time.sleep(0.3)
    assert len(serve_containers(daemon_id)) == 2
    # And a build in the middle of a step.
    postbuild, started, seconds = slow_postbuild()
    git_server.publish("crash-build", EXAMPLES / "requirements", work, {"postBuild": postbuild})
    build = daemon.ok("POST", "/api/v1/builds", {"repo": git_server.url("crash-build")})
    _wait_for_line(daemon, build["id"], started)
    assert _processes_sleeping(seconds, timeout=0)

    daemon.kill9()
    # Its worker notices and takes the build down with it: BuildKit stops the step.
    assert _processes_sleeping(seconds, timeout=30) == []

    restarted = Daemon(tmp_path / "state").start(token=token)
    try:
        assert not any(token in line for line in restarted.output)
        failed = restarted.ok("GET", f"/api/v1/builds/{build['id']}")
        assert failed["state"] == "failed" and failed["error"] == "the build was interrupted by restart", failed
        log = [data["message"] for kind, data, _ in restarted.events(build["id"]) if kind == "log"]
        assert any(started in line for line in log)  # its log so far survived
        assert log[-1] == "build failed: interrupted by restart"
        interrupted = restarted.ok("GET", f"/api/v1/launches/{starting['id']}")
        assert interrupted["state"] == "failed" and interrupted["error"] == "the launch was interrupted by restart"
        # The orphan is gone; the running server was kept and still answers.
        assert serve_containers(daemon_id) == [running["container_id"]]
        kept = restarted.ok("GET", f"/api/v1/launches/{running['id']}")
        assert kept["state"] == "running"
        base, notebook_token = kept["url"].split("?token=")
        assert requests.get(f"{base}api/status", headers={"Authorization": f"token {notebook_token}"}, timeout=10).status_code == 200
        # New work goes on.
        git_server.publish("crash-after", EXAMPLES / "requirements", work, {"after.txt": uuid.uuid4().hex})
        after = restarted.ok("POST", "/api/v1/builds", {"repo": git_server.url("crash-after")})
        assert restarted.wait_build(after["id"])["state"] == "built"
    finally:
        shut_down(restarted)
    assert serve_containers(daemon_id) == []



def test_after_a_sigterm_queued_builds_run_and_running_ones_read_as_interrupted(tmp_path: Path, engine: docker.DockerClient) -> None:
    git_server = GitServer(tmp_path / "git").start()
    work = tmp_path / "work"
    work.mkdir()
    daemon = Daemon(tmp_path / "state", options=("--max-builds", "1")).start()
    try:
        postbuild, started, seconds = slow_postbuild()
        git_server.publish("term-slow", EXAMPLES / "requirements", work, {"postBuild": postbuild})
        git_server.publish("term-queued", EXAMPLES / "requirements", work, {"queued.txt": uuid.uuid4().hex})
        slow = daemon.ok("POST", "/api/v1/builds", {"repo": git_server.url("term-slow")})
        _wait_for_line(daemon, slow["id"], started)
        queued = daemon.ok("POST", "/api/v1/builds", {"repo": git_server.url("term-queued")})
        assert daemon.ok("GET", f"/api/v1/builds/{queued['id']}")["state"] == "queued"
        assert daemon.stop() == 0  # SIGTERM, as systemctl stop sends
        assert _processes_sleeping(seconds, timeout=30) == []
        restarted = Daemon(tmp_path / "state", options=("--max-builds", "1")).start(token=daemon.token)
        try:
            assert restarted.ok("GET", f"/api/v1/builds/{slow['id']}")["error"] == "the build was interrupted by restart"
            assert restarted.wait_build(queued["id"])["state"] == "built"
        finally:
            shut_down(restarted)
    finally:
        git_server.stop()
