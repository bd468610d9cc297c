"""apt: Debian packages from apt.txt, in a step of their own after r2env's system packages (r2env/apt_install.py)."""

from __future__ import annotations

from r2env.apt_install import REPOSITORY_APT, apt_install
from r2env.buildpack import Buildpack, Contribution, PlanContext, Role
from r2env.inspect import RepoFacts


def detect(facts: RepoFacts) -> str | None:
    if not facts.has("apt.txt"):
        return None
    return f"found {facts.path('apt.txt')} ({len(facts.apt_packages)} packages)"


def contribute(facts: RepoFacts, context: PlanContext) -> Contribution:
    if not facts.apt_packages:
        return Contribution()
    pins = context.lock.apt if context.lock else None
    step = apt_install(facts.apt_packages, REPOSITORY_APT, f"install {facts.path('apt.txt')} packages", pins)
    return Contribution(steps=(step,), packages=(("apt", facts.apt_packages),))


BUILDPACK = Buildpack(REPOSITORY_APT, Role.ADDON, detect, contribute)
