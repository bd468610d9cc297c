"""select: which buildpacks apply to a repository, in what order, and why. Priority is data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from r2env.buildpack import Buildpack, Role
from r2env.errors import UsageError
from r2env.inspect import RepoFacts
from r2env.spec import Detection

# repo2docker's order (repo2docker/app.py `buildpacks`): Julia, Nix and R come before conda, Pipfile and Python;
# pixi (which repo2docker lacks) comes before conda: a pixi project's environment.yml is usually an export of it.
DEFAULT_PRIORITY = ("dockerfile", "julia", "julia-require", "nix", "r", "pixi", "conda", "pipfile", "python")


@dataclass(frozen=True)
class Selection:
    primary: Buildpack  # exclusive or primary
    addons: tuple[Buildpack, ...]
    detections: tuple[Detection, ...]

    @property
    def buildpacks(self) -> tuple[Buildpack, ...]:
        return (self.primary, *self.addons)


def select(facts: RepoFacts, registry: Mapping[str, Buildpack], priority: Sequence[str] = DEFAULT_PRIORITY) -> Selection:
    unknown = [name for name in priority if name not in registry]
    if unknown:
        raise UsageError(f"unknown buildpack {unknown[0]!r} in the priority list", f"known: {', '.join(sorted(registry))}")
    for name in priority:
        buildpack = registry[name]
        if buildpack.role is Role.ADDON:
            raise UsageError(f"{name!r} is an add-on and cannot be in the priority list", "list only primary buildpacks")
        reason = buildpack.detect(facts)
        if reason is None:
            continue
        detections = [Detection(name, buildpack.role.value, reason)]
        addons: list[Buildpack] = []
        if buildpack.role is Role.PRIMARY:
            for addon in sorted((b for b in registry.values() if b.role is Role.ADDON), key=lambda b: b.name):
                addon_reason = addon.detect(facts)
                if addon_reason is not None:
                    addons.append(addon)
                    detections.append(Detection(addon.name, addon.role.value, addon_reason))
        return Selection(buildpack, tuple(addons), tuple(detections))
    raise UsageError("no buildpack in the priority list applies", "add 'python' (the fallback) to the priority list")
