"""postbuild: runs the repository's postBuild as the notebook user, after dependencies and the repository."""

from __future__ import annotations

import shlex

from r2env.buildpack import Buildpack, Contribution, PlanContext, Role
from r2env.inspect import RepoFacts
from r2env.spec import Stage, Step


def detect(facts: RepoFacts) -> str | None:
    return f"found {facts.path('postBuild')}" if facts.has("postBuild") else None


def contribute(facts: RepoFacts, context: PlanContext) -> Contribution:
    path = "./" + shlex.quote(facts.path("postBuild"))
    make_executable = f"chmod +x {path} && " if "postBuild" in facts.not_executable else ""
    step = Step(
        kind="run",
        stage=Stage.POST_BUILD,
        buildpack="postbuild",
        description=f"run {facts.path('postBuild')}",
        script=make_executable + path,
        user="user",
        fetches=True,
    )
    return Contribution(steps=(step,))


BUILDPACK = Buildpack("postbuild", Role.ADDON, detect, contribute)
