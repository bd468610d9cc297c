"""Integration fixtures: a real Docker engine (required when R2ENV_REQUIRE_ENGINE=1, as in CI)."""

from __future__ import annotations

import os
from typing import Iterator

import docker
import pytest


@pytest.fixture(scope="session")
def engine() -> Iterator[docker.DockerClient]:
    try:
        client = docker.from_env(timeout=300)
        client.ping()
    except docker.errors.DockerException as error:
        if os.environ.get("R2ENV_REQUIRE_ENGINE") == "1":
            pytest.fail(f"R2ENV_REQUIRE_ENGINE=1 but no Docker engine answers: {error}")
        pytest.skip(f"no Docker engine: {error}")
    yield client
    client.close()
