"""Whether a repository declares R: shared by the r buildpack's detection and the lock's inputs."""

from __future__ import annotations

from r2env.inspect import RepoFacts

R_FILES = ("install.R", "renv.lock", "DESCRIPTION")


def declares_r(facts: RepoFacts) -> bool:
    asks = facts.runtime is not None and facts.runtime.name == "r"
    return asks or facts.description is not None or facts.has("install.R") or facts.has("renv.lock")
