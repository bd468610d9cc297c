"""inspect: read what a repository declares into RepoFacts. Pure over a RepoView; reads each file once."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from r2env.errors import SpecError
from r2env.lock import LockedPackage
from r2env.parsers.apt import parse_apt
from r2env.parsers.environment import CondaEnvironment, parse_environment
from r2env.parsers.pipfile import Pipfile, parse_pipfile, parse_pipfile_lock
from r2env.parsers.pyproject import Pyproject, parse_pyproject
from r2env.parsers.requirements import RequirementsFile, parse_requirements
from r2env.parsers.runtime import parse_runtime
from r2env.repo import RepoView

CONFIG_DIRS = ("binder", ".binder")
DECLARATION_FILES = (
    "Dockerfile", "environment.yml", "environment.yaml", "Pipfile", "Pipfile.lock", "requirements.txt",
    "setup.py", "pyproject.toml", "uv.lock", "poetry.lock", "runtime.txt", "apt.txt", "postBuild", "start",
)
# repo2docker installs the repository itself only when configuration lives at the root.
_ROOT_ONLY = ("setup.py", "pyproject.toml")


@dataclass(frozen=True)
class PythonRequest:
    version: str  # "X.Y" exactly, or "" for "any"
    specifier: str  # PEP 440 specifier set when the request is a range ("" otherwise)
    source: str  # the file that asked, "" when nothing did


@dataclass(frozen=True)
class RepoFacts:
    config_dir: str  # "" (the root), "binder" or ".binder"
    files: frozenset[str]  # declaration files present in the config dir (names as in DECLARATION_FILES)
    python: PythonRequest
    requirements: tuple[RequirementsFile, ...]  # requirements.txt first, then its includes
    apt_packages: tuple[str, ...]
    pyproject: Pyproject | None
    pipfile: Pipfile | None
    pipfile_lock: tuple[LockedPackage, ...] | None  # its pins, with hashes
    not_executable: frozenset[str]  # postBuild/start that lack the executable bit
    conda_environment: CondaEnvironment | None = None  # environment.yml (or .yaml)

    def has(self, name: str) -> bool:
        return name in self.files

    def path(self, name: str) -> str:
        """Repo-relative path of a declaration file in the config dir."""
        return posixpath.join(self.config_dir, name) if self.config_dir else name

    @property
    def installs_repository(self) -> bool:
        """requirements.txt already installs the repository itself (`-e .` or `.`)."""
        return any(
            posixpath.normpath(ref.removeprefix("-e ").split("[")[0].strip()) == "."
            for f in self.requirements for ref in f.local_references
        )

    @property
    def installable(self) -> bool:
        return self.has("setup.py") or bool(self.pyproject and self.pyproject.installable)


def find_config_dir(repo: RepoView) -> str:
    present = [name for name in CONFIG_DIRS if repo.is_dir(name)]
    if len(present) > 1:
        raise SpecError(
            "both binder/ and .binder/ exist", "keep one of them: r2env (like Binder) reads configuration from only one"
        )
    return present[0] if present else ""


def _read_requirements(repo: RepoView, path: str) -> tuple[RequirementsFile, ...]:
    seen: dict[str, RequirementsFile] = {}
    pending = [(path, "")]
    while pending:
        current, included_by = pending.pop(0)
        if current in seen:
            continue
        if not repo.is_file(current):
            raise SpecError(f"{included_by}: included file {current!r} does not exist", "fix the -r/-c path")
        parsed = parse_requirements(repo.read_text(current), current)
        seen[current] = parsed
        pending.extend((include, current) for include in parsed.includes)
        for constraint in parsed.constraints:
            if not repo.is_file(constraint):
                raise SpecError(f"{current}: constraints file {constraint!r} does not exist", "fix the -c path")
    return tuple(seen.values())


def _python_request(
    repo: RepoView, facts_path: str, pyproject: Pyproject | None, pipfile: Pipfile | None, has_runtime: bool
) -> PythonRequest:
    if has_runtime:
        return PythonRequest(parse_runtime(repo.read_text(facts_path), facts_path), "", facts_path)
    if pipfile and pipfile.python_version:
        return PythonRequest(pipfile.python_version, "", "Pipfile [requires] python_version")
    if pyproject and pyproject.requires_python:
        return PythonRequest("", pyproject.requires_python, "pyproject.toml requires-python")
    return PythonRequest("", "", "")


def inspect(repo: RepoView) -> RepoFacts:
    config_dir = find_config_dir(repo)

    def path(name: str) -> str:
        return posixpath.join(config_dir, name) if config_dir else name

    files = frozenset(
        name
        for name in DECLARATION_FILES
        if repo.is_file(path(name)) and not (config_dir and name in _ROOT_ONLY)
    )
    requirements = _read_requirements(repo, path("requirements.txt")) if "requirements.txt" in files else ()
    pyproject = parse_pyproject(repo.read_text(path("pyproject.toml")), path("pyproject.toml")) if "pyproject.toml" in files else None
    pipfile = parse_pipfile(repo.read_text(path("Pipfile")), path("Pipfile")) if "Pipfile" in files else None
    pipfile_lock = (
        parse_pipfile_lock(repo.read_text(path("Pipfile.lock")), path("Pipfile.lock")) if "Pipfile.lock" in files else None
    )
    apt_packages = parse_apt(repo.read_text(path("apt.txt")), path("apt.txt")) if "apt.txt" in files else ()
    python = _python_request(repo, path("runtime.txt"), pyproject, pipfile, "runtime.txt" in files)
    not_executable = frozenset(
        name for name in ("postBuild", "start") if name in files and not repo.is_executable(path(name))
    )
    environment_name = next((name for name in ("environment.yml", "environment.yaml") if name in files), "")
    conda_environment = parse_environment(repo.read_text(path(environment_name)), path(environment_name)) if environment_name else None
    return RepoFacts(
        config_dir, files, python, requirements, apt_packages, pyproject, pipfile, pipfile_lock, not_executable, conda_environment
    )
