"""conda: environment.yml, installed exactly from its conda-lock.yml (no solve at build time).

Layout (documented in docs/conda.md):
- the notebook server stays in r2env's own Python environment (/srv/venv, JupyterLab locked like any repo's),
  since conda channels need not carry it (the ones here do not);
- the declared environment lives at /srv/conda/envs/notebook, first on PATH, and is the kernel the user sees:
  its ipykernel (added, hash-locked, unless the environment declares one) is registered as the server's
  `python3` kernel;
- the environment is installed by py-rattler in a build stage; the image gets only the prefix (copied to the
  same path, as conda prefixes are not relocatable), not the installer or its package cache.
repo2docker's rules apply beside it: requirements.txt and runtime.txt are ignored (environment.yml pins
Python itself), apt.txt, postBuild and start compose as with any primary buildpack."""

from __future__ import annotations

import shlex

from buildpacks.steps import apt_install, ignored_note, locked_install, python_foundation
from r2env.buildpack import Buildpack, Contribution, PlanContext, Role
from r2env.conda_packages import PACKAGES_DIR, package_image
from r2env.inspect import RepoFacts
from r2env.spec import BuildStage, Stage, Step

CONDA_DIR = "/srv/conda"
CONDA_PREFIX = f"{CONDA_DIR}/envs/notebook"
BUILD_STAGE = "r2env-conda"
_INSTALLER_VENV = "/opt/r2env-rattler"
_KERNEL_NAME = "python3"  # replaces the server environment's own kernel: the user's environment is the one they see


def detect(facts: RepoFacts) -> str | None:
    environment = facts.conda_environment
    if environment is None:
        return None
    # repo2docker's conda buildpack reads environment.yml alone (its Python buildpack installs the rest).
    unused = ("requirements.txt", "Pipfile", "Pipfile.lock", "setup.py", "pyproject.toml", "uv.lock", "poetry.lock")
    return f"found {environment.path}{ignored_note(facts, unused)}"


def _unlocked(path: str) -> Step:
    # A conda environment is built only from its lock; a Dockerfile rendered without one says so when built.
    message = f"r2env: {path} is built from its lock: run \\`r2env lock\\` first (or \\`r2env build --relock\\`)"
    return Step(kind="run", stage=Stage.DEPENDENCIES, buildpack="conda", description=f"install {path} (needs r2env lock)",
                script=f"echo \"{message}\" >&2 && exit 1")


def _build_stage(context: PlanContext) -> BuildStage:
    assert context.lock is not None and context.lock.conda is not None and context.conda is not None
    image = package_image(context.conda)
    installer_python = f"{_INSTALLER_VENV}/bin/python"
    return BuildStage(BUILD_STAGE, (
        apt_install(("ca-certificates", "python3", "python3-venv"), "conda", "install Python for the conda installer", context.lock.apt),
        Step(kind="run", stage=Stage.SYSTEM, buildpack="conda", description=f"create {_INSTALLER_VENV} for py-rattler",
             script=f"python3 -m venv {_INSTALLER_VENV}"),
        locked_install(context.lock.conda.installer, Stage.SYSTEM, "conda",
                       f"install py-rattler ({len(context.lock.conda.installer)} locked packages)", pip=f"{_INSTALLER_VENV}/bin/pip", user="root"),
        Step(kind="copy", stage=Stage.DEPENDENCIES, buildpack="conda", description=f"the locked conda packages ({image})",
             inputs=(PACKAGES_DIR,), source=image, user="root"),
        Step(kind="run", stage=Stage.DEPENDENCIES, buildpack="conda",
             description=f"install {len(context.conda.packages)} locked conda packages into {CONDA_PREFIX} (no solve; hashes checked)",
             script=f"{installer_python} {PACKAGES_DIR}/conda_installer.py {PACKAGES_DIR} {CONDA_PREFIX}"),
    ))


def _environment_steps(facts: RepoFacts, context: PlanContext) -> tuple[Step, ...]:
    assert context.lock is not None and context.lock.conda is not None and context.conda is not None
    environment = facts.conda_environment
    assert environment is not None
    conda = context.conda
    # The environment's own Python runs pip, with the server environment's pip (a conda env need not have one).
    pip = f"{context.env_prefix}/bin/python -m pip --python {CONDA_PREFIX}/bin/python"
    steps: list[Step] = [
        Step(kind="copy", stage=Stage.DEPENDENCIES, buildpack="conda", description=f"the conda environment ({CONDA_PREFIX})",
             inputs=(CONDA_DIR,), source=BUILD_STAGE, user="user"),
        Step(kind="env", stage=Stage.DEPENDENCIES, buildpack="conda", description="the conda environment comes first on PATH",
             env=(("CONDA_DIR", CONDA_DIR), ("CONDA_PREFIX", CONDA_PREFIX), ("KERNEL_PYTHON_PREFIX", CONDA_PREFIX),
                  ("PATH", f"{CONDA_PREFIX}/bin:$PATH"))),
    ]
    if conda.pip:
        steps.append(locked_install(conda.pip, Stage.DEPENDENCIES, "conda",
                                    f"install the pip: packages of {environment.path} ({len(conda.pip)} locked, from {conda.path})", pip=pip))
    kernel = context.lock.conda.kernel
    if kernel:
        steps.append(locked_install(kernel, Stage.DEPENDENCIES, "conda", f"install ipykernel into the environment ({len(kernel)} locked packages)", pip=pip))
    if conda.python_version and (kernel or environment.declares("ipykernel")):
        display = shlex.quote(f"Python {conda.python_version} ({environment.name or 'environment.yml'})")
        steps.append(Step(
            kind="run", stage=Stage.DEPENDENCIES, buildpack="conda", description="register the environment as the server's python3 kernel",
            script=f"{CONDA_PREFIX}/bin/python -m ipykernel install --prefix {context.env_prefix} --name {_KERNEL_NAME} --display-name {display}",
            user="user",
        ))
    return tuple(steps)


def contribute(facts: RepoFacts, context: PlanContext) -> Contribution:
    environment = facts.conda_environment
    assert environment is not None  # detect() matched
    steps = python_foundation(context, "conda")
    declared = (("conda", environment.dependencies),) + ((("conda-pip", environment.pip),) if environment.pip else ())
    if context.lock is None or context.lock.conda is None or context.conda is None:
        return Contribution(steps=steps + (_unlocked(environment.path),), packages=declared)
    return Contribution(steps=steps + _environment_steps(facts, context), packages=declared, build_stages=(_build_stage(context),))


BUILDPACK = Buildpack("conda", Role.PRIMARY, detect, contribute)
