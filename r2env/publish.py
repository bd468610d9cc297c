"""Publishing a built image: its tags, the registry check that can skip a build, pushing. Talks to an Engine only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

from r2env.config import PublishSettings
from r2env.errors import UsageError
from r2env.events import BuildEvent, Kind, Phase
from r2env.registry import Credentials, Reference, parse_reference

if TYPE_CHECKING:
    from r2env.engine import Engine


@dataclass(frozen=True)
class Targets:
    """Every reference the image gets: the image name first, then the --tag tags, then (for a locked spec
    that is pushed) the key tag that lets a later --check-registry find it."""

    image: Reference
    extra: tuple[Reference, ...]

    @property
    def all(self) -> tuple[Reference, ...]:
        return (self.image, *self.extra)


def targets(image_name: str, settings: PublishSettings, explicit_name: bool) -> Targets | None:
    """None when nothing is published and no tag is added (a plain local build). Checked before anything is fetched."""
    if not (settings.push or settings.check_registry or settings.tags):
        return None
    if (settings.push or settings.check_registry) and not explicit_name:
        flag = "--push" if settings.push else "--check-registry"
        raise UsageError(f"{flag} needs the image's registry name", "give --image-name REGISTRY/NAME[:TAG], e.g. ghcr.io/myteam/analysis:v1")
    image = parse_reference(image_name)
    extra = tuple(dict.fromkeys(image.with_tag(tag) for tag in settings.tags if tag != image.tag))
    return Targets(image, extra)


def adopt(engine: Engine, found: Reference, digest: str, wanted: tuple[Reference, ...], push: bool,
          credentials: Credentials | None) -> Iterator[BuildEvent]:
    """The registry already has the image under `found`: give it the wanted tags without building.
    When pushing, tags that already point at it cost one registry request each and nothing else."""
    if push:
        missing = [reference for reference in wanted if engine.registry_digest(str(reference), credentials) != digest]
        if not missing:
            yield BuildEvent(Phase.BUILD, Kind.INFO, "every tag already points at it: nothing to push")
            return
    else:
        missing = list(wanted)  # the image is wanted locally
    yield BuildEvent(Phase.BUILD, Kind.INFO, f"pulling {found}")
    if not engine.pull(str(found), credentials):
        from r2env.errors import PushError

        raise PushError(f"cannot pull {found} although the registry lists it", "check the registry's read permissions")
    for reference in missing:
        engine.tag(str(found), str(reference))
        if push:
            yield BuildEvent(Phase.BUILD, Kind.INFO, f"pushing {reference}")
            engine.push(str(reference), credentials)


def push_all(engine: Engine, references: tuple[Reference, ...], credentials: Credentials | None) -> Iterator[BuildEvent | str]:
    """Push every reference; the last item is the image's manifest digest (the same for every tag of one image)."""
    digest = ""
    for reference in references:
        yield BuildEvent(Phase.BUILD, Kind.INFO, f"pushing {reference}")
        pushed = engine.push(str(reference), credentials)
        digest = digest or pushed
    yield digest
