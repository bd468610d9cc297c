"""Locking a conda environment: the real conda-lock CLI writes conda-lock.yml; r2env checks and reads it.

conda-lock always asks an external solver (micromamba, mamba or conda) for the conda part and resolves the
`pip:` part itself, with hashes. Side effects go through the injected runner, like every resolver here."""

from __future__ import annotations

import platform as host_platform
import posixpath
import re
import shutil
import sys
import tempfile
import urllib.parse
from pathlib import Path
from typing import Callable, Sequence

from r2env.errors import LockError
from r2env.parsers.conda_lock import CondaLockFile, parse_conda_lock
from r2env.parsers.environment import DEFAULT_CHANNELS, CondaEnvironment
from r2env.lock.resolve import Runner
from r2env.reading import LOCK_LIMIT, read_text

LOCK_NAME = "conda-lock.yml"
# conda-lock is one of r2env's dependencies: run the one installed beside r2env, whatever is on PATH.
CONDA_LOCK = (sys.executable, "-m", "conda_lock")
# The py-rattler the build stage installs with (the version r2env is tested with).
RATTLER_REQUIREMENT = "py-rattler==0.28.0"
# The notebook server r2env installs (JupyterLab 4) needs Python 3.9 or newer; an environment with an older Python
# is the kernel of a server in r2env's own /srv/venv instead, as repo2docker does below its cutoff (3.7).
SERVER_MIN_PYTHON = (3, 9)
_SOLVERS = (("micromamba", "--micromamba"), ("mamba", "--mamba"), ("conda", "--no-mamba"))


def hosts_server(python_version: str) -> bool:
    """Whether an environment with this Python ("X.Y"; "" = not known yet, so a current one) runs the notebook server."""
    if not python_version:
        return True
    major, _, minor = python_version.partition(".")
    return (int(major), int(minor or 0)) >= SERVER_MIN_PYTHON


def conda_platform(machine: str = "") -> str:
    machine = machine or host_platform.machine()
    return {"x86_64": "linux-64", "amd64": "linux-64", "aarch64": "linux-aarch64", "arm64": "linux-aarch64"}.get(machine.lower(), f"linux-{machine}")


def solver_arguments(which: Callable[[str], str | None] | None = None) -> list[str]:
    """conda-lock's flags for the first solver on PATH. Without one it would try to download conda-standalone."""
    which = which or shutil.which
    for name, flag in _SOLVERS:
        path = which(name)
        if path:
            return [flag, "--conda", path]
    raise LockError(
        "conda-lock needs a conda solver, and none of micromamba, mamba or conda is on PATH",
        "install micromamba (https://mamba.readthedocs.io) and run `r2env lock` again",
    )


def channels_for(environment: CondaEnvironment, override: Sequence[str]) -> tuple[str, ...]:
    return tuple(override) or environment.channels or DEFAULT_CHANNELS


def check_channels(channels: Sequence[str], source: str) -> None:
    """A local channel is checked here, so a typo reads as one line instead of a solver's stack trace."""
    for channel in channels:
        if not channel.startswith("file://"):
            continue
        directory = Path(urllib.parse.unquote(urllib.parse.urlparse(channel).path))
        if not (directory / "noarch" / "repodata.json").is_file():
            raise LockError(
                f"{source}: channel {channel} is not a conda channel ({directory}/noarch/repodata.json does not exist)",
                "give the folder of an indexed channel (one with noarch/ and linux-64/ subdirectories)",
            )


def conda_lock_argv(
    environment_file: Path, lockfile: Path, platform: str, channels: Sequence[str], solver: Sequence[str], pypi_lookup: str = "",
    added: Path | None = None,
) -> list[str]:
    """`added`: an environment file of r2env's own additions, which conda-lock merges with the user's."""
    files = [environment_file, *([added] if added else [])]
    argv = [*CONDA_LOCK, "lock", *solver, *(word for file in files for word in ("-f", str(file))), "-p", platform, "--lockfile", str(lockfile)]
    argv += [word for channel in channels for word in ("-c", channel)]
    # conda-lock maps pip names to conda names with a file it downloads; an air-gapped site gives its own copy.
    return argv + (["--pypi_to_conda_lookup_file", pypi_lookup] if pypi_lookup else [])


_NOISE = re.compile(r"^(Locking dependencies|INFO:|WARNING:|Traceback|  File |    |\S+Error: Command|subprocess\.|During handling|The above exception)")


def solver_explanation(output: str) -> str:
    """The lines of conda-lock's output that say why locking failed (not its traceback)."""
    lines = [line.strip() for line in output.splitlines() if line.strip() and not _NOISE.match(line)]
    # A solver's JSON answer repeats its message; the plain lines say it once.
    lines = [line for line in lines if not line.startswith("{")] or lines
    unique = list(dict.fromkeys(lines))
    return " ".join(unique[-4:])[:600] or "conda-lock failed without saying why"


def lock_environment(
    root: Path, environment: CondaEnvironment, channels: Sequence[str], platform: str, runner: Runner,
    pypi_lookup: str = "", which: Callable[[str], str | None] | None = None,
) -> tuple[str, CondaLockFile]:
    """Run conda-lock into a scratch file (nothing is written beside the environment here) and return its text."""
    check_channels(channels, environment.path)
    solver = solver_arguments(which)
    with tempfile.TemporaryDirectory(prefix="r2env-conda-lock-") as scratch:
        lockfile = Path(scratch) / LOCK_NAME
        source = root / environment.path
        if environment.synthesized:
            source = Path(scratch) / "environment.yml"
            source.write_text(environment.to_yaml(), encoding="utf-8")
        added = None
        if environment.added_for_r:
            # r2env's additions go in a file of their own, which conda-lock merges: the user's file is read as
            # written (its pip: section included). It names no channels: conda-lock requires each file's channels
            # to end the first file's, and the user's file (or -c) decides them.
            added = Path(scratch) / "r2env-added.yml"
            added.write_text("dependencies:\n" + "".join(f"  - {spec}\n" for spec in environment.added_for_r), encoding="utf-8")
        argv = conda_lock_argv(source, lockfile, platform, channels, solver, pypi_lookup, added)
        try:
            result = runner(argv, root)
        except FileNotFoundError:
            raise LockError("conda-lock cannot be run, and r2env locks conda environments with it", "pip install conda-lock") from None
        if "No module named conda_lock" in (result.stderr or ""):
            raise LockError("conda-lock is not installed, and r2env locks conda environments with it", "pip install conda-lock")
        if result.returncode != 0 or not lockfile.is_file():
            explanation = solver_explanation((result.stderr or "") + "\n" + (result.stdout or ""))
            raise LockError(f"{environment.path}: cannot lock the conda environment: {explanation}", "fix the specs or channels named above")
        text = read_text(lockfile, LOCK_NAME, LOCK_LIMIT, LockError)
    return text, parse_conda_lock(text, posixpath.join(posixpath.dirname(environment.path), LOCK_NAME), platform)
