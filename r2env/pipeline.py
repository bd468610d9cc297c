"""The whole pipeline: fetch → inspect → select → plan → render → (base) → build. Yields BuildEvents."""

from __future__ import annotations

import functools
import os
import re
import tempfile
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Generator, Iterator, Mapping

from r2env import __version__
from r2env.base import dockerfile_bases, ensure_base
from r2env.build_secrets import PROXY_VARIABLES, ca_bundle, public_exports, write_build_secrets
from buildpacks import load_buildpacks
from r2env.buildpack import Role
from r2env.config import Settings
from r2env.events import BuildEvent, Kind, Phase
from r2env.context import context_digest
from r2env.errors import BuildError, LockError
from r2env.explain import explain
from r2env.ignore import IgnoreRules, read_ignore_rules
from r2env.inspect import RepoFacts, inspect
from r2env.lock.lockfile import Lock, RSection, dump_lock, file_digest
from r2env.lock.locking import (
    LockResult, check_apt_resolved, check_fresh, load_lock_file, lock_path, read_conda_lock, read_lock, refuse_dockerfile, user_pins,
)
from r2env.plan import plan
from r2env.publish import Targets, adopt, push_all
from r2env.reading import read_text
from r2env.publish import targets as publish_targets
from r2env.registry import Credentials, credentials_from_env, key_tag
from r2env.render import RenderOptions, render_dockerfile
from r2env.repo import DiskRepo
from r2env.select import select
from r2env.source import Checkout, fetch, is_remote, subdirectory
from r2env.spec import ImageSpec, Step

if TYPE_CHECKING:  # the engine (and docker) load only when something is built
    from r2env.engine import Engine
    from r2env.parsers.conda_lock import CondaLockFile

# What only one kind of environment needs (conda, pixi, R) or only `r2env lock` is imported where it is used:
# every command pays at start for what it imports (benchmarks/README.md, r2env's start until `docker build`).


@dataclass(frozen=True)
class Planned:
    checkout: Checkout
    spec: ImageSpec
    facts: RepoFacts
    lock: Lock | None = None  # the repository's r2env.lock, when the plan follows it
    conda: CondaLockFile | None = None  # the conda-lock.yml that lock refers to


def plan_checkout(checkout: Checkout, settings: Settings, use_lock: bool = True) -> Planned:
    """Plan from the repository's lock when it has one (a stale lock is an error), else from its declarations."""
    facts = inspect(DiskRepo(checkout.path))
    selection = select(facts, load_buildpacks(), settings.buildpacks)
    # A repository's own Dockerfile is built as-is: a lock beside it means nothing.
    memo = settings.cache_dir / "loaded-yaml"  # r2env.lock and conda-lock.yml, parsed once per text (r2env/yaml_memo.py)
    lock = read_lock(checkout.path, facts, memo) if use_lock and selection.primary.role is not Role.EXCLUSIVE else None
    conda = None
    if lock is not None:
        check_fresh(lock, checkout.path, facts, settings.plan)
        conda = read_conda_lock(checkout.path, lock, memo)
    if selection.primary.name == "pixi" and facts.pixi is not None and conda is None:
        # pixi.lock is the environment's lock with or without r2env.lock (which only adds the installer and server).
        from r2env.pixi.lockfile import read_pixi_environment
        conda = read_pixi_environment(checkout.path, facts.pixi, settings.plan.pixi_environment)
    # Without r2env.lock, the repository's own uv.lock or poetry.lock is still installed exactly.
    pins = user_pins(checkout.path, facts) if lock is None and selection.primary.name == "python" and (facts.has("uv.lock") or facts.has("poetry.lock")) else None
    spec = plan(facts, selection, settings.plan, lock, pins.packages if pins else (), pins.source if pins else "", conda)
    if lock is not None:
        check_apt_resolved(lock, spec, facts)
    return Planned(checkout, spec, facts, lock, conda)


def fetch_source(source: str, settings: Settings) -> Checkout:
    """The checkout to build: fetched, then narrowed to --subdir."""
    return subdirectory(fetch(source, settings.ref, settings.cache_dir), settings.subdir)


def plan_source(source: str, settings: Settings, use_lock: bool = True) -> Planned:
    return plan_checkout(fetch_source(source, settings), settings, use_lock)


def lock(source: str, settings: Settings, connect: Callable[[], Engine], write: bool = True) -> Iterator[BuildEvent]:
    """Resolve the repository's lock; write it beside its configuration unless `write` is false.
    The last event is a LockResult carrying the new lock (and, when one existed, the old one in `previous`)."""
    local = Path(source).expanduser()
    if write and (settings.ref or is_remote(source) or (local.is_dir() and not (local / ".git").exists() and _is_git_dir(local))):
        raise LockError(f"{source}: r2env writes r2env.lock into the repository", "run `r2env lock` on a local checkout and commit the lock")
    yield BuildEvent(Phase.FETCH, Kind.INFO, f"fetching {source}" + (f" at {settings.ref}" if settings.ref else ""))
    checkout = fetch_source(source, settings)
    planned = plan_checkout(checkout, settings, use_lock=False)
    refuse_dockerfile(planned.spec)  # before the base: a Dockerfile repository has none r2env manages
    if settings.plan.cuda:
        raise LockError("r2env lock does not lock GPU images (--gpu, --cuda) yet", "lock without them; a GPU image installs from its declarations")
    engine = connect()
    yield from ensure_base(engine, planned.spec.base_image, settings.mirror, settings.cache_dir)
    result: LockResult | None = None
    from r2env.lock.making import make_lock
    from r2env.lock.resolve import Runner, run_tool
    extra: dict[str, Runner] = {}
    scratch_dir = tempfile.TemporaryDirectory(prefix="r2env-lock-ca-")
    if settings.fetch.extra_ca_certs:
        # uv trusts what SSL_CERT_FILE names: the same bundle the build steps get.
        bundle = Path(scratch_dir.name) / "ca.pem"
        bundle.write_text(ca_bundle(settings.fetch, os.environ), encoding="utf-8")
        extra["runner"] = functools.partial(run_tool, env={**os.environ, "SSL_CERT_FILE": str(bundle)})
    with scratch_dir:
        for event in make_lock(checkout.path, planned.facts, planned.spec, settings.plan, engine,
                               settings.fetch.index_url, settings.fetch.extra_index_url,
                               conda_pypi_lookup=settings.conda_pypi_lookup, **extra):
            if isinstance(event, LockResult):
                result = event
            else:
                yield event
    assert result is not None and result.lock is not None
    if planned.spec.buildpacks[0] == "r":
        section = yield from _lock_r(planned, settings, engine, result.lock)
        result = replace(result, lock=replace(result.lock, r=section))
    assert result.lock is not None
    path = checkout.path / lock_path(planned.facts)
    try:
        previous = load_lock_file(path, lock_path(planned.facts))
    except LockError:
        previous = None  # a corrupt or old lock is what relocking replaces
    if write:
        # Written whole or not at all: a failed resolve above leaves the old lock untouched.
        contents = {path: dump_lock(result.lock)}
        if result.lock.conda is not None and result.conda_lock:  # pixi.lock is pixi's to write: no text, nothing written
            contents[checkout.path / result.lock.conda.lockfile] = result.conda_lock
        scratches = {target: target.with_name(target.name + ".tmp") for target in contents}
        for target, scratch in scratches.items():
            scratch.write_text(contents[target], encoding="utf-8")
        for target, scratch in sorted(scratches.items(), key=lambda item: item[0] == path):  # r2env.lock last
            scratch.replace(target)
        yield BuildEvent(Phase.PLAN, Kind.INFO, f"wrote {path} ({result.message})")
    yield LockResult(Phase.DONE, Kind.RESULT, str(path), lock=result.lock, previous=previous)


def _lock_r(planned: Planned, settings: Settings, engine: Engine, partial: Lock) -> Generator[BuildEvent, None, RSection]:
    """The R section of a lock (r2env/r/locking.py): install.R and DESCRIPTION are run in an image where everything
    else is locked already, and its user library is listed; renv.lock's packages are read from it."""
    from buildpacks.r import choice as r_choice
    from r2env.r.locking import hash_candidates, hash_file, r_section, renv_candidates, snapshot_library, url_fetcher
    from r2env.r.rstudio import rstudio_source
    from r2env.r.snapshot import DEFAULT_CRAN_MIRROR, cran_url
    facts = planned.facts
    chosen = r_choice(facts, planned.spec.suite, bool(settings.plan.base_image))
    repository = cran_url(settings.plan.cran_mirror, chosen)
    mirror = repository if settings.plan.cran_mirror != DEFAULT_CRAN_MIRROR else ""
    with tempfile.TemporaryDirectory(prefix="r2env-r-lock-") as scratch:
        bundle, ca_file = ca_bundle(settings.fetch, os.environ), ""
        if bundle:
            ca_file = str(Path(scratch) / "ca.pem")
            Path(ca_file).write_text(bundle, encoding="utf-8")
        if facts.has("install.R") or facts.description is not None:
            runs = " and ".join(name for name, present in ((facts.path("install.R"), facts.has("install.R")), ("DESCRIPTION", facts.description is not None)) if present)
            spec = plan(facts, select(facts, load_buildpacks(), settings.buildpacks), settings.plan, partial)
            staged = Planned(planned.checkout, spec, facts, partial)
            image = settings.image_name or default_image_name(planned.checkout)
            yield BuildEvent(Phase.PLAN, Kind.INFO, f"building {image} with everything but R's packages locked, to see what {runs} install")
            text = dockerfile_text(staged, buildkit=engine.builder != "classic")
            yield from _build_image(engine, staged, settings, text, image, {}, None, read_ignore_rules(DiskRepo(planned.checkout.path), facts, spec))
            candidates = snapshot_library(lambda command: engine.run(image, command), facts.description.package if facts.description else "")
            why = f"installed by {runs}"
        else:
            assert facts.renv_lock is not None
            candidates, why = renv_candidates(facts, mirror), f"from {facts.renv_lock.path}"
            repository = mirror or (facts.renv_lock.repositories[0][1] if facts.renv_lock.repositories else repository)
        yield BuildEvent(Phase.PLAN, Kind.INFO, f"hashing {len(candidates)} R packages ({why})")
        packages = hash_candidates(candidates, url_fetcher(ca_file), why)
        rstudio = rstudio_source(settings.plan.rstudio)
        locked_rstudio = None
        if rstudio is not None:
            yield BuildEvent(Phase.PLAN, Kind.INFO, f"hashing RStudio Server ({rstudio.url})")
            locked_rstudio = hash_file(rstudio.url, rstudio.sha256, url_fetcher(ca_file), "RStudio Server (--rstudio)")
    return replace(r_section(chosen, repository, packages), rstudio=locked_rstudio)


def dockerfile_text(planned: Planned, buildkit: bool = True) -> str:
    if planned.spec.dockerfile:
        return read_text(planned.checkout.path / planned.spec.dockerfile, planned.spec.dockerfile)
    return render_dockerfile(planned.spec, RenderOptions(buildkit=buildkit))


def default_image_name(checkout: Checkout) -> str:
    # Each --subdir of a repository is its own image, as in repo2docker.
    name = Path(checkout.url.rstrip("/")).name.removesuffix(".git").lower() + (f"-{checkout.subdir}" if checkout.subdir else "")
    slug = re.sub(r"[^a-z0-9._-]+", "-", name).strip("-._") or "repo"
    return f"r2env-{slug}"


def _up_to_date(engine: Engine, image: str, labels: Mapping[str, str]) -> bool:
    """A locked spec names its image completely, together with the repository's contents (and --label's labels,
    which only the build sets)."""
    if not engine.image_id(image):
        return False
    present = engine.image_labels(image)
    keys = ("org.r2env.spec-digest", "org.r2env.context-digest", "org.r2env.appendix-digest", *(k for k in labels if not k.startswith("org.r2env.")))
    return all(present.get(key) == labels.get(key) for key in keys)


def build_labels(planned: Planned, extra: tuple[tuple[str, str], ...] = ()) -> dict[str, str]:
    """r2env's labels after the --label ones (which may not use org.r2env.* keys: r2env/options.py)."""
    # Only a locked spec names its image; hashing the repository is worth it only then.
    context = {"org.r2env.context-digest": context_digest(planned.checkout.path)} if planned.lock else {}
    subdir = {"org.r2env.source.subdir": planned.checkout.subdir} if planned.checkout.subdir else {}
    return {
        **dict(extra),
        "org.r2env.version": __version__,
        "org.r2env.source.url": planned.checkout.url,
        "org.r2env.source.commit": planned.checkout.commit,
        **subdir,
        "org.r2env.spec-digest": planned.spec.digest,
        **context,
    }


def proxy_build_args(host_env: Mapping[str, str]) -> dict[str, str]:
    """A repository's own Dockerfile gets the host's proxies as Docker's predefined proxy build args, which
    are kept out of `docker history` (https://docs.docker.com/reference/dockerfile/#predefined-args). Its RUN
    steps are the repository's code and see them: without credentials, as a postBuild does (issue 17)."""
    return public_exports({name: host_env[name] for name in PROXY_VARIABLES if host_env.get(name)})


def _is_git_dir(path: Path) -> bool:
    """A bare repository (or a .git folder) rather than a work tree."""
    return (path / "HEAD").is_file() and (path / "objects").is_dir()


def _locked_plan(checkout: Checkout, settings: Settings, connect: Callable[[], Engine]) -> Iterator[BuildEvent | Planned]:
    try:
        planned = plan_checkout(checkout, settings)
        if planned.spec.buildpacks[0] == "conda" and planned.lock is None:
            environment = planned.facts.conda_environment
            raise LockError(
                f"{environment.path if environment else 'environment.yml'} is built from its lock, and {lock_path(planned.facts)} does not exist",
                "run `r2env lock` first (or `r2env build --relock`)",
            )
        yield planned
    except LockError as error:
        if not (settings.relock and ("is stale" in error.message or "does not exist" in error.message)):
            raise
        yield BuildEvent(Phase.PLAN, Kind.INFO, f"{error.message}: relocking")
        # The checkout is already narrowed to --subdir.
        for event in lock(str(checkout.path), replace(settings, subdir=""), connect):
            if not isinstance(event, LockResult):
                yield event
        yield plan_checkout(checkout, settings)


def _check_base(engine: Engine, planned: Planned) -> None:
    if planned.lock is None:
        return
    base = planned.lock.base
    found = engine.image_id(base.image)
    if found != base.id:
        raise LockError(
            f"base image {base.image} is {found}, but {lock_path(planned.facts)} pins {base.id}",
            "load the pinned base image, or run `r2env lock` to pin the present one (the environment may change)",
        )


@dataclass(frozen=True)
class BuildResult(BuildEvent):
    """The last event of a build: what a CI step reports (see r2env/ci.py)."""

    image_id: str = ""
    digest: str = ""  # the registry's manifest digest, when the image was pushed or found there
    spec_digest: str = ""
    cache_hit: bool = False  # nothing was built: every step came from a cache, or the build was skipped
    pushed: bool = False  # the registry has the image under every requested tag
    tags: tuple[str, ...] = ()  # every reference given to the image
    size: int = 0
    planned: Planned | None = None


# Shorter build arg values (1, yes, a version) are rarely secret, and masking them would garble the whole log.
MASKED_MIN_LENGTH = 4


def mask(text: str, values: tuple[str, ...]) -> str:
    """`text` with every build arg value of MASKED_MIN_LENGTH characters or more replaced by ***."""
    for value in sorted((v for v in values if len(v) >= MASKED_MIN_LENGTH), key=len, reverse=True):
        text = text.replace(value, "***")
    return text


def with_appendix(text: str, appendix: str) -> str:
    return text if not appendix.strip() else text.rstrip("\n") + "\n# --appendix\n" + appendix.strip("\n") + "\n"


def build(source: str, settings: Settings, connect: Callable[[], Engine]) -> Iterator[BuildEvent]:
    # Usage errors (a bad image name, --push without a registry) stop the run before anything is fetched.
    publish_targets(settings.image_name, settings.publish, explicit_name=bool(settings.image_name))
    yield BuildEvent(Phase.FETCH, Kind.INFO, f"fetching {source}" + (f" at {settings.ref}" if settings.ref else ""))
    yield from build_checkout(fetch_source(source, settings), settings, connect)


def build_checkout(checkout: Checkout, settings: Settings, connect: Callable[[], Engine]) -> Iterator[BuildEvent]:
    """Build a checkout already on disk (the daemon fetches its own); the last event is a BuildResult."""
    publishing = settings.publish
    targets = publish_targets(settings.image_name, publishing, explicit_name=bool(settings.image_name))
    planned: Planned | None = None
    for item in _locked_plan(checkout, settings, connect):
        if isinstance(item, Planned):
            planned = item
        else:
            yield item
    assert planned is not None
    checkout, spec = planned.checkout, planned.spec
    where = f"{checkout.url}" + (f" @ {checkout.commit[:12]}" if checkout.commit else "")
    yield BuildEvent(Phase.INSPECT, Kind.INFO, f"repository {where}" + (f" (configuration in {spec.config_dir}/)" if spec.config_dir else ""))
    if planned.lock:
        yield BuildEvent(Phase.PLAN, Kind.INFO, f"following {lock_path(planned.facts)} (inputs {planned.lock.inputs_digest[:19]}, up to date)")
    for detection in spec.detections:
        yield BuildEvent(Phase.PLAN, Kind.INFO, f"{detection.buildpack} ({detection.role}): {detection.reason}")
    if spec.interpreter:
        yield BuildEvent(Phase.PLAN, Kind.INFO, f"Python {spec.interpreter.version} ({spec.interpreter.source}): {spec.interpreter.reason}")
    # Read before anything is built, so an unreadable ignore file stops the run at once. A repository's own
    # Dockerfile is built with Docker's usual .dockerignore reading instead.
    ignore = None if spec.dockerfile else read_ignore_rules(DiskRepo(checkout.path), planned.facts, spec)
    if ignore and ignore.sources:
        yield BuildEvent(Phase.PLAN, Kind.INFO, f"the repository copy honours {', '.join(ignore.sources)}; "
                         f"the declaration files reach the build whatever they say")
    engine = connect()
    text = with_appendix(dockerfile_text(planned, buildkit=engine.builder != "classic"), publishing.appendix)
    bases = dockerfile_bases(text)
    image = str(targets.image) if targets else settings.image_name or default_image_name(checkout)
    labels = build_labels(planned, settings.labels)
    if publishing.appendix.strip():
        labels["org.r2env.appendix-digest"] = file_digest(publishing.appendix)
    credentials = credentials_from_env(targets.image.registry, os.environ) if targets else None
    with ExitStack() as early_build:
        started = None
        if planned.conda is None and not publishing.check_registry:
            # Nothing to make first (conda's package image) or to ask a registry: the docker CLI starts now and takes
            # its first tenth of a second while docker-py loads and the bases are checked. (A lock's image may turn
            # out to be up to date: that build is then stopped.)
            started = early_build.enter_context(_started_build(engine, planned, settings, text, image, labels, credentials, ignore))

        def stop_early_build(base: str) -> None:
            nonlocal started
            early_build.close()  # started before this base is pulled or bootstrapped, it cannot find it
            started = None

        for base in bases:
            yield from ensure_base(engine, base, settings.mirror, settings.cache_dir, missing=stop_early_build)
        _check_base(engine, planned)
        yield from _build_checked(engine, planned, settings, text, image, labels, credentials, ignore, targets, started)


def _build_checked(engine: Engine, planned: Planned, settings: Settings, text: str, image: str,
                   labels: dict[str, str], credentials: Credentials | None, ignore: IgnoreRules | None,
                   targets: Targets | None, started: _StartedBuild | None) -> Iterator[BuildEvent]:
    """The build once its bases are there (`started`: a build already running), then tags, pushes and the result."""
    publishing, spec = settings.publish, planned.spec
    # A locked spec names its image completely: pushed under this key tag, a later run can find it (--check-registry).
    # Not with --build-arg: its values (maybe secrets) are in no label, so nothing proves an image was built with them.
    key = targets.image.with_tag(key_tag(labels, publishing.appendix)) if targets and planned.lock and not settings.build_args else None
    result = functools.partial(BuildResult, Phase.DONE, Kind.RESULT, image, spec_digest=spec.digest, planned=planned)
    if publishing.check_registry:
        if key is None:
            why = "is not used with --build-arg" if planned.lock else "needs r2env.lock (only a locked spec names its image)"
            yield BuildEvent(Phase.BUILD, Kind.INFO, f"--check-registry {why}: building")
        elif digest := engine.registry_digest(str(key), credentials):
            assert targets is not None
            yield BuildEvent(Phase.BUILD, Kind.INFO, f"{key.repository} already has this locked spec and these repository contents ({digest}): nothing to build")
            yield from adopt(engine, key, digest, targets.all, publishing.push, credentials)
            local = engine.image_id(image)
            yield result(image_id=local or "", digest=digest, cache_hit=True, pushed=publishing.push,
                         tags=tuple(str(t) for t in targets.all), size=engine.image_size(image) if local else 0)
            return
        else:
            yield BuildEvent(Phase.BUILD, Kind.INFO, f"{key.repository} has no image for this locked spec yet: building")
    if planned.lock and not settings.no_cache and not settings.build_args and _up_to_date(engine, image, labels):
        if started is not None:
            started.stop()
        yield BuildEvent(Phase.BUILD, Kind.INFO, f"{image} already has this locked spec and these repository contents: nothing to build")
        cache_hit = True
    else:
        cache_hit = yield from (_follow_build(started, image, spec.steps, settings) if started else
                                _build_image(engine, planned, settings, text, image, labels, credentials, ignore))
    references = (*targets.all, *([key] if key and publishing.push else [])) if targets else ()
    for reference in references[1:]:
        engine.tag(image, str(reference))
    digest = ""
    if publishing.push:
        for pushed in push_all(engine, references, credentials):
            if isinstance(pushed, str):
                digest = pushed
            else:
                yield pushed
    yield result(image_id=engine.image_id(image) or "", digest=digest, cache_hit=cache_hit, pushed=publishing.push,
                 tags=tuple(str(r) for r in references) or (image,), size=engine.image_size(image))


def _build_image(engine: Engine, planned: Planned, settings: Settings, text: str, image: str, labels: Mapping[str, str],
                 credentials: Credentials | None, ignore: IgnoreRules | None = None) -> Generator[BuildEvent, None, bool]:
    """Build; return whether every step came from the cache (no step ran)."""
    if planned.conda is not None:
        from r2env.conda.packages import ensure_package_image
        from r2env.pixi.lockfile import PixiLockFile
        from r2env.pixi.packages import ensure_pixi_package_image
        trusted = settings.plan.conda_channels if settings.public_packages_only else None
        bundle = ca_bundle(settings.fetch, os.environ)
        if isinstance(planned.conda, PixiLockFile):
            yield from ensure_pixi_package_image(engine, planned.conda, settings.channel_map, bundle, settings.no_cache, trusted)
        else:
            yield from ensure_package_image(engine, planned.conda, settings.channel_map, bundle, settings.no_cache, trusted)
    with _started_build(engine, planned, settings, text, image, labels, credentials, ignore) as started:
        return (yield from _follow_build(started, image, planned.spec.steps, settings))


@dataclass(frozen=True)
class _StartedBuild:
    events: Iterator[BuildEvent]
    builder: str

    def stop(self) -> None:
        """Stop the build if it still runs; once it has ended, nothing."""
        close = getattr(self.events, "close", None)
        if close is not None:
            close()


@contextmanager
def _started_build(engine: Engine, planned: Planned, settings: Settings, text: str, image: str, labels: Mapping[str, str],
                   credentials: Credentials | None, ignore: IgnoreRules | None) -> Iterator[_StartedBuild]:
    """The build, started (the docker CLI runs from here); on leaving, it is stopped if it still runs, and its
    scratch folder (Dockerfile, build secrets) goes."""
    checkout, spec, publishing = planned.checkout, planned.spec, settings.publish
    with tempfile.TemporaryDirectory(prefix="r2env-build-") as scratch:
        directory = Path(scratch)
        secrets = write_build_secrets(settings.fetch, os.environ, directory) if not spec.dockerfile else {}
        # A repository's own Dockerfile is used in place, unless an appendix must be added to it.
        own = spec.dockerfile and not publishing.appendix.strip()
        dockerfile = checkout.path / spec.dockerfile if own else directory / "Dockerfile"
        if not own:
            dockerfile.write_text(text, encoding="utf-8")
        from r2env.engine import BuildRequest

        request = BuildRequest(
            context=checkout.path,
            dockerfile=dockerfile,
            tag=image,
            labels=labels,
            build_args={**dict(spec.build_args), **(proxy_build_args(os.environ) if spec.dockerfile else {}), **dict(settings.build_args)},
            secrets=secrets,
            no_cache=settings.no_cache,
            cache_from=publishing.cache_from,
            inline_cache=publishing.push,
            credentials=credentials,
            ignore=ignore.effective if ignore is not None else None,
            memory=settings.build_memory,
        )
        started = _StartedBuild(engine.build(request), engine.builder)
        try:
            yield started
        finally:
            started.stop()


def _follow_build(started: _StartedBuild, image: str, steps: tuple[Step, ...], settings: Settings) -> Generator[BuildEvent, None, bool]:
    """The events of a started build; return whether every step came from the cache (no step ran)."""
    yield BuildEvent(Phase.BUILD, Kind.INFO, f"building {image} with {started.builder} ({len(steps)} planned steps)")
    begun: list[str] = []
    cached: set[int] = set()
    # BuildKit names a step with its build args substituted (`RUN echo "$TOKEN"` shows the value): the log hides them.
    hide = functools.partial(mask, values=tuple(value for _, value in settings.build_args))
    try:
        for event in started.events:
            if event.kind is Kind.STEP:
                begun.append(event.message)
            elif event.kind is Kind.CACHED and begun:
                # BuildKit names the cached step; the classic builder marks the step just started.
                cached.add(begun.index(event.message) if event.message in begun else len(begun) - 1)
            yield replace(event, message=hide(event.message))
    except BuildError as error:
        explained = explain(error)
        raise BuildError(hide(explained.message), hide(explained.hint), details=hide(explained.details)) from None
    # A FROM line is never "cached": it is the base, not a step that runs.
    ran = [step for index, step in enumerate(begun) if index not in cached and not step.upper().startswith("FROM ")]
    return bool(begun) and not ran
