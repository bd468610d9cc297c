"""Real git for the tests: an identity of its own and the default branch main, whatever the machine's config."""

from __future__ import annotations

import subprocess
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
