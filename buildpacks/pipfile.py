"""pipfile: Pipfile.lock installed exactly (hash-checked) when present, else the Pipfile's [packages]."""

from __future__ import annotations

import shlex

from buildpacks.steps import ignored_note, locked_install, pip_install, python_foundation
from r2env.buildpack import Buildpack, Contribution, PlanContext, Role
from r2env.inspect import RepoFacts
from r2env.spec import Stage, Step


def detect(facts: RepoFacts) -> str | None:
    # repo2docker's Pipfile buildpack installs the Pipfile(.lock) alone: the repository only when the Pipfile names it.
    note = ignored_note(facts, ("requirements.txt", "setup.py", "pyproject.toml", "uv.lock", "poetry.lock"))
    if facts.has("Pipfile.lock"):
        return f"found {facts.path('Pipfile.lock')} (installed exactly){note}"
    if facts.has("Pipfile"):
        return f"found {facts.path('Pipfile')}{note}"
    return None


def contribute(facts: RepoFacts, context: PlanContext) -> Contribution:
    if context.lock:
        declared = tuple(f"{p.name}=={p.version}" for p in context.lock.packages)
        install: tuple[Step, ...] = (
            locked_install(context.lock.packages, Stage.DEPENDENCIES, "pipfile", f"install the locked packages (from {context.lock.source})"),
        ) if context.lock.packages else ()
    elif facts.pipfile_lock is not None:
        declared = tuple(p.requirement_line().split(" --hash", 1)[0] for p in facts.pipfile_lock)
        install = (locked_install(facts.pipfile_lock, Stage.DEPENDENCIES, "pipfile", f"install {facts.path('Pipfile.lock')} exactly (hash-checked)"),)
    else:
        assert facts.pipfile is not None
        declared = facts.pipfile.requirements
        arguments = " ".join(shlex.quote(r) for r in declared)
        install = (pip_install(arguments, Stage.DEPENDENCIES, "pipfile", f"install {facts.path('Pipfile')} packages"),) if declared else ()
    if facts.pipfile_local:
        # The repository's own packages need the repository: installed after the copy, without dependencies when
        # a lock already holds them all.
        locked = context.lock is not None or facts.pipfile_lock is not None
        arguments = " ".join(shlex.quote(word) for ref in facts.pipfile_local for word in ref.split())
        install += (pip_install(("--no-deps " if locked else "") + arguments, Stage.REPO, "pipfile",
                                f"install the repository's own packages named in {facts.path('Pipfile')}", repository_code=True),)
    steps = python_foundation(context, "pipfile", declared) + install
    return Contribution(steps=steps, packages=(("python", declared),))


BUILDPACK = Buildpack("pipfile", Role.PRIMARY, detect, contribute)
