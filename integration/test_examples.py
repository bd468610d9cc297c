"""Every example repository builds for real and passes its own verify script inside the image."""

from __future__ import annotations

import docker
import pytest

from support import EXAMPLES, build_ok, r2env, run_in

BUILDABLE = sorted(p.name for p in EXAMPLES.iterdir() if (p / "verify").is_file())


def test_every_example_except_conda_is_buildable() -> None:
    assert set(BUILDABLE) == {p.name for p in EXAMPLES.iterdir() if p.is_dir()} - {"environment-yml"}


@pytest.mark.parametrize("example", BUILDABLE)
def test_example_builds_and_verifies(engine: docker.DockerClient, example: str) -> None:
    image = f"r2env-it/{example}"
    result = build_ok(str(EXAMPLES / example), "--image-name", image)
    assert result.stdout.strip().splitlines()[-1] == f"built image {image}"
    output = run_in(engine, image, ["./verify"])
    assert "all checks passed" in output
    labels = engine.images.get(image).labels
    assert labels["org.r2env.spec-digest"].startswith("sha256:")
    assert labels["org.r2env.source.url"] == str(EXAMPLES / example)
    assert labels["org.r2env.version"]


def test_environment_yml_is_refused_with_a_clear_error(engine: docker.DockerClient) -> None:
    result = r2env("build", str(EXAMPLES / "environment-yml"))
    assert result.returncode == 4
    assert "environment.yml: conda environments are not supported yet" in result.stderr
    assert "Traceback" not in result.stderr
