"""The base image: use it when present, pull it when possible, else bootstrap an equivalent Debian image
from a mirror (air-gapped sites, and these machines) and cache it in the engine."""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

from r2env.errors import BaseImageError
from r2env.events import BuildEvent, Kind, Phase
from r2env.interpreter import DEBIAN_PYTHON

if TYPE_CHECKING:  # the engine (and docker) load only when something is built
    from r2env.engine import Engine

_DEBIAN = re.compile(r"^(?:docker\.io/)?(?:library/)?debian:(?P<suite>[a-z]+)$")


def bootstrappable_suite(reference: str) -> str | None:
    match = _DEBIAN.match(reference)
    return match.group("suite") if match and match.group("suite") in DEBIAN_PYTHON else None


def dockerfile_bases(text: str) -> tuple[str, ...]:
    """Images a Dockerfile builds FROM (stage names and scratch excluded)."""
    stages: set[str] = set()
    bases: list[str] = []
    arguments: dict[str, str] = {}
    for line in text.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0].upper() == "ARG" and not bases and "=" in words[1]:
            # ARGs before the first FROM may name the base (https://docs.docker.com/reference/dockerfile/#understand-how-arg-and-from-interact)
            key, _, value = words[1].partition("=")
            arguments[key] = value.strip("\"'")
        if len(words) >= 2 and words[0].upper() == "FROM":
            image = next(w for w in words[1:] if not w.startswith("--"))
            image = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: arguments.get(m.group(1) or m.group(2), m.group(0)), image)
            if image.lower() not in stages and image != "scratch" and image not in bases:
                bases.append(image)
            if len(words) >= 4 and words[-2].upper() == "AS":
                stages.add(words[-1].lower())
    return tuple(bases)


def ensure_base(
    engine: Engine, reference: str, mirror: str, cache_dir: Path, rebootstrap: bool = False,
    missing: Callable[[str], object] = lambda reference: None,
) -> Iterator[BuildEvent]:
    """Make `reference` present. With `rebootstrap`, bootstrap it again; the old image stays until the new one loads.
    `missing` hears of a base that was not present, before it is pulled or bootstrapped."""
    if engine.image_id(reference) and not rebootstrap:
        yield BuildEvent(Phase.BASE, Kind.INFO, f"base image {reference} is present")
        return
    missing(reference)
    if not rebootstrap:
        yield BuildEvent(Phase.BASE, Kind.INFO, f"base image {reference} is not present; trying to pull it")
    if not rebootstrap and engine.pull(reference):
        yield BuildEvent(Phase.BASE, Kind.INFO, f"pulled {reference}")
        return
    suite = bootstrappable_suite(reference)
    if suite is None:
        raise BaseImageError(
            f"base image {reference} is not present and cannot be pulled",
            "load it into the engine (docker load), or use a debian:bookworm/trixie base that r2env can bootstrap",
        )
    from r2env import bootstrap  # debootstrap is only needed on this path

    chosen = mirror or bootstrap.host_apt_mirror() or bootstrap.DEFAULT_MIRROR
    yield BuildEvent(
        Phase.BASE, Kind.INFO,
        ("" if rebootstrap else f"cannot pull {reference}: ") + f"bootstrapping {reference} from {chosen} with debootstrap (about a minute, once)",
    )
    cache_dir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="bootstrap-", dir=cache_dir))
    try:
        archive, image_id = bootstrap.bootstrap_image_archive(suite, chosen, workdir, reference, bootstrap.run_command)
        engine.load(archive)
    except bootstrap.BootstrapError as error:
        # The work folder goes; debootstrap's log stays, where the hint says.
        hint = error.hint
        log = workdir / "rootfs" / "debootstrap" / "debootstrap.log"
        if log.is_file():
            kept = cache_dir / f"bootstrap-{suite}.log"
            shutil.copyfile(log, kept)
            hint = hint.replace(str(log), str(kept))
        raise BaseImageError(f"cannot bootstrap {reference}: {error.message}", hint) from None
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    yield BuildEvent(Phase.BASE, Kind.INFO, f"bootstrapped {reference} ({image_id[:19]}) from {chosen}")
