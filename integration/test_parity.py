"""Binder parity: every repository in integration/parity/ with a verify script builds for real and passes it.
(The refused ones are checked without an engine by tests/test_parity_plans.py.)"""

from __future__ import annotations

from pathlib import Path

import docker
import pytest

from support import ROOT, build_ok, run_in

PARITY = ROOT / "integration" / "parity"
# A repository with a `conda-channel` file is locked against a channel the tests make, by its own test module.
BUILDS = sorted(p.name for p in PARITY.iterdir() if (p / "verify").is_file() and not (p / "conda-channel").is_file())


def build_arguments(repo: Path) -> list[str]:
    extra = repo / "build-args"
    return [line.strip() for line in extra.read_text().splitlines() if line.strip()] if extra.is_file() else []


@pytest.mark.parametrize("name", BUILDS)
def test_parity_repository_builds_and_verifies(engine: docker.DockerClient, name: str) -> None:
    image = f"r2env-it/parity-{name}"
    build_ok(str(PARITY / name), "--image-name", image, *build_arguments(PARITY / name))
    assert "all checks passed" in run_in(engine, image, ["./verify"])
