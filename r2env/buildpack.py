"""What a buildpack is, and the registry of them (built-ins plus the `r2env.buildpacks` entry-point group)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from importlib.metadata import entry_points
from typing import Callable

from r2env.errors import UsageError
from r2env.inspect import RepoFacts
from r2env.lock import Lock, LockedPackage
from r2env.parsers.conda_lock import CondaLockFile
from r2env.spec import BuildStage, Interpreter, Step

ENTRY_POINT_GROUP = "r2env.buildpacks"


class Role(str, Enum):
    EXCLUSIVE = "exclusive"  # builds the image alone (a Dockerfile)
    PRIMARY = "primary"  # the one way the environment is declared; the first that detects wins
    ADDON = "addon"  # composes with any primary


@dataclass(frozen=True)
class PlanContext:
    """What contributions may depend on besides the repository's facts."""

    user_name: str
    user_id: int
    repo_dir: str
    env_prefix: str  # the Python environment every buildpack installs into (and the notebook server runs from)
    interpreter: Interpreter
    server_requirement: str  # e.g. "jupyterlab==4.4.1"
    lock: Lock | None = None  # when present, every package is installed exactly as locked
    pins: tuple[LockedPackage, ...] = ()  # the repository's own lock (uv.lock, poetry.lock), installed exactly
    pins_source: str = ""
    conda: CondaLockFile | None = None  # the conda-lock.yml r2env.lock refers to, read for its platform
    suite: str = "bookworm"  # Debian suite of the base image


@dataclass(frozen=True)
class Contribution:
    steps: tuple[Step, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    packages: tuple[tuple[str, tuple[str, ...]], ...] = ()
    build_stages: tuple[BuildStage, ...] = ()


@dataclass(frozen=True)
class Buildpack:
    name: str
    role: Role
    detect: Callable[[RepoFacts], str | None]  # why it applies, or None
    contribute: Callable[[RepoFacts, PlanContext], Contribution] = field(
        default=lambda facts, context: Contribution()
    )
    # A primary that brings its own Python (a conda environment): the interpreter the plan shows, and the prefix
    # the notebook server runs from. None: the plan chooses a Python for the repository.
    environment: Callable[[RepoFacts, CondaLockFile | None], tuple[Interpreter, str]] | None = None


def load_buildpacks() -> dict[str, Buildpack]:
    """Built-ins first, then third-party buildpacks; a third party may not silently replace a built-in."""
    from buildpacks import BUILTIN

    registry = {buildpack.name: buildpack for buildpack in BUILTIN}
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        buildpack = entry.load()
        if not isinstance(buildpack, Buildpack):
            raise UsageError(f"entry point {entry.name!r} ({entry.value}) is not an r2env Buildpack", "fix the plugin")
        if buildpack.name in registry and registry[buildpack.name] is not buildpack:
            raise UsageError(
                f"buildpack {buildpack.name!r} from {entry.value} clashes with an existing one", "rename the plugin's buildpack"
            )
        registry[buildpack.name] = buildpack
    return registry
