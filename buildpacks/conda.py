"""conda: environment.yml, installed exactly from its conda-lock.yml (no solve at build time).

Layout (documented in docs/conda.md), as repo2docker does it:
- the declared environment lives at /srv/conda/envs/notebook, first on PATH, and the notebook server runs in it,
  so Jupyter extensions the environment declares (voila, jupyter-server-proxy, ipywidgets…) are active and the
  default `python3` kernel is the environment's. JupyterLab is added unless the environment declares it: its
  closure is resolved for the environment's Python around the environment's own packages and hash-pinned in
  r2env.lock (`conda.server`), since conda channels need not carry it;
- an environment whose Python is too old for the server (below 3.9) is instead the kernel of a server in r2env's
  own /srv/venv (Debian's Python), as repo2docker does below its cutoff; its ipykernel is added and registered;
- the environment is installed by py-rattler in a build stage, the pip: packages and the server with pip there too;
  the image gets only the prefix (copied to the same path, as conda prefixes are not relocatable), not the
  installer or its package cache.
repo2docker's rules apply beside it: requirements.txt and runtime.txt are ignored (environment.yml pins Python
itself), apt.txt, postBuild and start compose as with any primary buildpack."""

from __future__ import annotations

import dataclasses
import re
import shlex
from typing import TYPE_CHECKING

from buildpacks.steps import CONDA_INSTALLER_PYTHON, ignored_note, locked_install, python_foundation, rattler_install, system_steps
from r2env.apt_install import apt_install
from r2env.buildpack import Buildpack, Contribution, PlanContext, Role
from r2env.inspect import RepoFacts
from r2env.interpreter import DEBIAN_PYTHON
from r2env.spec import CONDA_DIR, BuildStage, Interpreter, Stage, Step

# r2env/conda/ loads only when a conda environment is planned: every command pays at start for what it imports.
if TYPE_CHECKING:
    from r2env.parsers.conda_lock import CondaLockFile

CONDA_PREFIX = f"{CONDA_DIR}/envs/notebook"
SERVER_PREFIX = "/srv/venv"  # r2env's own environment, for an environment too old to run the server
BUILD_STAGE = "r2env-conda"
_KERNEL_NAME = "python3"  # replaces the server environment's own kernel: the user's environment is the one they see


def detect(facts: RepoFacts) -> str | None:
    environment = facts.conda_environment
    if environment is None:
        return None
    # repo2docker's conda buildpack reads environment.yml alone (its Python buildpack installs the rest).
    if environment.synthesized:
        pip = f" and {facts.path('requirements.txt')} as its pip: packages" if facts.has("requirements.txt") else ""
        return (f"found {environment.path} asking for Python {environment.python}, which only conda provides: a conda environment "
                f"with {', '.join(environment.dependencies)}{pip}, as repo2docker builds it{ignored_note(facts, ('setup.py', 'pyproject.toml'))}")
    unused = ("requirements.txt", "Pipfile", "Pipfile.lock", "setup.py", "pyproject.toml", "uv.lock", "poetry.lock")
    added = f" (an R environment: {', '.join(environment.added_for_r)} is added for the R kernel, as repo2docker)" if environment.added_for_r else ""
    return f"found {environment.path}{added}{ignored_note(facts, unused)}"


def _declared_python(spec: str) -> str:
    """X.Y when environment.yml's python spec names one minor version (3.11, =3.11, 3.11.4, 3.11.*), else ""."""
    match = re.fullmatch(r"=*\s*(\d+)\.(\d+)(?:\.[\d*]+)*", spec.strip())
    return f"{match.group(1)}.{match.group(2)}" if match else ""


def environment(facts: RepoFacts, conda: CondaLockFile | None) -> tuple[Interpreter, str]:
    """The environment's Python (locked, or as environment.yml declares it) and where the server runs."""
    from r2env.conda.locking import SERVER_MIN_PYTHON, hosts_server
    declared = facts.conda_environment
    assert declared is not None  # detect() matched
    version = conda.python_version if conda else _declared_python(declared.python)
    source = conda.path if conda else declared.path
    if not version:
        return Interpreter("", "conda", f"{declared.path} does not pin one Python version: the lock decides it; the notebook server runs in the environment"), CONDA_PREFIX
    if hosts_server(version):
        return Interpreter(version, "conda", f"{source} has python {version}; the notebook server runs in the environment"), CONDA_PREFIX
    return Interpreter(version, "conda", f"{source} has python {version}, older than the notebook server needs ({'.'.join(map(str, SERVER_MIN_PYTHON))}): "
                       f"the server runs in {SERVER_PREFIX} with Debian's Python, the environment is its kernel"), SERVER_PREFIX


def _unlocked(path: str) -> Step:
    # A conda environment is built only from its lock; a Dockerfile rendered without one says so when built.
    message = f"r2env: {path} is built from its lock: run \\`r2env lock\\` first (or \\`r2env build --relock\\`)"
    return Step(kind="run", stage=Stage.DEPENDENCIES, buildpack="conda", description=f"install {path} (needs r2env lock)",
                script=f"echo \"{message}\" >&2 && exit 1")


def _build_stage(context: PlanContext, hosting: bool) -> BuildStage:
    """py-rattler installs the locked conda packages; with the server in the environment, pip then installs the
    pip: packages and the server into it here too (pip --python drives the environment's own interpreter)."""
    from r2env.conda.locking import RATTLER_REQUIREMENT
    from r2env.conda.packages import PACKAGES_DIR, package_image
    assert context.lock is not None and context.lock.conda is not None and context.conda is not None
    conda, section = context.conda, context.lock.conda
    image = package_image(conda)
    steps: list[Step] = [
        apt_install(("ca-certificates", "python3", "python3-venv"), "conda", "install Python for the conda installer", context.lock.apt),
        rattler_install("conda", section.installer, RATTLER_REQUIREMENT),
        Step(kind="copy", stage=Stage.DEPENDENCIES, buildpack="conda", description=f"the locked conda packages ({image})",
             inputs=(PACKAGES_DIR,), source=image, user="root"),
        Step(kind="run", stage=Stage.DEPENDENCIES, buildpack="conda",
             description=f"install {len(conda.packages)} locked conda packages into {CONDA_PREFIX} (no solve; hashes checked)",
             script=f"{CONDA_INSTALLER_PYTHON} {PACKAGES_DIR}/conda_installer.py {PACKAGES_DIR} {CONDA_PREFIX}"),
    ]
    if hosting and (conda.pip or section.server):
        # One uv run for both (a conda-lock.yml edit reruns the conda install before them anyway): a pin both
        # name is the server's, as when the server's step followed the pip: packages' and reinstalled it.
        server = {package.name for package in section.server}
        packages = [package for package in conda.pip if package.name not in server] + list(section.server)
        what = [f"the pip: packages ({len(conda.pip)} locked, from {conda.path})"] if conda.pip else []
        what += [f"the notebook server ({context.server_requirement}, {len(section.server)} locked packages)"] if section.server else []
        steps.append(locked_install(packages, Stage.DEPENDENCIES, "conda", f"install {' and '.join(what)} into the environment",
                                    python=f"{CONDA_PREFIX}/bin/python", user="root"))
    return BuildStage(BUILD_STAGE, tuple(steps))


def _copy_environment(kernel_prefix: str) -> tuple[Step, ...]:
    return (
        Step(kind="copy", stage=Stage.DEPENDENCIES, buildpack="conda", description=f"the conda environment ({CONDA_PREFIX})",
             inputs=(CONDA_DIR,), source=BUILD_STAGE, user="user"),
        Step(kind="env", stage=Stage.DEPENDENCIES, buildpack="conda", description="the conda environment comes first on PATH",
             env=(("CONDA_DIR", CONDA_DIR), ("CONDA_PREFIX", CONDA_PREFIX), ("KERNEL_PYTHON_PREFIX", kernel_prefix),
                  ("PATH", f"{CONDA_PREFIX}/bin:$PATH"))),
    )


def _kernel_steps(facts: RepoFacts, context: PlanContext) -> tuple[Step, ...]:
    """An environment too old to run the server: its pip: packages and ipykernel, installed with the server
    environment's pip driving the environment's Python, and the environment registered as the `python3` kernel."""
    assert context.lock is not None and context.lock.conda is not None and context.conda is not None
    environment = facts.conda_environment
    assert environment is not None
    conda = context.conda
    # The environment's own pip when it has one (a pip that still runs on Python 2.7 or 3.6); else the server
    # environment's pip drives the environment's interpreter (pip --python).
    pip = (f"$(test -x {CONDA_PREFIX}/bin/pip && echo {CONDA_PREFIX}/bin/pip "
           f"|| echo {context.env_prefix}/bin/python -m pip --python {CONDA_PREFIX}/bin/python) install")
    steps = list(_copy_environment(CONDA_PREFIX))
    if conda.pip:
        steps.append(locked_install(conda.pip, Stage.DEPENDENCIES, "conda",
                                    f"install the pip: packages of {environment.path} ({len(conda.pip)} locked, from {conda.path})", pip_command=pip))
    kernel = context.lock.conda.kernel
    if kernel:
        steps.append(locked_install(kernel, Stage.DEPENDENCIES, "conda", f"install ipykernel into the environment ({len(kernel)} locked packages)", pip_command=pip))
    if kernel or environment.declares("ipykernel"):
        display = shlex.quote(f"Python {conda.python_version} ({environment.name or 'environment.yml'})")
        steps.append(Step(
            kind="run", stage=Stage.DEPENDENCIES, buildpack="conda", description="register the environment as the server's python3 kernel",
            script=f"{CONDA_PREFIX}/bin/python -m ipykernel install --prefix {context.env_prefix} --name {_KERNEL_NAME} --display-name {display}",
            user="user",
        ))
    return tuple(steps)


def _r_kernel(conda: CondaLockFile, context: PlanContext) -> tuple[Step, ...]:
    """An environment with IRkernel (r2env adds it to R environments, as repo2docker) is the server's R kernel too."""
    if not any(package.name == "r-irkernel" for package in conda.packages):
        return ()
    return (Step(kind="run", stage=Stage.DEPENDENCIES, buildpack="conda", description="register the environment's R as the server's R kernel (IRkernel)",
                 script=f"PATH={context.env_prefix}/bin:$PATH {CONDA_PREFIX}/bin/R --quiet --no-save -e \"IRkernel::installspec(prefix = '{context.env_prefix}')\"",
                 user="user"),)


def contribute(facts: RepoFacts, context: PlanContext) -> Contribution:
    environment = facts.conda_environment
    assert environment is not None  # detect() matched
    hosting = context.env_prefix == CONDA_PREFIX
    if hosting:
        steps = system_steps(context, "conda", debian_python=False)
    else:
        # The server's own environment gets Debian's Python, whatever the environment's is.
        debian = Interpreter(DEBIAN_PYTHON.get(context.suite, "3.11"), "debian", "the notebook server's own environment")
        steps = python_foundation(dataclasses.replace(context, interpreter=debian), "conda")
    declared = (("conda", environment.dependencies),) + ((("conda-pip", environment.pip),) if environment.pip else ())
    if context.lock is None or context.lock.conda is None or context.conda is None:
        return Contribution(steps=steps + (_unlocked(environment.path),), packages=declared)
    steps += _copy_environment(context.env_prefix) if hosting else _kernel_steps(facts, context)
    steps += _r_kernel(context.conda, context)
    return Contribution(steps=steps, packages=declared, build_stages=(_build_stage(context, hosting),))


BUILDPACK = Buildpack("conda", Role.PRIMARY, detect, contribute, environment)
