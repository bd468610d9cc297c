"""What a buildpack is: the types buildpacks (built-in in the top-level `buildpacks` package, or third-party through the
`r2env.buildpacks` entry-point group) are made of. The registry of them is `buildpacks.load_buildpacks`."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Callable

from r2env.inspect import RepoFacts
from r2env.lock.lockfile import Lock, LockedPackage
from r2env.spec import BuildStage, Interpreter, Step

if TYPE_CHECKING:  # read only for conda and pixi environments: loaded by them
    from r2env.parsers.conda_lock import CondaLockFile

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
    cran_mirror: str = ""  # R: the repository template (r2env/r/snapshot.py)
    r_builds_url: str = ""  # R: where R builds Debian does not ship come from (r2env/r/versions.py)
    rstudio: str = ""  # R: RStudio Server's source, "" for none (r2env/r/rstudio.py)
    base_fixed: bool = False  # --base-image was given: its suite stays


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
    # A primary whose packages exist for one Debian suite only (R 4.5 is trixie's): (facts, default suite,
    # whether --base-image fixes it) -> the suite of the base image.
    suite: Callable[[RepoFacts, str, bool], str] | None = None
