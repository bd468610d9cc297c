"""repo2docker's build options on a real engine: --subdir of a git repository at a ref, with --label and a
--build-arg passed by name (its value must reach an --appendix ARG and never r2env's output)."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import docker
import pytest

from support import build_ok, r2env, run_in

GIT = ["git", "-c", "user.email=it@r2env.invalid", "-c", "user.name=r2env-it", "-c", "init.defaultBranch=main"]
TOKEN = "s3cret-build-arg-value"


def _git(repo: Path, *arguments: str) -> str:
    return subprocess.run([*GIT, "-C", str(repo), *arguments], check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture(scope="module")
def monorepo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A repository whose root has a Dockerfile that cannot build, and analysis/ a requirements.txt."""
    repo = tmp_path_factory.mktemp("git") / "monorepo"
    (repo / "analysis").mkdir(parents=True)
    (repo / "Dockerfile").write_text("FROM r2env-it/no-such-base:never\n")
    (repo / "analysis" / "requirements.txt").write_text("tabulate==0.9.0\n")
    (repo / "analysis" / "notebook.py").write_text("print('analysis')\n")
    subprocess.run([*GIT, "init", "-q", str(repo)], check=True)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "monorepo")
    return {"url": f"file://{repo}", "commit": _git(repo, "rev-parse", "HEAD")}


def test_subdir_of_a_git_url_builds_that_folder_with_labels_and_build_args(
        engine: docker.DockerClient, monorepo: dict[str, str], tmp_path: Path) -> None:
    image = "r2env-it/options-subdir"
    appendix = 'ARG R2ENV_IT_TOKEN\nRUN printf %s "$R2ENV_IT_TOKEN" | sha256sum > /tmp/r2env-it-build-arg'
    result = build_ok(monorepo["url"], "--ref", "main", "--subdir", "analysis", "--image-name", image, "--cache-dir", str(tmp_path),
                      "--label", "org.example.team=data", "--build-arg", "R2ENV_IT_TOKEN", "--appendix", appendix,
                      env={"R2ENV_IT_TOKEN": TOKEN})
    labels = engine.images.get(image).labels
    assert labels["org.r2env.source.url"] == monorepo["url"]
    assert labels["org.r2env.source.commit"] == monorepo["commit"]
    assert labels["org.r2env.source.subdir"] == "analysis"
    assert labels["org.example.team"] == "data"
    files = run_in(engine, image, ["ls", "-A"]).split()
    assert "notebook.py" in files and "requirements.txt" in files and "Dockerfile" not in files and "analysis" not in files
    assert run_in(engine, image, ["cat", "/tmp/r2env-it-build-arg"]).split()[0] == hashlib.sha256(TOKEN.encode()).hexdigest()
    assert TOKEN not in result.stdout + result.stderr, "a build arg's value was printed"


def test_a_subdir_the_repository_does_not_have_is_one_line(monorepo: dict[str, str], tmp_path: Path) -> None:
    result = r2env("build", monorepo["url"], "--ref", "main", "--subdir", "nowhere", "--cache-dir", str(tmp_path))
    assert result.returncode == 3 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines() == [f"r2env: error: --subdir nowhere: no such folder in {monorepo['url']}: "
                                                  "give a folder that exists in the repository at main"]
