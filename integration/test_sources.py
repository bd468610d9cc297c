"""Builds from git: a file:// URL at a tag and at a commit, and a local bare repository."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import docker
import pytest

from support import EXAMPLES, build_ok, r2env, run_in

GIT = ["git", "-c", "user.email=it@r2env.invalid", "-c", "user.name=r2env-it", "-c", "init.defaultBranch=main"]


def _git(repo: Path, *arguments: str) -> str:
    return subprocess.run([*GIT, "-C", str(repo), *arguments], check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A repository with a tag v1 (marker 'one') and a later commit (marker 'two')."""
    repo = tmp_path_factory.mktemp("git") / "work"
    shutil.copytree(EXAMPLES / "requirements", repo)
    subprocess.run([*GIT, "init", "-q", str(repo)], check=True)
    (repo / "marker.txt").write_text("one\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "one")
    _git(repo, "tag", "v1")
    first = _git(repo, "rev-parse", "HEAD")
    (repo / "marker.txt").write_text("two\n")
    _git(repo, "commit", "-qam", "two")
    second = _git(repo, "rev-parse", "HEAD")
    bare = repo.parent / "bare.git"
    subprocess.run([*GIT, "clone", "-q", "--bare", str(repo), str(bare)], check=True)
    return {"url": f"file://{repo}", "bare": str(bare), "first": first, "second": second}


def _marker_and_commit(engine: docker.DockerClient, image: str) -> tuple[str, str]:
    return run_in(engine, image, ["cat", "marker.txt"]).strip(), engine.images.get(image).labels["org.r2env.source.commit"]


def test_build_from_a_file_url_at_a_tag(engine: docker.DockerClient, history: dict[str, str], tmp_path: Path) -> None:
    build_ok(history["url"], "--ref", "v1", "--image-name", "r2env-it/git-tag", "--cache-dir", str(tmp_path))
    assert _marker_and_commit(engine, "r2env-it/git-tag") == ("one", history["first"])


def test_build_from_a_bare_repository_at_a_commit(engine: docker.DockerClient, history: dict[str, str], tmp_path: Path) -> None:
    build_ok(history["bare"], "--ref", history["second"], "--image-name", "r2env-it/git-commit", "--cache-dir", str(tmp_path))
    assert _marker_and_commit(engine, "r2env-it/git-commit") == ("two", history["second"])


def test_an_unknown_ref_is_one_clear_line(history: dict[str, str], tmp_path: Path) -> None:
    result = r2env("build", history["url"], "--ref", "no-such-tag", "--cache-dir", str(tmp_path))
    assert result.returncode == 3
    assert result.stderr.strip() == (
        f"r2env: error: {history['url']}: unknown ref 'no-such-tag': give a branch, tag or commit that exists in the repository"
    )
