"""pixi: pixi.toml (or pyproject.toml's [tool.pixi]) with pixi.lock, one environment installed exactly from the lock.

The chosen environment (`default`, or --pixi-environment) for linux-64 is installed at /srv/conda/envs/notebook the
way the conda buildpack installs a conda-lock.yml (docs/pixi.md): py-rattler in a build stage installs the locked
conda packages with no solve, pip installs the locked PyPI files (fetched on the host, sha256 checked, installed
with --require-hashes and no index), and the notebook server is added to the environment unless it has one. The
image gets only the prefix: no pixi, no py-rattler, no package cache. apt.txt, postBuild and start compose as with
any primary; the environment's tasks run with `r2env launch --task NAME`."""

from __future__ import annotations

import dataclasses
import shlex
from typing import TYPE_CHECKING

from buildpacks import conda
from buildpacks.steps import CONDA_INSTALLER_PYTHON, ignored_note, locked_install, rattler_install, system_steps, uv_pip
from r2env.apt_install import apt_install
from r2env.buildpack import Buildpack, Contribution, PlanContext, Role
from r2env.errors import SpecError
from r2env.inspect import RepoFacts
from r2env.spec import BuildStage, Interpreter, Stage, Step

# r2env/pixi/ and r2env/conda/ load only when a pixi environment is planned: every command pays at start for what
# it imports.
if TYPE_CHECKING:
    from r2env.parsers.conda_lock import CondaLockFile
    from r2env.pixi.lockfile import PixiLockFile

NAME = "pixi"


def detect(facts: RepoFacts) -> str | None:
    manifest = facts.pixi
    if manifest is None:
        return None
    unused = ("environment.yml", "environment.yaml", "requirements.txt", "Pipfile", "Pipfile.lock", "setup.py", "uv.lock", "poetry.lock", "runtime.txt")
    lock = f" and {manifest.lockfile}" if facts.has("pixi.lock") else f", without {manifest.lockfile}"
    return f"found {manifest.path}{lock}{ignored_note(facts, unused)}"


def _locked(lock: CondaLockFile | None) -> PixiLockFile:
    from r2env.pixi.lockfile import PixiLockFile
    if not isinstance(lock, PixiLockFile):
        raise SpecError("a pixi project is installed from pixi.lock, and none was read", "run `pixi lock` and commit pixi.lock")
    return lock


def environment(facts: RepoFacts, lock: CondaLockFile | None) -> tuple[Interpreter, str]:
    """The locked environment's Python; the notebook server runs in the environment, as for conda."""
    from r2env.conda.locking import SERVER_MIN_PYTHON, hosts_server
    pixi = _locked(lock)
    version = pixi.python_version
    if not version:
        raise SpecError(f"{pixi.path}: environment {pixi.environment!r} has no python package, and the notebook server runs in it",
                        "add python to the environment's dependencies (e.g. `python = \"3.12.*\"`) and run `pixi lock`")
    if not hosts_server(version):
        minimum = ".".join(map(str, SERVER_MIN_PYTHON))
        raise SpecError(f"{pixi.path}: environment {pixi.environment!r} has python {version}, older than the notebook server needs ({minimum})",
                        f"use python {minimum} or newer in the pixi environment")
    return Interpreter(version, "conda", f"{pixi.path} environment {pixi.environment!r} has python {version}; the notebook server runs in it"), conda.CONDA_PREFIX


def _has_server(lock: PixiLockFile, requirement: str) -> bool:
    name = requirement.split("=", 1)[0].split("<", 1)[0].split(">", 1)[0].strip().lower()
    return any(p.name == name for p in lock.packages) or any(p.name == name for p in lock.pypi)


def _build_stage(context: PlanContext, lock: PixiLockFile) -> BuildStage:
    """As the conda buildpack's stage, with the PyPI files and the server installed by pip driving the environment's Python."""
    from r2env.conda.locking import RATTLER_REQUIREMENT
    from r2env.conda.packages import PACKAGES_DIR
    from r2env.pixi.packages import PYPI_DIR, package_image
    section = context.lock.conda if context.lock is not None else None
    python = f"{conda.CONDA_PREFIX}/bin/python"
    # Without r2env.lock the environment is still exactly pixi.lock's; only the installer and server are unpinned.
    installer = rattler_install(NAME, section.installer if section is not None else (), RATTLER_REQUIREMENT)
    image = package_image(lock)
    steps: list[Step] = [
        apt_install(("ca-certificates", "python3", "python3-venv"), NAME, "install Python for the conda installer", context.lock.apt if context.lock else None),
        installer,
        Step(kind="copy", stage=Stage.DEPENDENCIES, buildpack=NAME, description=f"the locked conda and PyPI packages ({image})",
             inputs=(PACKAGES_DIR,), source=image, user="root"),
        Step(kind="run", stage=Stage.DEPENDENCIES, buildpack=NAME,
             description=f"install {len(lock.packages)} locked conda packages of environment {lock.environment!r} into {conda.CONDA_PREFIX} (no solve; hashes checked)",
             script=f"{CONDA_INSTALLER_PYTHON} {PACKAGES_DIR}/conda_installer.py {PACKAGES_DIR} {conda.CONDA_PREFIX}"),
    ]
    if lock.pypi:
        steps.append(Step(kind="run", stage=Stage.DEPENDENCIES, buildpack=NAME,
                          description=f"install {len(lock.pypi)} locked PyPI packages from {lock.path} (their files, sha256 checked; no index)",
                          script=uv_pip(f"--no-index --no-deps --require-hashes -r {PYPI_DIR}/requirements.txt", python, local_files=True), caches=("uv",)))
    if section is not None and section.server:
        steps.append(locked_install(section.server, Stage.DEPENDENCIES, NAME,
                                    f"add the notebook server to the environment ({context.server_requirement}, {len(section.server)} locked packages)",
                                    python=python, user="root"))
    elif section is None and not _has_server(lock, context.server_requirement):
        steps.append(Step(kind="run", stage=Stage.DEPENDENCIES, buildpack=NAME,
                          description=f"add the notebook server to the environment ({context.server_requirement}; r2env lock would pin its closure)",
                          script=uv_pip(f"{shlex.quote(context.server_requirement)} -c {PYPI_DIR}/constraints.txt", python),
                          secrets=("ca", "proxy", "index"), caches=("uv",)))
    return BuildStage(conda.BUILD_STAGE, tuple(steps))


def contribute(facts: RepoFacts, context: PlanContext) -> Contribution:
    manifest = facts.pixi
    assert manifest is not None  # detect() matched
    lock = _locked(context.conda)
    chosen = manifest.environment(lock.environment)
    declared: tuple[tuple[str, tuple[str, ...]], ...] = (("conda", tuple(f"{n} {s}".strip() for n, s in chosen.conda)),)
    if chosen.pypi:
        declared += (("pypi", tuple(f"{n}{s}" for n, s in chosen.pypi)),)
    steps = system_steps(context, NAME, debian_python=False)
    # The conda buildpack's copy of the prefix and its PATH, credited to pixi.
    steps += tuple(dataclasses.replace(step, buildpack=NAME) for step in conda._copy_environment(conda.CONDA_PREFIX))
    steps += (Step(kind="env", stage=Stage.DEPENDENCIES, buildpack=NAME, description="the pixi environment's name",
                   env=(("PIXI_ENVIRONMENT_NAME", lock.environment),)),)
    return Contribution(steps=steps, packages=declared, build_stages=(_build_stage(context, lock),))


BUILDPACK = Buildpack(NAME, Role.PRIMARY, detect, contribute, environment)
