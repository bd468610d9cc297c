"""pipfile: Pipfile.lock installed exactly (hash-checked) when present, else the Pipfile's [packages]."""

from __future__ import annotations

import shlex

from buildpacks.steps import locked_install, pip_install, python_foundation
from r2env.buildpack import Buildpack, Contribution, PlanContext, Role
from r2env.inspect import RepoFacts
from r2env.spec import Stage, Step


def detect(facts: RepoFacts) -> str | None:
    if facts.has("Pipfile.lock"):
        return f"found {facts.path('Pipfile.lock')} (installed exactly)"
    if facts.has("Pipfile"):
        return f"found {facts.path('Pipfile')}"
    return None


def _lock_step(lines: tuple[str, ...], path: str) -> Step:
    # The lock's pins and hashes are the Dockerfile's own text, so a lock change is a cache change.
    requirements = "\\n".join(lines)
    return Step(
        kind="run",
        stage=Stage.DEPENDENCIES,
        buildpack="pipfile",
        description=f"install {path} exactly (hash-checked)",
        script=(
            f"printf '%b\\n' {shlex.quote(requirements)} > /tmp/r2env-pipfile.txt && "
            "pip install --require-hashes --no-deps -r /tmp/r2env-pipfile.txt && rm /tmp/r2env-pipfile.txt"
        ),
        user="user",
        fetches=True,
        caches=("pip",),
    )


def contribute(facts: RepoFacts, context: PlanContext) -> Contribution:
    if context.lock:
        declared = tuple(f"{p.name}=={p.version}" for p in context.lock.packages)
        install: tuple[Step, ...] = (
            locked_install(context.lock.packages, Stage.DEPENDENCIES, "pipfile", f"install the locked packages (from {context.lock.source})"),
        ) if context.lock.packages else ()
    elif facts.pipfile_lock is not None:
        declared = tuple(line.split(" --hash", 1)[0] for line in facts.pipfile_lock)
        install = (_lock_step(facts.pipfile_lock, facts.path("Pipfile.lock")),)
    else:
        assert facts.pipfile is not None
        declared = facts.pipfile.requirements
        arguments = " ".join(shlex.quote(r) for r in declared)
        install = (pip_install(arguments, Stage.DEPENDENCIES, "pipfile", f"install {facts.path('Pipfile')} packages"),) if declared else ()
    steps = python_foundation(context, "pipfile", declared) + install
    return Contribution(steps=steps, packages=(("python", declared),))


BUILDPACK = Buildpack("pipfile", Role.PRIMARY, detect, contribute)
