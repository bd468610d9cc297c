"""Resolve a new r2env.lock for a planned spec (`r2env lock`): Debian packages in the base image, Python packages with
uv, a conda environment with conda-lock, a pixi environment from pixi.lock, R packages elsewhere (r2env/r/locking.py).
Only `r2env lock` (and `build --relock`) loads it, and with it the resolvers."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from r2env import __version__
from r2env.conda.locking import LOCK_NAME as CONDA_LOCK_NAME
from r2env.conda.locking import RATTLER_REQUIREMENT, channels_for, conda_platform, hosts_server, lock_environment
from r2env.errors import LockError
from r2env.events import BuildEvent, Kind, Phase
from r2env.inspect import RepoFacts
from r2env.interpreter import DEBIAN_PYTHON
from r2env.lock.lockfile import CondaSection, Lock, LockedBase, LockedPackage, file_digest
from r2env.lock.locking import LockResult, current_inputs, refuse_dockerfile, user_pins
from r2env.lock.resolve import Runner, resolve_apt, resolve_python, run_tool, server_closure
from r2env.parsers.conda_lock import CondaLockFile
from r2env.pixi.lockfile import PixiLockFile, read_pixi_environment
from r2env.plan import PlanOptions
from r2env.r.facts import declares_r
from r2env.r.rstudio import RSESSION_PROXY
from r2env.reading import LOCK_LIMIT, read_text
from r2env.spec import ImageSpec

if TYPE_CHECKING:
    from r2env.engine import Engine


def make_lock(
    root: Path, facts: RepoFacts, spec: ImageSpec, options: PlanOptions, engine: "Engine",
    index_url: str = "", extra_index_url: str = "", runner: Runner = run_tool, conda_pypi_lookup: str = "",
) -> Iterator[BuildEvent]:
    """Resolve a lock for a planned (unlocked) spec. Yields progress; the last event's `lock` is in LockResult."""
    refuse_dockerfile(spec)
    assert spec.interpreter is not None  # refuse_dockerfile stops specs without one
    conda: CondaSection | None = None
    conda_text = conda_counts = ""
    environment = facts.conda_environment if spec.buildpacks[0] == "conda" else None
    pixi = read_pixi_environment(root, facts.pixi, options.pixi_environment) if spec.buildpacks[0] == "pixi" and facts.pixi else None
    if pixi is not None:
        yield BuildEvent(Phase.PLAN, Kind.INFO, f"{pixi.path}: environment {pixi.environment!r} for {pixi.platform}, installed as pixi locked it (no solve)")
        conda_file: CondaLockFile = pixi
        conda = _pixi_section(root, spec, pixi, options.server_requirement, index_url, extra_index_url, runner)
        conda_counts = f", {len(pixi.packages)} conda and {len(pixi.pypi)} PyPI packages ({conda.lockfile})"
    if environment is not None:
        channels = channels_for(environment, options.conda_channels)
        platform = conda_platform()
        yield BuildEvent(Phase.PLAN, Kind.INFO, f"locking {environment.path} for {platform} with conda-lock (channels: {', '.join(channels)})")
        conda_text, conda_file = lock_environment(root, environment, channels, platform, runner, conda_pypi_lookup)
        conda = _conda_section(root, facts, spec, conda_file, conda_text, options.server_requirement, index_url, extra_index_url, runner)
        conda_counts = f", {len(conda_file.packages)} conda and {len(conda_file.pip)} pip packages ({conda.lockfile})"
    direct = [r for f in facts.requirements for r in f.requirements if "://" in r or r.startswith(("git+", "hg+", "svn+", "bzr+"))]
    if direct:
        raise LockError(
            f"{facts.requirements[0].path}: {direct[0]!r} is a direct reference, which r2env cannot lock with hashes yet",
            "pin a released version instead (NAME==VERSION), or build without a lock",
        )
    base_id = engine.image_id(spec.base_image)
    if not base_id:
        raise LockError(f"base image {spec.base_image} is not present", "run `r2env base bootstrap` or `docker pull` it first")
    labels = engine.image_labels(spec.base_image)
    apt_packages = list(dict.fromkeys(p for step in spec.steps if "apt" in step.caches for p in step.packages))
    yield BuildEvent(Phase.PLAN, Kind.INFO, f"resolving {len(apt_packages)} Debian packages in {spec.base_image}")
    if environment is not None or pixi is not None:
        # Whether the server needs r2env's own Python is known only now that the environment's Python is locked.
        apt_packages += [p for p in ("python3", "python3-venv") if p not in apt_packages]
    apt = resolve_apt(engine, spec.base_image, apt_packages)
    python = spec.interpreter.version
    if conda is not None:
        python = conda_python = conda_file.python_version
        if hosts_server(conda_python):
            # The environment runs the server (conda.server): r2env's own Python environment is not in the image.
            lock = Lock(__version__, current_inputs(root, facts, options),
                        LockedBase(spec.base_image, base_id, spec.suite, labels.get("org.r2env.base.mirror", "")),
                        python, (), (), apt, "r2env", conda=conda)
            counts = f"{len(conda.server)} server, {len(apt)} Debian packages{conda_counts}"
            yield LockResult(Phase.PLAN, Kind.RESULT, counts, lock=lock, conda_lock=conda_text)
            return
        python = DEBIAN_PYTHON.get(spec.suite, "3.11")  # the server's own environment, beside the environment
    # A conda environment's packages are in conda-lock.yml: r2env's own resolution is the server's only.
    pins = user_pins(root, facts, runner) if environment is None else None
    requirements = [options.server_requirement]
    if pins is None and environment is None:
        requirements += _requirement_inputs(root, facts)
    # RStudio's proxy is a Jupyter server extension: locked with the rest, installed with the repository's packages.
    extras = [RSESSION_PROXY] if options.rstudio and declares_r(facts) and environment is None else []
    requirements += extras
    with tempfile.TemporaryDirectory(prefix="r2env-lock-") as scratch:
        if pins is not None:
            constraints = Path(scratch) / "constraints.txt"
            # Markers kept: a universal lock may pin one package twice, for different Pythons.
            constraints.write_text("".join(f"{p.name}=={p.version}" + (f" ; {p.marker}" if p.marker else "") + "\n" for p in pins.packages), encoding="utf-8")
            requirements.append(f"-c {constraints}")
        yield BuildEvent(Phase.PLAN, Kind.INFO, f"resolving Python packages for Python {python} on {spec.suite} with uv")
        resolution = resolve_python(requirements, root, python, spec.suite, index_url, extra_index_url, runner)
    server_names = server_closure(resolution, [Requirement(options.server_requirement).name])
    server = tuple(p for p in resolution.packages if p.name in server_names)
    if pins is not None:
        taken = {p.name for p in server}
        packages = tuple(p for p in pins.packages if p.name not in taken)
        if extras:  # what the repository's own lock does not have (RStudio's proxy), from r2env's resolution
            taken |= {p.name for p in packages}
            packages += tuple(p for p in resolution.packages if p.name not in taken)
        source = pins.source
    else:
        packages = tuple(p for p in resolution.packages if p.name not in server_names)
        source = "r2env"
    lock = Lock(
        r2env_version=__version__,
        inputs=current_inputs(root, facts, options),
        base=LockedBase(spec.base_image, base_id, spec.suite, labels.get("org.r2env.base.mirror", "")),
        python=python,
        server=server,
        packages=packages,
        apt=apt,
        source=source,
        conda=conda,
    )
    counts = f"{len(server)} server, {len(packages)} repository, {len(apt)} Debian packages{conda_counts}"
    yield LockResult(Phase.PLAN, Kind.RESULT, counts, lock=lock, conda_lock=conda_text)


def _conda_section(
    root: Path, facts: RepoFacts, spec: ImageSpec, conda_file: CondaLockFile, text: str, server_requirement: str,
    index_url: str, extra_index_url: str, runner: Runner,
) -> CondaSection:
    """What r2env adds to conda-lock's lock: the in-image installer, and the notebook server the environment runs
    (or, for a Python too old to run it, the ipykernel that makes the environment the server's kernel)."""
    environment = facts.conda_environment
    assert environment is not None
    python = conda_file.python_version
    if not python:
        raise LockError(f"{environment.path}: the environment has no python package, and the notebook server runs in it",
                        "add python to its dependencies, e.g. `- python=3.12`")
    installer_python = DEBIAN_PYTHON.get(spec.suite, "3.11")
    installer = resolve_python([RATTLER_REQUIREMENT], root, installer_python, spec.suite, index_url, extra_index_url, runner).packages
    kernel: tuple[LockedPackage, ...] = ()
    server: tuple[LockedPackage, ...] = ()
    if not hosts_server(python):
        if not environment.declares("ipykernel"):
            kernel = resolve_python(["ipykernel"], root, python, spec.suite, index_url, extra_index_url, runner).packages
    elif not environment.declares(canonicalize_name(Requirement(server_requirement).name)):
        server = _environment_server(root, conda_file, server_requirement, spec.suite, index_url, extra_index_url, runner)
    return CondaSection(facts.path(CONDA_LOCK_NAME), file_digest(text), conda_file.platform, installer, kernel, server)


def _pixi_section(
    root: Path, spec: ImageSpec, pixi: PixiLockFile, server_requirement: str, index_url: str, extra_index_url: str, runner: Runner,
) -> CondaSection:
    """pixi.lock by path and digest, plus the in-image installer and the notebook server the environment runs
    (unless pixi locked one into it)."""
    installer_python = DEBIAN_PYTHON.get(spec.suite, "3.11")
    installer = resolve_python([RATTLER_REQUIREMENT], root, installer_python, spec.suite, index_url, extra_index_url, runner).packages
    name = canonicalize_name(Requirement(server_requirement).name)
    has_server = any(canonicalize_name(p.name) == name for p in pixi.packages) or any(p.name == name for p in pixi.pypi)
    server = () if has_server else _environment_server(root, pixi, server_requirement, spec.suite, index_url, extra_index_url, runner)
    text = read_text(root / pixi.path, pixi.path, LOCK_LIMIT, LockError)
    return CondaSection(pixi.path, file_digest(text), pixi.platform, installer, (), server, environment=pixi.environment)


def _environment_server(
    root: Path, conda_file: CondaLockFile, server_requirement: str, suite: str, index_url: str, extra_index_url: str, runner: Runner,
) -> tuple[LockedPackage, ...]:
    """The server's closure for the environment's Python, resolved around what the environment already has (its conda
    packages and pip: pins are constraints, so the server never replaces them) and without what it already has."""
    present: dict[str, str] = {}
    for package in conda_file.packages:
        try:
            present[canonicalize_name(package.name)] = str(Version(package.version))
        except InvalidVersion:
            continue  # not a Python package version (constraints only matter for packages the server needs)
    present |= {p.name: p.version for p in conda_file.pip}
    present.pop("python", None)
    with tempfile.TemporaryDirectory(prefix="r2env-lock-") as scratch:
        constraints = Path(scratch) / "environment-constraints.txt"
        constraints.write_text("".join(f"{name}=={version}\n" for name, version in sorted(present.items())), encoding="utf-8")
        try:
            resolution = resolve_python([server_requirement, f"-c {constraints}"], root, conda_file.python_version, suite,
                                        index_url, extra_index_url, runner)
        except LockError as error:
            raise LockError(
                f"{conda_file.path}: the notebook server ({server_requirement}) cannot be installed beside the environment's packages: "
                + error.message.removeprefix("cannot resolve the Python packages: "),
                "add jupyterlab to environment.yml, so the conda solver picks one that fits",
            ) from None
    return tuple(p for p in resolution.packages if p.name not in present)


def _requirement_inputs(root: Path, facts: RepoFacts) -> list[str]:
    """What the repository declares, as lines for the resolver (paths absolute; `-e .` is the repository root)."""
    lines: list[str] = []
    if facts.requirements:
        lines.append(f"-r {root / facts.requirements[0].path}")
    if not facts.installs_repository and (facts.has("setup.py") or (facts.pyproject and facts.pyproject.installable)):
        lines.append(str(root))
    if facts.pipfile is not None:
        lines += list(facts.pipfile.requirements)
        lines += [("-e " if ref.startswith("-e ") else "") + str(root / ref.removeprefix("-e ")) for ref in facts.pipfile.local_references]
    return lines
