"""The daemon's limits as the engine applies them (r2env/engine.py, docker-py faked): a notebook server's pids limit,
and a build's memory limit, which only the classic builder can apply (BuildKit through the docker CLI ignores
`docker build --memory` on Docker Engine 20.10: integration/test_serve_limits_engine.py checks both on a real engine)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest

from r2env.engine import BuildRequest, DockerEngine, _Cli
from r2env.events import Kind
from r2env.launch.container import ContainerRequest


class _Containers:
    def __init__(self) -> None:
        self.options: dict[str, Any] = {}

    def create(self, image: str, command: Any, **options: Any) -> Any:
        self.options = options
        return type("Container", (), {"id": "c-1"})()


class _Api:
    def __init__(self) -> None:
        self.kwargs: dict[str, Any] = {}

    def build(self, **kwargs: Any) -> Iterator[dict[str, str]]:
        self.kwargs = kwargs
        return iter([{"stream": "Step 1/1 : FROM debian:bookworm"}])


class _Client:
    def __init__(self) -> None:
        self.containers = _Containers()
        self.api = _Api()


def test_a_container_gets_its_memory_cpu_and_pids_limits() -> None:
    client = _Client()
    DockerEngine(client, None)._create(ContainerRequest("img", memory="2g", cpus=0.5, pids_limit=256))
    assert (client.containers.options["mem_limit"], client.containers.options["nano_cpus"], client.containers.options["pids_limit"]) == ("2g", 500_000_000, 256)
    DockerEngine(client, None)._create(ContainerRequest("img"))
    assert not {"mem_limit", "nano_cpus", "pids_limit"} & set(client.containers.options)


def _request(tmp_path: Path, memory: str) -> BuildRequest:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM debian:bookworm\n")
    return BuildRequest(tmp_path, dockerfile, "r2env-test", {}, {}, {}, memory=memory)


def test_the_classic_builder_limits_each_build_steps_memory_without_swap(tmp_path: Path) -> None:
    client = _Client()
    list(DockerEngine(client, None).build(_request(tmp_path, "4g")))
    assert client.api.kwargs["container_limits"] == {"memory": 4 << 30, "memswap": 4 << 30}
    list(DockerEngine(client, None).build(_request(tmp_path, "")))
    assert client.api.kwargs["container_limits"] is None


def test_buildkit_says_in_the_log_that_it_cannot_apply_the_memory_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    argv: list[str] = []
    monkeypatch.setattr(DockerEngine, "_stream_buildkit", lambda self, command, env: iter(argv.extend(command) or ()))
    events = list(DockerEngine(None, _Cli("/usr/bin/docker", "buildkit")).build(_request(tmp_path, "4g")))
    assert [(event.kind, event.message) for event in events] == [
        (Kind.INFO, "memory limit 4g not applied: BuildKit through the docker CLI cannot limit build steps")]
    assert not any(arg.startswith("--memory") for arg in argv)  # ignored by the engine: not passed as if it worked


def test_the_daemons_builds_carry_its_build_memory(daemon_with: Any) -> None:
    assert daemon_with(build_memory="3g").builds.settings.build_memory == "3g"
