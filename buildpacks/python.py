"""python: requirements.txt, setup.py, pyproject.toml — and the fallback for any repository."""

from __future__ import annotations

import shlex

from buildpacks.steps import copy_files, ignored_note, locked_install, pip_install, python_foundation, requirements_steps
from r2env.buildpack import Buildpack, Contribution, PlanContext, Role
from r2env.inspect import RepoFacts
from r2env.lock.lockfile import LockedPackage
from r2env.spec import Stage, Step


def detect(facts: RepoFacts) -> str:
    found = [name for name in ("requirements.txt", "setup.py", "pyproject.toml", "runtime.txt") if facts.has(name)]
    if found:
        return "found " + ", ".join(facts.path(name) for name in found) + ignored_note(facts, ())
    return "no other environment declaration: a plain Python environment with the notebook server"


def _package_steps(facts: RepoFacts) -> tuple[Step, ...]:
    """Install the repository itself, as repo2docker does when configuration lives at the root."""
    if facts.installs_repository:
        return ()
    if facts.has("setup.py"):
        # Not editable, as repo2docker does it; a requirements.txt that says `-e .` gets what it asks for.
        return (pip_install(".", Stage.REPO, "python", "install the repository (setup.py)", repository_code=True),)
    pyproject = facts.pyproject
    if not (pyproject and pyproject.installable):
        return ()
    steps: tuple[Step, ...] = ()
    if pyproject.dependencies:
        # Dependencies first, from the copied pyproject.toml alone: code edits then reinstall nothing.
        arguments = " ".join(shlex.quote(d) for d in pyproject.dependencies)
        steps += copy_files(["pyproject.toml"], "python")
        steps += (pip_install(arguments, Stage.DEPENDENCIES, "python", "install pyproject.toml dependencies"),)
    return steps + (pip_install(".", Stage.REPO, "python", "install the repository (pyproject.toml)", repository_code=True),)


def _locked_steps(facts: RepoFacts, packages: tuple[LockedPackage, ...], source: str) -> tuple[Step, ...]:
    """With a lock: the locked packages before the repository, then only what the repository itself is
    (its local references and the project), without dependencies: the lock already has them all."""
    steps: tuple[Step, ...] = ()
    if packages:
        steps += (locked_install(packages, Stage.DEPENDENCIES, "python", f"install the locked packages ({len(packages)}, from {source})"),)
    local = [ref for f in facts.requirements for ref in f.local_references]
    if not facts.installs_repository and facts.installable:
        local.append(".")
    if local:
        arguments = " ".join(shlex.quote(word) for ref in local for word in shlex.split(ref))
        steps += (pip_install(f"--no-deps {arguments}", Stage.REPO, "python", "install the repository's own packages (no dependencies: locked)",
                               repository_code=True),)
    return steps


def contribute(facts: RepoFacts, context: PlanContext) -> Contribution:
    names = [r for f in facts.requirements for r in f.requirements]
    declared = tuple(names) + (facts.pyproject.dependencies if facts.pyproject else ())
    steps = python_foundation(context, "python", declared)
    if context.lock:
        steps += _locked_steps(facts, context.lock.packages, context.lock.source)
    elif context.pins:
        steps += _locked_steps(facts, context.pins, context.pins_source)
    else:
        steps += requirements_steps(facts.requirements, "python")
        steps += _package_steps(facts)
    return Contribution(steps=steps, packages=(("python", declared),) if declared else ())


BUILDPACK = Buildpack("python", Role.PRIMARY, detect, contribute)
