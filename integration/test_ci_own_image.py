"""r2env's own image: built from the top-level Dockerfile on a local base, it builds a repository through the
engine's socket, as a CI system that runs steps in containers would use it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import docker
import pytest

from git_repos import git
from support import EXAMPLES, ROOT, run_in

from r2env.engine import find_buildkit_cli

SELF = "r2env-it/ci-self"
BUILT = "r2env-it/ci-self-built"


@pytest.fixture(scope="module")
def own_image(engine: docker.DockerClient) -> str:
    cli = find_buildkit_cli()
    assert cli is not None, "the Dockerfile uses a BuildKit secret mount: a BuildKit-capable docker CLI is needed"
    argv = [cli.path, *(["buildx", "build", "--load"] if cli.kind == "buildx" else ["build"])]
    ca = os.environ.get("SSL_CERT_FILE") or "/etc/ssl/certs/ca-certificates.crt"
    argv += ["--build-arg", "BASE=debian:bookworm", "--secret", f"id=ca,src={ca}", "-t", SELF, str(ROOT)]
    built = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, "DOCKER_BUILDKIT": "1"}, timeout=900)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    assert run_in(engine, SELF, ["--version"]).strip().startswith("r2env ")
    # Only the client: no daemon in the image.
    assert "not found" in run_in(engine, SELF, ["sh", "-c", "command -v dockerd || echo not found"], entrypoint=[])
    return SELF


def test_own_image_builds_an_example_repository_through_the_socket(engine: docker.DockerClient, own_image: str) -> None:

    output = engine.containers.run(
        SELF, ["build", "/repo", "--image-name", BUILT, "--json"], remove=True, stdout=True, stderr=False,
        volumes={"/var/run/docker.sock": {"bind": "/var/run/docker.sock", "mode": "rw"},
                 str(EXAMPLES / "dockerfile"): {"bind": "/repo", "mode": "ro"}},
    ).decode()
    assert f'"image": "{BUILT}"' in output
    assert "verify: all checks passed" in run_in(engine, BUILT, ["./verify"])


def test_own_image_is_binderhubs_build_image(engine: docker.DockerClient, own_image: str, tmp_path: Path) -> None:
    """As BinderHub's build pod runs it (binderhub/build.py: V1Container(image=build_image, args=get_cmd()), the
    engine's socket mounted): the args follow the image's ENTRYPOINT, and the log is JSON lines."""
    repo = tmp_path / "repo"
    shutil.copytree(EXAMPLES / "dockerfile", repo)
    git("init", "-q", cwd=repo)
    git("add", ".", cwd=repo)
    git("commit", "-q", "-m", "example", cwd=repo)
    commit = git("rev-parse", "HEAD", cwd=repo)
    image = f"{BUILT}-binderhub:{commit[:12]}"
    args = ["jupyter-repo2docker", f"--ref={commit}", f"--image={image}", "--no-clean", "--no-run", "--json-logs",
            "--user-name=jovyan", "--user-id=1000", "file:///srv/repo"]
    output = engine.containers.run(
        own_image, args, remove=True, stdout=True, stderr=True,
        volumes={"/var/run/docker.sock": {"bind": "/var/run/docker.sock", "mode": "rw"}, str(repo): {"bind": "/srv/repo", "mode": "ro"}},
    ).decode()
    events = [json.loads(line) for line in output.splitlines()]  # BinderHub's rule: every line JSON
    phases = [event["phase"] for event in events]
    assert phases[0] == "fetching" and phases[-1] == "building" and "failed" not in phases
    assert events[-1]["message"] == f"Successfully built image {image}\n"
    assert engine.images.get(image).labels["org.r2env.source.commit"] == commit
    assert "verify: all checks passed" in run_in(engine, image, ["./verify"])
