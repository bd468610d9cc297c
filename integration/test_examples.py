"""Every example repository builds for real and passes its own verify script inside the image."""

from __future__ import annotations

import docker
import pytest

from support import EXAMPLES, build_ok, r2env, run_in

# environment-yml is built by test_conda_env.py, from a lock made against the channel that test builds, and pixi by
# test_pixi_env.py, from the same channel and a local index. r-* install R packages from the CRAN-like repository
# test_r.py makes, and are built there.
BUILT_ELSEWHERE = ("environment-yml", "pixi")
BUILDABLE = sorted(p.name for p in EXAMPLES.iterdir()
                   if (p / "verify").is_file() and p.name not in BUILT_ELSEWHERE and not p.name.startswith("r-"))


def test_every_example_has_a_verify_script() -> None:
    assert {p.name for p in EXAMPLES.iterdir() if (p / "verify").is_file()} == {p.name for p in EXAMPLES.iterdir() if p.is_dir()}


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


def test_an_unlocked_environment_yml_build_says_to_lock_it(engine: docker.DockerClient) -> None:
    result = r2env("build", str(EXAMPLES / "environment-yml"))
    assert result.returncode == 8
    assert result.stderr.strip() == (
        "r2env: error: binder/environment.yml is built from its lock, and binder/r2env.lock does not exist: "
        "run `r2env lock` first (or `r2env build --relock`)"
    )
