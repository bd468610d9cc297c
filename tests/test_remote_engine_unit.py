"""Engine addresses without an engine: which variables docker-py and the docker CLI get, and the BuildKit argv
for a named buildx builder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from r2env.engine import BuildRequest, DockerEngine, _Cli
from r2env.engine_address import EngineAddress, check_host


def test_an_address_replaces_the_environments_engine_variables() -> None:
    base = {"DOCKER_HOST": "unix:///var/run/docker.sock", "DOCKER_CONTEXT": "desktop", "DOCKER_TLS_VERIFY": "", "PATH": "/bin"}
    env = EngineAddress("tcp://builder.example.org:2376", "/certs").environment(base)
    assert env == {"DOCKER_HOST": "tcp://builder.example.org:2376", "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": "/certs", "PATH": "/bin"}
    assert EngineAddress("ssh://me@builder").environment(base)["DOCKER_HOST"] == "ssh://me@builder"
    assert "DOCKER_TLS_VERIFY" not in EngineAddress("ssh://me@builder").environment(base)
    assert EngineAddress().environment(base) == base  # no address: the environment's own engine
    assert EngineAddress().describe({}) == "unix:///var/run/docker.sock"


@pytest.mark.parametrize(("host", "problem"), [
    ("", ""), ("tcp://127.0.0.1:2376", ""), ("ssh://u@h:22", ""), ("unix:///run/docker.sock", ""),
    ("127.0.0.1:2376", "does not start with unix://, tcp://, ssh://, npipe://"), ("tcp://h:1 x", "contains spaces or control characters"),
])
def test_docker_host_values(host: str, problem: str) -> None:
    assert check_host(host) == problem


def test_buildkit_builds_go_to_the_named_builder_and_the_addressed_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def stream(self: DockerEngine, argv: list[str], env: dict[str, str]) -> object:
        seen.update(argv=argv, env=env)
        return iter(())

    monkeypatch.setattr(DockerEngine, "_stream_buildkit", stream)
    env = EngineAddress("tcp://builder.example.org:2376", "/certs").environment({"PATH": "/bin"})
    engine = DockerEngine(None, _Cli("/usr/bin/docker", "buildx"), env, buildx_builder="remote-kit")
    secret = tmp_path / "ca.pem"
    secret.write_text("ca")
    request = BuildRequest(context=tmp_path, dockerfile=tmp_path / "Dockerfile", tag="t:1", labels={}, build_args={}, secrets={"ca": secret})
    list(engine.build(request))
    assert seen["argv"][:5] == ["/usr/bin/docker", "buildx", "build", "--load", "--builder=remote-kit"]
    assert f"--secret=id=ca,src={secret}" in seen["argv"]
    assert (seen["env"]["DOCKER_HOST"], seen["env"]["DOCKER_TLS_VERIFY"], seen["env"]["DOCKER_CERT_PATH"]) == ("tcp://builder.example.org:2376", "1", "/certs")
    assert engine.host == "tcp://builder.example.org:2376"


@pytest.mark.parametrize(("docker_host", "remote"), [
    ("unix:///var/run/docker.sock", ""), ("tcp://127.0.0.1:2376", ""), ("tcp://localhost:2376", ""), ("ssh://me@[::1]", ""),
    ("tcp://builder.example.org:2376", "builder.example.org"), ("ssh://me@gpu-box:2222", "gpu-box"),
])
def test_published_ports_are_on_the_engines_machine(docker_host: str, remote: str) -> None:
    from r2env.engine import _container_info, remote_host_of

    assert remote_host_of(docker_host) == remote
    attrs = {"Id": "c1", "State": {"Status": "running"}, "Config": {"Image": "i", "Env": ["JUPYTER_TOKEN=t"]},
             "NetworkSettings": {"Ports": {"8888/tcp": [{"HostIp": "0.0.0.0", "HostPort": "49153"}]}}}
    info = _container_info(attrs, remote_host_of(docker_host))
    assert (info.host_ip, info.host_port) == (remote or "0.0.0.0", 49153)
