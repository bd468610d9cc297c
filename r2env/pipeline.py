"""The whole pipeline: fetch → inspect → select → plan → render → (base) → build. Yields BuildEvents."""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Mapping

from r2env import __version__
from r2env.base import dockerfile_bases, ensure_base
from r2env.build_secrets import PROXY_VARIABLES, write_build_secrets
from r2env.buildpack import load_buildpacks
from r2env.config import Settings
from r2env.events import BuildEvent, Kind, Phase
from r2env.inspect import inspect
from r2env.plan import plan
from r2env.render import RenderOptions, render_dockerfile
from r2env.repo import DiskRepo
from r2env.select import select
from r2env.source import Checkout, fetch
from r2env.spec import ImageSpec

if TYPE_CHECKING:  # the engine (and docker) load only when something is built
    from r2env.engine import Engine


@dataclass(frozen=True)
class Planned:
    checkout: Checkout
    spec: ImageSpec


def plan_source(source: str, settings: Settings) -> Planned:
    checkout = fetch(source, settings.ref, settings.cache_dir)
    facts = inspect(DiskRepo(checkout.path))
    selection = select(facts, load_buildpacks(), settings.buildpacks)
    return Planned(checkout, plan(facts, selection, settings.plan))


def dockerfile_text(planned: Planned, buildkit: bool = True) -> str:
    if planned.spec.dockerfile:
        return (planned.checkout.path / planned.spec.dockerfile).read_text(encoding="utf-8")
    return render_dockerfile(planned.spec, RenderOptions(buildkit=buildkit))


def default_image_name(checkout: Checkout) -> str:
    name = Path(checkout.url.rstrip("/")).name.removesuffix(".git").lower()
    slug = re.sub(r"[^a-z0-9._-]+", "-", name).strip("-._") or "repo"
    return f"r2env-{slug}"


def build_labels(planned: Planned) -> dict[str, str]:
    return {
        "org.r2env.version": __version__,
        "org.r2env.source.url": planned.checkout.url,
        "org.r2env.source.commit": planned.checkout.commit,
        "org.r2env.spec-digest": planned.spec.digest,
    }


def proxy_build_args(host_env: Mapping[str, str]) -> dict[str, str]:
    """A repository's own Dockerfile gets the host's proxies as Docker's predefined proxy build args, which
    are kept out of `docker history` (https://docs.docker.com/reference/dockerfile/#predefined-args)."""
    return {name: host_env[name] for name in PROXY_VARIABLES if host_env.get(name)}


def build(source: str, settings: Settings, connect: Callable[[], Engine]) -> Iterator[BuildEvent]:
    yield BuildEvent(Phase.FETCH, Kind.INFO, f"fetching {source}" + (f" at {settings.ref}" if settings.ref else ""))
    planned = plan_source(source, settings)
    checkout, spec = planned.checkout, planned.spec
    where = f"{checkout.url}" + (f" @ {checkout.commit[:12]}" if checkout.commit else "")
    yield BuildEvent(Phase.INSPECT, Kind.INFO, f"repository {where}" + (f" (configuration in {spec.config_dir}/)" if spec.config_dir else ""))
    for detection in spec.detections:
        yield BuildEvent(Phase.PLAN, Kind.INFO, f"{detection.buildpack} ({detection.role}): {detection.reason}")
    if spec.interpreter:
        yield BuildEvent(Phase.PLAN, Kind.INFO, f"Python {spec.interpreter.version} ({spec.interpreter.source}): {spec.interpreter.reason}")
    engine = connect()
    text = dockerfile_text(planned, buildkit=engine.builder != "classic")
    bases = dockerfile_bases(text)
    for base in bases:
        yield from ensure_base(engine, base, settings.mirror, settings.cache_dir)
    image = settings.image_name or default_image_name(checkout)
    yield BuildEvent(Phase.BUILD, Kind.INFO, f"building {image} with {engine.builder} ({len(spec.steps)} planned steps)")
    with tempfile.TemporaryDirectory(prefix="r2env-build-") as scratch:
        directory = Path(scratch)
        secrets = write_build_secrets(settings.fetch, os.environ, directory) if not spec.dockerfile else {}
        dockerfile = checkout.path / spec.dockerfile if spec.dockerfile else directory / "Dockerfile"
        if not spec.dockerfile:
            dockerfile.write_text(text, encoding="utf-8")
        from r2env.engine import BuildRequest

        request = BuildRequest(
            context=checkout.path,
            dockerfile=dockerfile,
            tag=image,
            labels=build_labels(planned),
            build_args={**dict(spec.build_args), **(proxy_build_args(os.environ) if spec.dockerfile else {})},
            secrets=secrets,
            no_cache=settings.no_cache,
        )
        yield from engine.build(request)
    yield BuildEvent(Phase.DONE, Kind.RESULT, image)
