"""dockerfile: a repository's own Dockerfile, built as-is; exclusive, as in repo2docker."""

from __future__ import annotations

from r2env.buildpack import Buildpack, Role
from r2env.inspect import RepoFacts


def detect(facts: RepoFacts) -> str | None:
    return f"found {facts.path('Dockerfile')} (built as-is; other declaration files are ignored)" if facts.has("Dockerfile") else None


# The plan treats an exclusive buildpack specially: the image is the Dockerfile's, with NB_USER/NB_UID build args.
BUILDPACK = Buildpack("dockerfile", Role.EXCLUSIVE, detect)
