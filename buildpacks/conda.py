"""conda: environment.yml is recognised; building it is not supported yet (see the conda issue)."""

from __future__ import annotations

from r2env.buildpack import Buildpack, Contribution, PlanContext, Role
from r2env.errors import SpecError
from r2env.inspect import RepoFacts


def detect(facts: RepoFacts) -> str | None:
    for name in ("environment.yml", "environment.yaml"):
        if facts.has(name):
            return f"found {facts.path(name)}"
    return None


def contribute(facts: RepoFacts, context: PlanContext) -> Contribution:
    name = "environment.yml" if facts.has("environment.yml") else "environment.yaml"
    raise SpecError(
        f"{facts.path(name)}: conda environments are not supported yet",
        "declare the environment with requirements.txt for now, or follow r2env's conda support issue",
    )


BUILDPACK = Buildpack("conda", Role.PRIMARY, detect, contribute)
