"""apt: Debian packages from apt.txt, installed with the system packages."""

from __future__ import annotations

from buildpacks.steps import apt_install
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
    step = apt_install(facts.apt_packages, "apt", f"install {facts.path('apt.txt')} packages", pins)
    return Contribution(steps=(step,), packages=(("apt", facts.apt_packages),))


BUILDPACK = Buildpack("apt", Role.ADDON, detect, contribute)
