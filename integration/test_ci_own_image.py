"""r2env's own image: built from the top-level Dockerfile on a local base, it builds a repository through the
engine's socket, as a CI system that runs steps in containers would use it."""

from __future__ import annotations

import os
import subprocess

import docker

from support import EXAMPLES, ROOT, run_in

from r2env.engine import find_buildkit_cli

SELF = "r2env-it/ci-self"
BUILT = "r2env-it/ci-self-built"


def test_own_image_builds_an_example_repository_through_the_socket(engine: docker.DockerClient) -> None:
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

    output = engine.containers.run(
        SELF, ["build", "/repo", "--image-name", BUILT, "--json"], remove=True, stdout=True, stderr=False,
        volumes={"/var/run/docker.sock": {"bind": "/var/run/docker.sock", "mode": "rw"},
                 str(EXAMPLES / "dockerfile"): {"bind": "/repo", "mode": "ro"}},
    ).decode()
    assert f'"image": "{BUILT}"' in output
    assert "verify: all checks passed" in run_in(engine, BUILT, ["./verify"])
