"""start: the repository's start script wraps every container start (it must `exec "$@"`)."""

from __future__ import annotations

import posixpath
import shlex

from r2env.buildpack import Buildpack, Contribution, PlanContext, Role
from r2env.inspect import RepoFacts
from r2env.spec import Stage, Step


def detect(facts: RepoFacts) -> str | None:
    return f"found {facts.path('start')}" if facts.has("start") else None


def contribute(facts: RepoFacts, context: PlanContext) -> Contribution:
    path = posixpath.join(context.repo_dir, facts.path("start"))
    steps: tuple[Step, ...] = (
        Step(kind="env", stage=Stage.REPO, buildpack="start", description="run start on every container start",
             env=(("R2ENV_START", path),)),
    )
    if "start" in facts.not_executable:
        steps += (Step(kind="run", stage=Stage.REPO, buildpack="start", description=f"make {facts.path('start')} executable",
                       script=f"chmod +x {shlex.quote(path)}", user="user"),)
    return Contribution(steps=steps)


BUILDPACK = Buildpack("start", Role.ADDON, detect, contribute)
