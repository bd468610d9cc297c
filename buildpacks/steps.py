"""Small step functions the buildpacks share (instead of a subclass chain)."""

from __future__ import annotations

import shlex
from typing import Iterable, Mapping, Sequence

from r2env.apt_install import APT_SECRETS, apt_install
from r2env.buildpack import PlanContext
from r2env.inspect import RepoFacts
from r2env.lock.lockfile import LockedPackage
from r2env.parsers.requirements import RequirementsFile
from r2env.spec import BuildSecret, Cache, Stage, Step, StepUser
from r2env.uv_installer import DEBIAN_PIP_INSTALL, DEBIAN_WHEELS, UV

# Kept minimal so images stay small: TLS roots, plus Debian's interpreter when it is the one used.
# git joins only when a requirement needs it (git+ URLs); anything else belongs in apt.txt.
_DEBIAN_PYTHON = ("python3", "python3-venv")
_SYSTEM_PACKAGES = ("ca-certificates",)


# What each kind of download gets of the fetch settings (r2env/build_secrets.py); nothing else can read them
# (apt's: r2env/apt_install.py).
PIP_SECRETS: tuple[BuildSecret, ...] = ("ca", "proxy", "index")


def ignored_note(facts: RepoFacts, unused: Iterable[str]) -> str:
    """" (A, B ignored, as in repo2docker)" for declaration files present that the chosen buildpack does not read,
    so no file is ever ignored without a word."""
    names = [facts.path(name) for name in unused if facts.has(name)] + list(facts.ignored)
    return f" ({', '.join(names)} ignored, as in repo2docker)" if names else ""


# The environment the notebook server runs from (the image's ENV names it): where installs go unless told otherwise.
SERVER_PYTHON = '"$NB_PYTHON_PREFIX/bin/python"'
# As pip does by default, and deterministically: with SOURCE_DATE_EPOCH set (r2env/render.py) the .pyc files are
# checked-hash ones (PEP 552), the same bytes in every build. uv compiles only what the command installed.
_COMPILE = "--compile-bytecode"


def uv_pip(arguments: str, python: str = SERVER_PYTHON, compile_bytecode: bool = True, local_files: bool = False) -> str:
    """The shell command that installs with r2env's uv (r2env/uv_installer.py) into the environment of `python`.
    `local_files`: it installs files or folders from the disk, whose install time uv notes in uv_cache.json;
    removed, the environment is the same tree in every build."""
    command = f"{UV} pip install --python {python}" + (f" {_COMPILE}" if compile_bytecode else "") + f" {arguments}"
    if local_files:
        command += f" && find {python.replace('/bin/python', '')}/lib -path '*.dist-info/uv_cache.json' -delete"
    return command


def locked_install(
    packages: Sequence[LockedPackage], stage: Stage, buildpack: str, description: str, python: str = SERVER_PYTHON,
    user: StepUser = "user", pip_command: str = "",
) -> Step:
    """Install exact pins, hash-checked, nothing else (--no-deps): the lock already holds the whole closure.
    The pins are the step's own text, so the layer cache follows the lock. `pip_command`: install with that pip
    command (`... pip install [options]`) instead of uv (an environment whose Python uv cannot drive, a tool's folder)."""
    # One package per Dockerfile line: BuildKit refuses physical lines over 64 KiB.
    lines = " \\\n    ".join(shlex.quote(p.requirement_line()) for p in packages)
    path = f"/tmp/r2env-{stage.name.lower()}.txt"
    install = f"{pip_command} --require-hashes --no-deps -r {path}" if pip_command else uv_pip(f"--require-hashes --no-deps -r {path}", python)
    return Step(
        kind="run",
        stage=stage,
        buildpack=buildpack,
        description=description,
        script=f"printf '%s\\n' \\\n    {lines} \\\n    > {path} && {install} && rm {path}",
        user=user,
        secrets=PIP_SECRETS,
        caches=("pip",) if pip_command else ("uv",),
    )


def system_steps(context: PlanContext, buildpack: str, needs_git: bool = False, debian_python: bool = True) -> tuple[Step, ...]:
    # A uv-managed CPython still needs Debian's python3 once, to install uv itself; an environment that brings
    # its own Python (conda) needs none.
    packages = _SYSTEM_PACKAGES + (_DEBIAN_PYTHON if debian_python else ()) + (("git",) if needs_git else ())
    pins = context.lock.apt if context.lock else None
    user = shlex.quote(context.user_name)
    uid = context.user_id
    return (
        apt_install(packages, buildpack, "install system packages", pins),
        Step(
            kind="run",
            stage=Stage.SYSTEM,
            buildpack=buildpack,
            description=f"create user {context.user_name} ({uid})",
            script=(
                f"groupadd --gid {uid} {user} && "
                f"useradd --no-log-init --create-home --shell /bin/bash --uid {uid} --gid {uid} {user} && "
                f"install -d -o {uid} -g {uid} {shlex.quote(context.env_prefix)} {shlex.quote(context.repo_dir)}"
            ),
        ),
    )


def _seed_pip(prefix: str, version: str) -> str:
    """pip (and setuptools below Python 3.12, as `python -m venv` does) into a venv made by uv, from Debian's own
    wheels: no download, and the same pip `python3 -m venv` would give."""
    seeds = "pip setuptools" if tuple(int(part) for part in version.split(".")[:2]) < (3, 12) else "pip"
    # Not compiled (as `uv venv --seed` leaves them; 0.7 s less per cold build): Python caches pip's bytecode the
    # first time pip runs in a container. No Python start of the build writes timestamped .pyc files meanwhile (PYTHONDONTWRITEBYTECODE,
    # r2env/render.py), so the tree stays the same in every build.
    return uv_pip(f"--no-index --find-links {DEBIAN_WHEELS} {seeds}", f"{prefix}/bin/python", compile_bytecode=False, local_files=True)


def interpreter_steps(context: PlanContext, buildpack: str) -> tuple[Step, ...]:
    prefix = shlex.quote(context.env_prefix)
    version = context.interpreter.version
    if context.interpreter.source == "debian":
        return (
            Step(
                kind="run",
                stage=Stage.INTERPRETER,
                buildpack=buildpack,
                description=f"create the Python {version} environment at {context.env_prefix}",
                script=(
                    f"{UV} venv --allow-existing --python /usr/bin/python{version} {prefix} && {_seed_pip(prefix, version)} && "
                    f"{prefix}/bin/python -c 'import sys; assert sys.version.startswith(\"{version}.\"), sys.version'"
                ),
                user="user",
                caches=("uv",),
            ),
        )
    # Debian ships no such Python: a uv-managed standalone CPython build (python-build-standalone).
    hint = (
        f"r2env: could not install CPython {version}: the download of a standalone build failed. "
        f"Set --python-install-mirror to a reachable mirror of python-build-standalone, "
        f"or ask for a Python Debian ships (python-3.11, python-3.13) in runtime.txt."
    )
    return (
        Step(
            kind="run",
            stage=Stage.INTERPRETER,
            buildpack=buildpack,
            description=f"install CPython {version} (uv-managed standalone build) at {context.env_prefix}",
            script=(
                f"{{ UV_PYTHON_INSTALL_DIR=/opt/r2env-python {UV} python install {version} "
                f"|| {{ echo {shlex.quote(hint)} >&2; exit 1; }}; }} && "
                f"UV_PYTHON_INSTALL_DIR=/opt/r2env-python {UV} venv --allow-existing --python {version} --python-preference only-managed {prefix} && "
                f"{_seed_pip(prefix, version)} && "
                f"chown -R {context.user_id}:{context.user_id} {prefix} /opt/r2env-python"
            ),
            secrets=(*PIP_SECRETS, "python-mirror"),  # uv downloads CPython
            caches=("uv",),
        ),
    )


RATTLER_DIR = "/opt/r2env-rattler"  # py-rattler for a build stage's conda installer (PYTHONPATH names it)
CONDA_INSTALLER_PYTHON = f"PYTHONPATH={RATTLER_DIR} python3"


def rattler_install(buildpack: str, packages: Sequence[LockedPackage], requirement: str) -> Step:
    """py-rattler for a build stage's conda installer: the locked `packages` (hash-checked), or `requirement`
    without a lock. pip runs from Debian's own wheel into a folder, as uv itself is fetched
    (r2env/uv_installer.py): with uv, the stage would wait for uv's stage on its way to the conda environment."""
    pip = f"{DEBIAN_PIP_INSTALL} --target {RATTLER_DIR}"
    if packages:
        return locked_install(packages, Stage.SYSTEM, buildpack, f"install py-rattler ({len(packages)} locked packages)", user="root", pip_command=pip)
    return Step(kind="run", stage=Stage.SYSTEM, buildpack=buildpack, description="install py-rattler (r2env lock would pin it)",
                script=f"{pip} {shlex.quote(requirement)}", secrets=PIP_SECRETS, caches=("pip",))


def pip_install(arguments: str, stage: Stage, buildpack: str, description: str, repository_code: bool = False, with_pip: bool = False) -> Step:
    """uv installs as pip would, in the repository's root as in repo2docker: `-e .` means the repository wherever
    the file is. `repository_code`: it installs the repository's own packages, so it runs their setup.py or build
    backend and gets the fetch settings without credentials (docs/user-guide.md, "What build steps can read"), and
    no shared cache (r2env/render.py): code that can write there could plant wheels for every later build.
    `with_pip`: the environment's own pip installs instead (options only pip has: docs/user-guide.md)."""
    if with_pip:
        script = f"pip install --no-cache-dir {arguments}" if repository_code else f"pip install {arguments}"
        caches: tuple[Cache, ...] = () if repository_code else ("pip",)
    else:
        # The repository's own code is not compiled: it changes with every edit, and each code-only rebuild would pay.
        script = uv_pip(arguments, compile_bytecode=not repository_code, local_files=repository_code)
        caches = ("uv",)
    return Step(
        kind="run",
        stage=stage,
        buildpack=buildpack,
        description=description,
        script=script,
        user="user",
        secrets=PIP_SECRETS,
        repository_code=repository_code,
        caches=caches,
    )


def server_steps(context: PlanContext, buildpack: str) -> tuple[Step, ...]:
    if context.lock:
        description = f"install the notebook server ({context.server_requirement}, {len(context.lock.server)} locked packages)"
        return (locked_install(context.lock.server, Stage.SERVER, buildpack, description),)
    return (
        pip_install(
            shlex.quote(context.server_requirement),
            Stage.SERVER,
            buildpack,
            f"install the notebook server ({context.server_requirement})",
        ),
    )


def python_foundation(context: PlanContext, buildpack: str, requirements: Iterable[str] = ()) -> tuple[Step, ...]:
    needs_git = any(r.startswith("git+") or "@ git+" in r for r in requirements)
    return (
        system_steps(context, buildpack, needs_git)
        + interpreter_steps(context, buildpack)
        + server_steps(context, buildpack)
    )


def copy_files(paths: Iterable[str], buildpack: str) -> tuple[Step, ...]:
    """Copy only dependency files before installing, so code edits keep the dependency layers cached."""
    inputs = tuple(sorted(set(paths)))
    if not inputs:
        return ()
    return (Step(kind="copy", stage=Stage.DEPENDENCY_FILES, buildpack=buildpack, description="copy dependency files", inputs=inputs),)


# How uv takes the options pip reads in a requirements file: these two only on its command line (in the file it
# warns and ignores them); these two not at all (pip's own preferences, ignored with a warning); and these two
# only pip has (uv refuses the file), so a file with them is installed by the environment's pip.
_UV_COMMAND_LINE_ONLY = {"--trusted-host": 1, "--pre": 0}
_PIP_PREFERENCES = {"--prefer-binary": 0, "--use-feature": 1}
_PIP_ONLY = ("--config-settings", "--global-option")


def _option_groups(options: tuple[str, ...]) -> list[tuple[str, ...]]:
    """A file's options (flat, as pip arguments) as (option, value...) groups."""
    groups: list[tuple[str, ...]] = []
    for word in options:
        if word.startswith("-") and not (groups and groups[-1][0] in _TAKES_VALUE and len(groups[-1]) == 1):
            groups.append((word,))
        else:
            groups[-1] += (word,)
    return groups


_TAKES_VALUE = {"-i", "--index-url", "--extra-index-url", "-f", "--find-links", "--no-binary", "--only-binary", "--trusted-host",
                "--use-feature", "--config-settings", "--global-option"}


def requirements_steps(files: tuple[RequirementsFile, ...], buildpack: str) -> tuple[Step, ...]:
    """Install requirements.txt (and its includes). Local references (-e .) need the repository, so they
    are installed after it is copied, while everything else is installed before (so code edits reinstall nothing)."""
    if not files:
        return ()
    main = files[0]
    name = shlex.quote(main.path)
    inputs = [path for f in files for path in (f.path, *f.constraints)]
    groups = [group for f in files for group in _option_groups(f.options)]
    with_pip = any(group[0] in _PIP_ONLY for group in groups)
    repeated = "" if with_pip else "".join(" ".join(shlex.quote(w) for w in group) + " " for group in groups if group[0] in _UV_COMMAND_LINE_ONLY)
    if not any(f.local_references for f in files):
        return copy_files(inputs, buildpack) + (
            pip_install(f"{repeated}-r {name}", Stage.DEPENDENCIES, buildpack, f"install {main.path}", with_pip=with_pip),
        )
    steps: list[Step] = []
    named = [r for f in files for r in f.requirements]
    if named:
        constraints = [a for f in files for c in f.constraints for a in ("-c", c)]
        options = [word for group in groups if with_pip or group[0] not in _PIP_PREFERENCES for word in group]
        arguments = " ".join(shlex.quote(a) for a in [*options, *constraints, *named])
        steps += copy_files(inputs, buildpack)
        steps.append(pip_install(arguments, Stage.DEPENDENCIES, buildpack, f"install the packages named in {main.path}", with_pip=with_pip))
    steps.append(pip_install(f"{repeated}-r {name}", Stage.REPO, buildpack, f"install {main.path} (local references)", repository_code=True,
                             with_pip=with_pip))
    return tuple(steps)
