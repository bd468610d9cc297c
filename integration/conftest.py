"""Integration fixtures: the real components the tests drive. A Docker engine (required when R2ENV_REQUIRE_ENGINE=1)
and Chromium for the browser tests (required when R2ENV_REQUIRE_BROWSER=1); `.ci/run` sets both, so in CI a missing
one fails the tests, while elsewhere they skip and say what is missing."""

from __future__ import annotations

import os
from typing import Iterator

import docker
import pytest

# Debian's chromium package; R2ENV_CHROMIUM names another build (Playwright drives any recent Chromium).
DEFAULT_CHROMIUM = "/usr/bin/chromium"


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


@pytest.fixture(scope="session")
def chromium() -> str:
    """The Chromium executable the browser tests launch."""
    path = os.environ.get("R2ENV_CHROMIUM") or DEFAULT_CHROMIUM
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        missing = f"no Chromium at {path}: install Debian's chromium package (or set R2ENV_CHROMIUM)"
        if os.environ.get("R2ENV_REQUIRE_BROWSER") == "1":
            pytest.fail(f"R2ENV_REQUIRE_BROWSER=1 but {missing}")
        pytest.skip(missing)
    return path
