"""Real git for the tests: an identity of its own and the default branch main, whatever the machine's config."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


def git(*argv: str, cwd: Path | None = None) -> str:
    identity = ["-c", "user.email=tests@example.org", "-c", "user.name=r2env tests", "-c", "init.defaultBranch=main"]
    return subprocess.run(["git", *identity, *argv], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


def commit(repo: Path, content: str) -> str:
    """Commit `content` as requirements.txt; the new commit's id."""
    (repo / "requirements.txt").write_text(content)
    git("add", "requirements.txt", cwd=repo)
    git("commit", "-q", "-m", content.strip(), cwd=repo)
    return git("rev-parse", "HEAD", cwd=repo)


@dataclass(frozen=True)
class Origin:
    """A repository with a tag, a branch and a default branch, each a different requirements.txt."""

    path: Path
    url: str  # its file:// URL
    tagged: str  # commit at the annotated tag v1 ("numpy==1")
    feature: str  # tip of branch "feature" ("numpy==feature")
    main: str  # tip of main ("numpy==2"), the default branch


def make_origin(path: Path) -> Origin:
    path.mkdir()
    git("init", "-q", cwd=path)
    tagged = commit(path, "numpy==1\n")
    git("tag", "-a", "v1", "-m", "v1", cwd=path)
    git("checkout", "-q", "-b", "feature", cwd=path)
    feature = commit(path, "numpy==feature\n")
    git("checkout", "-q", "main", cwd=path)
    main = commit(path, "numpy==2\n")
    return Origin(path, path.as_uri(), tagged, feature, main)
