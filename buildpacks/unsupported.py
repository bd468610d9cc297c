"""Ways of declaring an environment that repo2docker reads and r2env cannot build yet (Julia, Nix, R).

They are detected in repo2docker's order, so a repository that declares one is never planned as something
else without a word: `r2env plan` and `r2env build` stop with one sentence naming the file (exit 4)."""

from __future__ import annotations

from typing import Callable

from r2env.buildpack import Buildpack, Contribution, PlanContext, Role
from r2env.errors import SpecError
from r2env.inspect import RepoFacts


def _detect_julia(facts: RepoFacts) -> str | None:
    found = [facts.path(name) for name in ("Project.toml", "JuliaProject.toml") if facts.has(name)]
    return f"found {found[0]} (a Julia project)" if found else None


def _detect_julia_require(facts: RepoFacts) -> str | None:
    # repo2docker's JuliaRequireBuildPack: REQUIRE only counts without a Project.toml, and only to say it is obsolete.
    if facts.has("REQUIRE") and _detect_julia(facts) is None:
        return f"found {facts.path('REQUIRE')} (Julia 0.6's REQUIRE file)"
    return None


def _detect_nix(facts: RepoFacts) -> str | None:
    return f"found {facts.path('default.nix')} (a Nix environment)" if facts.has("default.nix") else None


def _detect_r(facts: RepoFacts) -> str | None:
    if facts.runtime is not None and facts.runtime.name == "r":
        return f"found {facts.runtime.path} asking for R"
    if facts.has("DESCRIPTION"):
        return "found DESCRIPTION (an R package)"
    return None


def _refuse(what: str, hint: str, detect: Callable[[RepoFacts], str | None]) -> Callable[[RepoFacts, PlanContext], Contribution]:
    def contribute(facts: RepoFacts, context: PlanContext) -> Contribution:
        raise SpecError(f"{detect(facts)}: {what}", hint)

    return contribute


JULIA = Buildpack("julia", Role.PRIMARY, _detect_julia, _refuse(
    "r2env cannot build Julia environments yet (repo2docker can)", "build it with repo2docker for now, or remove the file if it is not the environment", _detect_julia))
JULIA_REQUIRE = Buildpack("julia-require", Role.PRIMARY, _detect_julia_require, _refuse(
    "REQUIRE files are obsolete and no longer built by repo2docker either", "declare the Julia environment in a Project.toml", _detect_julia_require))
NIX = Buildpack("nix", Role.PRIMARY, _detect_nix, _refuse(
    "r2env cannot build Nix environments yet (repo2docker can)", "build it with repo2docker for now, or remove the file if it is not the environment", _detect_nix))
R = Buildpack("r", Role.PRIMARY, _detect_r, _refuse(
    "r2env cannot build R environments yet (repo2docker can)", "build it with repo2docker for now, or remove the file if it is not the environment", _detect_r))
