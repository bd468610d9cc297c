"""The image spec: plain, frozen, JSON-serialisable data that says exactly what an image contains."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from enum import IntEnum
from typing import Any, Literal


# Where a conda environment lives in the image (as in repo2docker): buildpacks/conda.py installs it, options keep clear of it.
CONDA_DIR = "/srv/conda"


class Stage(IntEnum):
    """Layer order serves the cache: what changes least comes first."""

    SYSTEM = 10
    INTERPRETER = 20
    SERVER = 30
    DEPENDENCY_FILES = 40
    DEPENDENCIES = 50
    REPO = 60
    POST_BUILD = 70


StepKind = Literal["run", "copy", "env"]
StepUser = Literal["root", "user"]
# "uv": the step runs r2env's uv (r2env/uv_installer.py), mounted from its build stage, with uv's shared cache
# unless the step runs the repository's own code.
Cache = Literal["apt", "pip", "uv"]
# What a step gets of the host's fetch settings (r2env/build_secrets.py), each group a BuildKit secret file:
# "ca" the CA bundle and the variables naming it, "proxy" the proxy variables, "index" pip's and uv's index URLs,
# "python-mirror" uv's CPython download mirror. Only these steps can read them (issue 17).
BuildSecret = Literal["ca", "proxy", "index", "python-mirror"]


@dataclass(frozen=True)
class Step:
    """One build step. `secrets` lists what a step that downloads gets of the fetch settings; a step that runs
    the repository's own code (`repository_code`) gets them without credentials (docs/user-guide.md)."""

    kind: StepKind
    stage: Stage
    buildpack: str
    description: str
    script: str = ""  # shell, for kind "run"
    user: StepUser = "root"
    inputs: tuple[str, ...] = ()  # repo-relative files, for kind "copy"
    env: tuple[tuple[str, str], ...] = ()  # for kind "env"
    secrets: tuple[BuildSecret, ...] = ()
    repository_code: bool = False
    caches: tuple[Cache, ...] = ()
    packages: tuple[str, ...] = ()  # Debian packages an apt step installs (what a lock resolves)
    source: str = ""  # for kind "copy": a build stage or image to copy absolute paths from ("" = the repository)

    @property
    def fetches(self) -> bool:
        return bool(self.secrets)


@dataclass(frozen=True)
class BuildStage:
    """A stage built before the image from the same base; the image copies only what it needs out of it
    (a conda prefix without the installer that made it)."""

    name: str
    steps: tuple[Step, ...]
    # Rendered with the image's own ENV rather than the build stages' two variables, so a step it shares with the
    # image (the same apt step) is one BuildKit vertex, run once: r2env/uv_installer.py.
    image_env: bool = False


@dataclass(frozen=True)
class Detection:
    buildpack: str
    role: str
    reason: str


@dataclass(frozen=True)
class Interpreter:
    version: str  # "X.Y" ("" for a conda environment whose Python is chosen when it is locked)
    source: Literal["debian", "uv", "conda"]  # Debian's python3, a uv-managed standalone build, or a conda environment's
    reason: str


@dataclass(frozen=True)
class ImageSpec:
    base_image: str
    suite: str  # Debian suite of the base
    interpreter: Interpreter | None  # None for an exclusive Dockerfile build
    user_name: str
    user_id: int
    repo_dir: str
    config_dir: str
    detections: tuple[Detection, ...]
    buildpacks: tuple[str, ...]  # applied, in order
    packages: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (kind, declared packages), e.g. ("apt", (...))
    env: tuple[tuple[str, str], ...] = ()
    steps: tuple[Step, ...] = ()
    command: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    dockerfile: str = ""  # repo-relative path of a user Dockerfile built as-is
    build_args: tuple[tuple[str, str], ...] = field(default=())
    build_stages: tuple[BuildStage, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        # Fields added for build stages are left out while empty: specs without them keep their digests,
        # so images built before stay up to date.
        for step in [*data["steps"], *(step for stage in data["build_stages"] for step in stage["steps"])]:
            if not step["source"]:
                del step["source"]
        for stage in data["build_stages"]:
            if not stage["image_env"]:
                del stage["image_env"]
        if not data["build_stages"]:
            del data["build_stages"]
        return data

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    @property
    def digest(self) -> str:
        """sha256 of the canonical JSON: the same spec always names the same image."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()

    def steps_in(self, stage: Stage) -> tuple[Step, ...]:
        return tuple(step for step in self.steps if step.stage == stage)
