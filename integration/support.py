"""Helpers for the integration tests: run the real CLI, run commands in images."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import docker

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str


def r2env(*arguments: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> Result:
    """Run the real command line, as a user would."""
    completed = subprocess.run(
        [sys.executable, "-m", "r2env.cli", *arguments],
        capture_output=True, text=True, env={**os.environ, **(env or {})}, cwd=cwd, timeout=1800,
    )
    return Result(completed.returncode, completed.stdout, completed.stderr)


def build_ok(*arguments: str, env: dict[str, str] | None = None) -> Result:
    result = r2env("build", *arguments, env=env)
    assert result.returncode == 0, f"r2env build {' '.join(arguments)} failed:\n{result.stdout[-3000:]}\n{result.stderr}"
    return result



def run_in(client: docker.DockerClient, image: str, command: list[str], **kwargs: object) -> str:
    """Run a command in a throwaway container and return its output; fail the test with it on non-zero exit."""
    container = client.containers.create(image, command, **kwargs)
    try:
        container.start()
        status = container.wait(timeout=300)
        output = container.logs(stdout=True, stderr=True).decode(errors="replace")
    finally:
        container.remove(force=True)
    assert status["StatusCode"] == 0, f"{command} exited {status['StatusCode']} in {image}:\n{output}"
    return output


def network_gateway(network: "docker.models.networks.Network") -> str:
    """The host's address on a Docker network. Docker 20.10 leaves IPAM's Gateway out for the default bridge of a
    fresh engine (only the Subnet is listed); the gateway is then the subnet's first address, as Docker assigns it."""
    config = network.attrs["IPAM"]["Config"][0]
    return config.get("Gateway") or str(next(ipaddress.ip_network(config["Subnet"]).hosts()))
