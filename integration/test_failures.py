"""Failures a user meets, each one clear message with a distinct exit code and no traceback."""

from __future__ import annotations

import shutil
from pathlib import Path

import docker

from support import EXAMPLES, build_ok, r2env, run_in


def test_a_failing_postbuild_names_the_step_and_shows_its_output(engine: docker.DockerClient, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(EXAMPLES / "requirements", repo)
    (repo / "postBuild").write_text("#!/bin/bash\necho 'compiling the widget...'\necho 'widget exploded' >&2\nexit 3\n")
    (repo / "postBuild").chmod(0o755)
    result = r2env("build", str(repo), "--image-name", "r2env-it/fails")
    assert result.returncode == 5
    assert "build step failed" in result.stderr and "./postBuild" in result.stderr
    assert "widget exploded" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unreachable_engine_is_one_line(tmp_path: Path) -> None:
    result = r2env("build", str(EXAMPLES / "requirements"), env={"DOCKER_HOST": f"unix://{tmp_path}/nothing.sock"})
    assert result.returncode == 7
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot reach the Docker engine" in lines[0], result.stderr


def test_the_classic_builder_builds_a_dockerfile_repository(engine: docker.DockerClient) -> None:
    build_ok(str(EXAMPLES / "dockerfile"), "--image-name", "r2env-it/classic", "--builder", "classic")
    labels = engine.images.get("r2env-it/classic").labels
    assert labels["org.r2env.source.url"] == str(EXAMPLES / "dockerfile")


def test_a_missing_non_debian_base_is_one_clear_line(engine: docker.DockerClient) -> None:
    result = r2env("build", str(EXAMPLES / "requirements"), "--base-image", "registry.invalid/nothing:1")
    assert result.returncode == 6
    assert "base image registry.invalid/nothing:1 is not present and cannot be pulled" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_python_no_base_provides_fails_with_one_sentence_when_it_cannot_be_downloaded(
    engine: docker.DockerClient, tmp_path: Path
) -> None:
    (tmp_path / "runtime.txt").write_text("python-3.10\n")
    # A mirror that cannot answer makes the download fail on any machine, as it does without network access.
    result = r2env("build", str(tmp_path), "--image-name", "r2env-it/py310", "--python-install-mirror", "http://127.0.0.1:9/")
    assert result.returncode == 5
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("r2env: error: could not install CPython 3.10: the download of a standalone build failed.")
    assert "--python-install-mirror" in last and "python-3.11" in last


def test_the_classic_builder_refuses_to_bake_a_ca_bundle_into_the_image(engine: docker.DockerClient) -> None:
    result = r2env("build", str(EXAMPLES / "requirements"), "--builder", "classic", env={"SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt"})
    assert result.returncode == 5
    assert "the classic builder cannot pass build secrets" in result.stderr and "docker-buildx" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unreachable_mirror_fails_the_bootstrap_clearly_and_keeps_the_existing_base(
    engine: docker.DockerClient, tmp_path: Path
) -> None:
    build_ok(str(EXAMPLES / "dockerfile"), "--image-name", "r2env-it/has-base")  # makes debian:bookworm present
    before = engine.images.get("debian:bookworm").id
    result = r2env("base", "bootstrap", "--suite", "bookworm", "--force", "--mirror", "http://127.0.0.1:9/debian", "--cache-dir", str(tmp_path))
    assert result.returncode == 6
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("r2env: error: cannot bootstrap debian:bookworm:") and "127.0.0.1:9" in last, result.stderr
    assert "Traceback" not in result.stderr
    assert engine.images.get("debian:bookworm").id == before


def test_the_notebook_user_can_be_renamed(engine: docker.DockerClient) -> None:
    build_ok(str(EXAMPLES / "requirements"), "--image-name", "r2env-it/ada", "--user-name", "ada", "--user-id", "1234")
    output = run_in(engine, "r2env-it/ada", ["bash", "-c", "id -un; id -u; pwd; stat -c %U helpers.py; jupyter lab --version"])
    assert output.split()[:4] == ["ada", "1234", "/home/ada", "ada"]
