"""r2env as a CI step against a real registry on 127.0.0.1: push, --cache-from after the local image and its
build cache are gone, --check-registry, GitHub outputs, push failures.

One locked repository is built once per module. Its notebook user has a unique name, so its steps after the
shared apt layer are this module's own: their BuildKit cache records can be deleted without touching anyone else's."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Any, Iterator

import docker
import pytest

from registry import Registry, forget_build_cache, run_registry
from support import EXAMPLES, Result, r2env

SERVER = "iniconfig==2.0.0"  # a tiny "server": these tests are about publishing, not Jupyter


@pytest.fixture(scope="module")
def registry(engine: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    for started in run_registry(tmp_path_factory.mktemp("registry")):
        yield started
        remove_images(engine, f"{started.host}/ci/app")  # the registry and its port go away with the module


@pytest.fixture(scope="module")
def locked_repo(engine: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    repo = tmp_path_factory.mktemp("ci") / "repo"
    shutil.copytree(EXAMPLES / "requirements", repo)
    locked = r2env("lock", str(repo), "--server-requirement", SERVER)
    assert locked.returncode == 0, locked.stderr
    return repo, f"ci{uuid.uuid4().hex[:10]}"


def build(repo: tuple[Path, str], *arguments: str, env: dict[str, str] | None = None) -> Result:
    path, user = repo
    return r2env("build", str(path), "--server-requirement", SERVER, "--user-name", user, *arguments, env=env)


def record_of(result: Result) -> dict[str, Any]:
    assert result.returncode == 0, f"exit {result.returncode}:\n{result.stderr[-3000:]}"
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, f"--json prints one line on stdout, got:\n{result.stdout}"
    record: dict[str, Any] = json.loads(lines[0])
    return record


def steps_that_ran(log: str) -> list[str]:
    """Build step lines not followed by '(cached)'; FROM is the base, never 'run'."""
    lines = log.splitlines()
    return [
        line for index, line in enumerate(lines)
        if line.startswith("[build ") and "/" in line.split("]")[0] and "] FROM " not in line
        and not (index + 1 < len(lines) and lines[index + 1].strip() == "(cached)")
    ]


def remove_images(client: docker.DockerClient, repository: str) -> None:
    """Every local tag of the test's repository (only images this module made)."""
    for image in client.images.list(name=repository):
        for tag in image.tags:
            client.images.remove(tag, force=True)


@pytest.fixture(scope="module")
def pushed(registry: Registry, locked_repo: tuple[Path, str]) -> dict[str, Any]:
    result = build(locked_repo, "--image-name", f"{registry.host}/ci/app:v1", "--tag", "main", "--push", "--json")
    record = record_of(result)
    record["log"] = result.stderr
    return record


def test_push_reports_the_registrys_manifest_digest(registry: Registry, pushed: dict[str, Any]) -> None:
    assert pushed["pushed"] is True and pushed["cache_hit"] is False
    assert pushed["image"] == f"{registry.host}/ci/app:v1"
    assert pushed["digest"].startswith("sha256:")
    assert registry.manifest_digest("ci/app", "v1") == pushed["digest"]
    assert registry.manifest_digest("ci/app", "main") == pushed["digest"]
    key_tags = [tag for tag in pushed["tags"] if ":r2env-" in tag]
    assert len(key_tags) == 1 and registry.manifest_digest("ci/app", key_tags[0].rsplit(":", 1)[1]) == pushed["digest"]
    assert steps_that_ran(pushed["log"]), "the first build must really build (its user is new)"


def test_cache_from_reuses_every_layer_after_the_local_image_and_build_cache_are_gone(
    engine: docker.DockerClient, registry: Registry, locked_repo: tuple[Path, str], pushed: dict[str, Any]
) -> None:
    remove_images(engine, f"{registry.host}/ci/app")
    forgotten = forget_build_cache(engine, f"--uid 1000 --gid 1000 {locked_repo[1]}")
    assert forgotten, "found none of this module's build cache records: the test would prove nothing"
    result = build(locked_repo, "--image-name", f"{registry.host}/ci/app:v2", "--cache-from", f"{registry.host}/ci/app:v1", "--push", "--json")
    record = record_of(result)
    assert steps_that_ran(result.stderr) == []
    assert record["cache_hit"] is True
    assert record["digest"] == registry.manifest_digest("ci/app", "v2")
    # The very layers of the first push (the image config may differ: BuildKit rewrites its inline cache record).
    first = engine.images.get_registry_data(f"{registry.host}/ci/app:v1").attrs["Descriptor"]["digest"]
    assert first == pushed["digest"]
    assert engine.images.get(f"{registry.host}/ci/app:v2").attrs["RootFS"]["Layers"] == engine.images.pull(f"{registry.host}/ci/app:v1").attrs["RootFS"]["Layers"]


def test_check_registry_skips_the_build_and_writes_github_outputs(
    engine: docker.DockerClient, registry: Registry, locked_repo: tuple[Path, str], pushed: dict[str, Any], tmp_path: Path
) -> None:
    remove_images(engine, f"{registry.host}/ci/app")
    outputs, summary, result_file = tmp_path / "output", tmp_path / "summary.md", tmp_path / "result.json"
    outputs.write_text("earlier=kept\n")
    env = {"GITHUB_ACTIONS": "true", "GITHUB_OUTPUT": str(outputs), "GITHUB_STEP_SUMMARY": str(summary)}
    result = build(locked_repo, "--image-name", f"{registry.host}/ci/app:v3", "--check-registry", "--push", "--json",
                   "--output-json", str(result_file), env=env)
    record = record_of(result)
    assert "nothing to build" in result.stderr
    assert not [line for line in result.stderr.splitlines() if line.startswith(("[build ", "[build] building"))]
    assert record["cache_hit"] is True and record["pushed"] is True
    key_digest = registry.manifest_digest("ci/app", next(t for t in pushed["tags"] if ":r2env-" in t).rsplit(":", 1)[1])
    assert record["digest"] == key_digest == registry.manifest_digest("ci/app", "v3")
    assert json.loads(result_file.read_text()) == record
    lines = outputs.read_text().splitlines()
    assert lines[0] == "earlier=kept"  # appended, never truncated
    assert dict(line.split("=", 1) for line in lines[1:]) == {
        "image": f"{registry.host}/ci/app:v3", "digest": record["digest"], "spec_digest": record["spec_digest"],
        "cache_hit": "true", "pushed": "true", "duration_s": str(record["duration_s"]),
    }
    text = summary.read_text()
    assert f"| image | `{registry.host}/ci/app:v3` |" in text
    assert "| built | no: every layer came from a cache |" in text
    assert "| packages | 2 Python, " in text and " Debian (locked) |" in text
    assert "Lock changes: unknown" in text  # the test repository is no git checkout


def test_check_registry_again_only_asks_the_registry(registry: Registry, locked_repo: tuple[Path, str], pushed: dict[str, Any]) -> None:
    first = build(locked_repo, "--image-name", f"{registry.host}/ci/app:v4", "--check-registry", "--push")
    assert first.returncode == 0, first.stderr
    result = build(locked_repo, "--image-name", f"{registry.host}/ci/app:v4", "--check-registry", "--push")
    assert result.returncode == 0, result.stderr
    assert "every tag already points at it: nothing to push" in result.stdout
    assert "pulling" not in result.stdout and "pushing" not in result.stdout


def test_push_to_an_unreachable_registry_exits_9(engine: docker.DockerClient, locked_repo: tuple[Path, str], pushed: dict[str, Any]) -> None:
    from registry import free_port

    host = f"127.0.0.1:{free_port()}"
    result = build(locked_repo, "--image-name", f"{host}/ci/app:v1", "--push")
    remove_images(engine, f"{host}/ci/app")  # tagged locally before the push failed
    assert result.returncode == 9, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("r2env: error: pushing 127.0.0.1:")
    assert "cannot reach the registry" in result.stderr and "Traceback" not in result.stderr


def test_registry_credentials_come_from_the_environment(
    engine: docker.DockerClient, locked_repo: tuple[Path, str], pushed: dict[str, Any], tmp_path: Path
) -> None:
    for secured in run_registry(tmp_path, auth=("ci", "s3cret-" + uuid.uuid4().hex[:6])):
        assert secured.auth is not None
        image = f"{secured.host}/ci/app:v1"
        wrong = build(locked_repo, "--image-name", image, "--push",
                      env={"R2ENV_REGISTRY_USERNAME": "ci", "R2ENV_REGISTRY_PASSWORD": "wrong"})
        assert wrong.returncode == 9, wrong.stderr
        assert "refused the credentials" in wrong.stderr and "R2ENV_REGISTRY_PASSWORD" in wrong.stderr
        assert "wrong" not in wrong.stdout + wrong.stderr.replace("refused", "")
        right = build(locked_repo, "--image-name", image, "--push", "--json",
                      env={"R2ENV_REGISTRY_USERNAME": secured.auth[0], "R2ENV_REGISTRY_PASSWORD": secured.auth[1]})
        record = record_of(right)
        assert record["digest"] == secured.manifest_digest("ci/app", "v1")
        assert secured.auth[1] not in right.stdout + right.stderr
        remove_images(engine, f"{secured.host}/ci/app")
