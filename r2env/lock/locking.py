"""lock: resolve everything an image will contain into r2env.lock, and check a lock against its inputs."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from r2env import __version__
from r2env.errors import LockError, SpecError
from r2env.events import BuildEvent, Kind, Phase
from r2env.inspect import RepoFacts
from r2env.conda.locking import LOCK_NAME as CONDA_LOCK_NAME
from r2env.conda.locking import RATTLER_REQUIREMENT, channels_for, conda_platform, hosts_server, lock_environment
from r2env.interpreter import DEBIAN_PYTHON
from r2env.lock.lockfile import LOCK_FILE, CondaSection, Lock, LockedBase, LockedPackage, file_digest, parse_lock, stale_inputs
from r2env.parsers.conda_lock import CondaLockFile, parse_conda_lock
from r2env.parsers.toml import load_toml
from r2env.pixi.lockfile import PixiLockFile, read_pixi_environment
from r2env.plan import PlanOptions
from r2env.r.facts import R_FILES, declares_r
from r2env.r.rstudio import RSESSION_PROXY
from r2env.reading import LOCK_LIMIT, limit_for, read_text
from r2env.documents import Shape
from r2env.grammars import SHA256_HASH, excerpt, is_marker, is_python_name, is_python_version
from r2env.lock.resolve import Runner, parse_compiled, resolve_apt, resolve_python, run_tool, server_closure
from r2env.spec import ImageSpec

if TYPE_CHECKING:
    from r2env.engine import Engine

# Declaration files that decide what gets installed (postBuild and start run code, but pin nothing).
_LOCKED_FILES = (
    "requirements.txt", "setup.py", "pyproject.toml", "Pipfile", "Pipfile.lock", "uv.lock", "poetry.lock",
    "runtime.txt", "apt.txt", "environment.yml", "environment.yaml", *R_FILES,
    "pixi.toml",  # pixi.lock itself is referred to by digest in the conda section, like conda-lock.yml
)


def lock_path(facts: RepoFacts) -> str:
    return facts.path(LOCK_FILE)


def current_inputs(root: Path, facts: RepoFacts, options: PlanOptions) -> dict[str, str]:
    """Digests of everything a lock is made from: declaration files (requirements includes too) and options."""
    paths = {facts.path(name) for name in _LOCKED_FILES if facts.has(name)}
    paths |= {path for f in facts.requirements for path in (f.path, *f.constraints)}
    inputs = {path: file_digest(read_text(root / path, path, limit_for(path), SpecError)) for path in sorted(paths)}
    inputs["option:server-requirement"] = file_digest(options.server_requirement)
    inputs["option:base"] = file_digest(f"{options.base_image}|{options.base_suite}")
    if declares_r(facts):
        # Where R and its packages come from; only for R repositories, so that other locks keep their inputs.
        inputs["option:cran-mirror"] = file_digest(f"{options.cran_mirror}|{options.r_builds_url}" + (f"|{options.rstudio}" if options.rstudio else ""))
    if facts.pixi is not None:
        inputs["option:pixi-environment"] = file_digest(options.pixi_environment)
    # --conda-channel is not an input: conda-lock.yml records the channels it locked from, and where the
    # packages come from at build time is --channel-map's business.
    return inputs


def read_lock_text(path: Path, shown: str) -> str | None:
    """A lock's text through the reading layer (LockError, exit 8, for a FIFO, a directory, binary data...);
    None when nothing is there at all."""
    try:
        present = path.exists() or path.is_symlink()
    except OSError as error:  # a name longer than NAME_MAX, a path through a file
        raise LockError(f"{shown}: {error.strerror or error}", "give the path of an r2env.lock file") from None
    if not present:
        return None
    return read_text(path, shown, LOCK_LIMIT, LockError)


def load_lock_file(path: Path, shown: str) -> Lock | None:
    text = read_lock_text(path, shown)
    return None if text is None else parse_lock(text, shown)


def read_lock(root: Path, facts: RepoFacts) -> Lock | None:
    return load_lock_file(root / lock_path(facts), lock_path(facts))


def check_fresh(lock: Lock, root: Path, facts: RepoFacts, options: PlanOptions) -> None:
    changed = stale_inputs(lock, current_inputs(root, facts, options))
    if lock.conda is not None:
        conda_text = read_lock_text(root / lock.conda.lockfile, lock.conda.lockfile)
        if conda_text is None or file_digest(conda_text) != lock.conda.digest:
            changed.append(lock.conda.lockfile)  # conda-lock.yml is part of the lock: edited or lost, it is stale
    if changed:
        names = ", ".join(name.replace("option:", "the option ") for name in changed)
        raise LockError(
            f"{lock_path(facts)} is stale: {names} changed since it was made",
            "run `r2env lock` to update it (or `r2env build --relock`)",
        )


def check_apt_resolved(lock: Lock, spec: ImageSpec, facts: RepoFacts) -> None:
    """A planned apt step may ask for packages no declaration file names (a postBuild brings node and npm):
    the lock must have resolved them, or they would be installed at whatever version the mirror has."""
    missing = [p for step in spec.steps if "apt" in step.caches for p in step.packages if p not in lock.apt]
    if missing:
        raise LockError(
            f"{lock_path(facts)} is stale: it has no version for the Debian packages {', '.join(dict.fromkeys(missing))}",
            "run `r2env lock` to update it (or `r2env build --relock`)",
        )


def read_conda_lock(root: Path, lock: Lock) -> CondaLockFile | None:
    """The conda-lock.yml a fresh r2env.lock refers to (a pixi.lock is read by the pipeline, with its manifest)."""
    if lock.conda is None or lock.conda.environment:
        return None
    path = lock.conda.lockfile
    text = read_lock_text(root / path, path)
    if text is None:
        raise LockError(f"{path}: does not exist, and {LOCK_FILE} refers to it", "run `r2env lock` to make it again")
    return parse_conda_lock(text, path, lock.conda.platform)


@dataclass(frozen=True)
class UserPins:
    """The repository's own lock, installed as it is: r2env resolves only the server around it."""

    source: str
    packages: tuple[LockedPackage, ...]


def _poetry_pins(text: str, path: str) -> tuple[LockedPackage, ...]:
    """poetry.lock (lock-version 2.1, Poetry 2): the main group's packages, each with its own markers. Every value is
    checked for its type (naming the key path) and grammar: versions and names become install lines (issue 17)."""
    document = Shape(load_toml(text, path, LockError), path, error=LockError, hint="regenerate it with `poetry lock`")
    version = document.key("metadata", {}).key("lock-version", "").string()
    if not version.startswith("2.") or version == "2.0":
        raise LockError(
            f"{path}: lock-version {excerpt(version or '?', 20)} has no per-package groups and markers",
            "regenerate it with Poetry 2 (`poetry lock`), which writes lock-version 2.1",
        )
    pins = []
    for package in document.key("package", []).list():
        markers_shape = package.key("markers", "")
        markers = markers_shape.key("main", "").string() if isinstance(markers_shape.value, dict) else markers_shape.string()
        if "main" not in [group.string() for group in package.key("groups", ["main"]).list()]:
            continue
        name, pinned = package.key("name").string(), package.key("version").string()
        if not is_python_name(name):
            raise package.key("name").fail(f"{excerpt(name)} is not a Python package name")
        if not is_python_version(pinned):
            raise package.key("version").fail(f"{excerpt(pinned)} is not a PEP 440 version")
        if markers and not is_marker(markers):
            raise markers_shape.fail(f"{excerpt(markers)} is not a PEP 508 environment marker")
        hashes = tuple(h for f in package.key("files", []).list() if (h := f.key("hash", "").string()).startswith("sha256:"))
        bad = next((h for h in hashes if not SHA256_HASH.match(h)), None)
        if bad is not None:
            raise package.key("files").fail(f"{excerpt(bad)} is not a sha256:HEX hash")
        if not hashes:
            raise LockError(f"{path}: {name} has no file hashes", "regenerate it with `poetry lock`")
        pins.append(LockedPackage(str(canonicalize_name(name)), pinned, hashes, markers))
    return tuple(pins)


def user_pins(root: Path, facts: RepoFacts, runner: Runner = run_tool) -> UserPins | None:
    """An ecosystem lock, if the repository has one: it is the source of truth, not re-resolved."""
    if facts.pipfile_lock is not None:
        return UserPins(facts.path("Pipfile.lock"), facts.pipfile_lock)
    if facts.has("uv.lock"):
        # Read and parsed here first: uv would report an unreadable, huge or broken file less clearly.
        load_toml(read_text(root / facts.path("uv.lock"), facts.path("uv.lock"), LOCK_LIMIT, LockError), facts.path("uv.lock"), LockError)
        result = runner(["uv", "export", "--frozen", "--format", "requirements-txt", "--no-emit-project", "--no-header", "--quiet"], root)
        if result.returncode != 0:
            raise LockError(f"{facts.path('uv.lock')}: uv export failed: {result.stderr.strip()[:300]}", "run `uv lock` and commit the result")
        return UserPins(facts.path("uv.lock"), parse_compiled(result.stdout).packages)
    if facts.has("poetry.lock"):
        path = facts.path("poetry.lock")
        return UserPins(path, _poetry_pins(read_text(root / path, path, LOCK_LIMIT, LockError), path))
    if facts.requirements and all(f.hashed for f in facts.requirements):
        lines = [line for f in facts.requirements for line in _hashed_lines(root / f.path, f.path)]
        return UserPins(facts.requirements[0].path, parse_compiled("\n".join(lines)).packages)
    return None


def _continued(lines: tuple[str, ...]) -> str:
    """`name==1.0 --hash=a --hash=b` lines in pip-compile's multi-line layout, which parse_compiled reads."""
    out = []
    for line in lines:
        requirement, *hashes = line.split(" --hash=")
        out.append(requirement.strip() + " \\")
        out += [f"    --hash={h}" for h in hashes]
    return "\n".join(out)


def _hashed_lines(path: Path, shown: str) -> list[str]:
    text = read_text(path, shown).replace("\\\n", " ")
    return _continued(tuple(" ".join(line.split()) for line in text.splitlines() if line.strip() and not line.lstrip().startswith(("#", "-")))).splitlines()


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


def refuse_dockerfile(spec: ImageSpec) -> None:
    """A repository's own Dockerfile is built as-is: there is nothing r2env could lock."""
    if spec.dockerfile or spec.interpreter is None:
        raise LockError(f"{spec.dockerfile}: a repository's own Dockerfile is built as-is", "r2env does not lock Dockerfile builds")


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


@dataclass(frozen=True)
class LockResult(BuildEvent):
    lock: Lock | None = None
    previous: Lock | None = None
    conda_lock: str = ""  # conda-lock.yml's new text, written beside r2env.lock
