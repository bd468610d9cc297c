"""Read r2env.lock and check it against its inputs (what every build does); r2env/lock/making.py resolves a new one."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from packaging.utils import canonicalize_name

from r2env.errors import LockError, SpecError
from r2env.events import BuildEvent
from r2env.inspect import RepoFacts
from r2env.lock.lockfile import LOCK_FILE, Lock, LockedPackage, file_digest, parse_lock, stale_inputs
from r2env.parsers.toml import load_toml
from r2env.plan import PlanOptions
from r2env.r.facts import R_FILES, declares_r
from r2env.reading import LOCK_LIMIT, limit_for, read_text
from r2env.documents import Shape
from r2env.grammars import SHA256_HASH, excerpt, is_marker, is_python_name, is_python_version
from r2env.spec import ImageSpec

if TYPE_CHECKING:
    from r2env.lock.resolve import Runner
    from r2env.parsers.conda_lock import CondaLockFile

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


def load_lock_file(path: Path, shown: str, memo: Path | None = None) -> Lock | None:
    text = read_lock_text(path, shown)
    return None if text is None else parse_lock(text, shown, memo)


def read_lock(root: Path, facts: RepoFacts, memo: Path | None = None) -> Lock | None:
    """The repository's r2env.lock; `memo`: a folder of loaded lock texts (r2env/yaml_memo.py)."""
    return load_lock_file(root / lock_path(facts), lock_path(facts), memo)


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
    """A planned apt step may ask for packages no declaration file names (git for a git+ requirement, R):
    the lock must have resolved them, or they would be installed at whatever version the mirror has."""
    missing = [p for step in spec.steps if "apt" in step.caches for p in step.packages if p not in lock.apt]
    if missing:
        raise LockError(
            f"{lock_path(facts)} is stale: it has no version for the Debian packages {', '.join(dict.fromkeys(missing))}",
            "run `r2env lock` to update it (or `r2env build --relock`)",
        )


def read_conda_lock(root: Path, lock: Lock, memo: Path | None = None) -> CondaLockFile | None:
    """The conda-lock.yml a fresh r2env.lock refers to (a pixi.lock is read by the pipeline, with its manifest);
    `memo`: a folder of loaded YAML texts (r2env/yaml_memo.py)."""
    if lock.conda is None or lock.conda.environment:
        return None
    path = lock.conda.lockfile
    text = read_lock_text(root / path, path)
    if text is None:
        raise LockError(f"{path}: does not exist, and {LOCK_FILE} refers to it", "run `r2env lock` to make it again")
    from r2env.parsers.conda_lock import parse_conda_lock  # a conda environment's only
    return parse_conda_lock(text, path, lock.conda.platform, memo)


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


def user_pins(root: Path, facts: RepoFacts, runner: Runner | None = None) -> UserPins | None:
    """An ecosystem lock, if the repository has one: it is the source of truth, not re-resolved. `runner` runs uv
    (default: r2env/lock/resolve.py run_tool)."""
    from r2env.lock.resolve import parse_compiled, run_tool  # only for a repository with such a lock
    if facts.pipfile_lock is not None:
        return UserPins(facts.path("Pipfile.lock"), facts.pipfile_lock)
    if facts.has("uv.lock"):
        # Read and parsed here first: uv would report an unreadable, huge or broken file less clearly.
        load_toml(read_text(root / facts.path("uv.lock"), facts.path("uv.lock"), LOCK_LIMIT, LockError), facts.path("uv.lock"), LockError)
        result = (runner or run_tool)(["uv", "export", "--frozen", "--format", "requirements-txt", "--no-emit-project", "--no-header", "--quiet"], root)
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


def refuse_dockerfile(spec: ImageSpec) -> None:
    """A repository's own Dockerfile is built as-is: there is nothing r2env could lock."""
    if spec.dockerfile or spec.interpreter is None:
        raise LockError(f"{spec.dockerfile}: a repository's own Dockerfile is built as-is", "r2env does not lock Dockerfile builds")


@dataclass(frozen=True)
class LockResult(BuildEvent):
    lock: Lock | None = None
    previous: Lock | None = None
    conda_lock: str = ""  # conda-lock.yml's new text, written beside r2env.lock
