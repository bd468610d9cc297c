"""inspect: read what a repository declares into RepoFacts. Pure over a RepoView; reads each file once."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from packaging.specifiers import SpecifierSet

from r2env.errors import SpecError
from r2env.lock.lockfile import LockedPackage
from r2env.parsers.apt import parse_apt
from r2env.parsers.pyproject import Pyproject, parse_pyproject
from r2env.parsers.requirements import RequirementsFile, local_path, parse_requirements
from r2env.parsers.runtime import CONDA_ONLY_VERSIONS, Runtime, names_r, parse_runtime
from r2env.repo import RepoView

# The parsers of files most repositories lack load only when the file is there: every command pays for what
# it imports at start (benchmarks/README.md, r2env's start until `docker build`).
if TYPE_CHECKING:
    from r2env.parsers.description import Description
    from r2env.parsers.environment import CondaEnvironment
    from r2env.parsers.pipfile import Pipfile
    from r2env.parsers.pixi import PixiManifest
    from r2env.parsers.renv_lock import RenvLock

CONFIG_DIRS = ("binder", ".binder")
DECLARATION_FILES = (
    "Dockerfile", "environment.yml", "environment.yaml", "Pipfile", "Pipfile.lock", "requirements.txt",
    "setup.py", "pyproject.toml", "uv.lock", "poetry.lock", "runtime.txt", "apt.txt", "postBuild", "start",
    # Read by repo2docker's Julia, Nix and R buildpacks: r2env detects them so they are never ignored silently.
    "Project.toml", "JuliaProject.toml", "REQUIRE", "default.nix", "DESCRIPTION",
    # R (buildpacks/r.py): install.R as repo2docker runs it, and renv's lock, which repo2docker does not read.
    "install.R", "renv.lock",
    # pixi (buildpacks/pixi.py): its manifest and its lock; pyproject.toml's [tool.pixi] counts too.
    "pixi.toml", "pixi.lock",
)
# repo2docker reads these only when configuration lives at the root (no binder/ folder): the repository is then
# itself a package.
_ROOT_ONLY = ("setup.py", "pyproject.toml", "DESCRIPTION")


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
    runtime: Runtime | None = None  # runtime.txt where it applies (None where repo2docker ignores it)
    pipfile_local: tuple[str, ...] = ()  # the Pipfile(.lock)'s `path` packages as pip arguments ("-e ."), installed after the copy
    ignored: tuple[str, ...] = ()  # declaration files present but ignored, each with why ("runtime.txt (…)")
    description: Description | None = None  # an R package's DESCRIPTION (root only, as in repo2docker)
    renv_lock: RenvLock | None = None
    pixi: PixiManifest | None = None  # pixi.toml, or pyproject.toml's [tool.pixi] (pixi.toml wins, as in pixi)

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
        if repo.kind(current) == "missing":
            raise SpecError(f"{included_by}: included file {current!r} does not exist", "fix the -r/-c path")
        parsed = parse_requirements(repo.read_text(current), current)
        seen[current] = parsed
        pending.extend((include, current) for include in parsed.includes)
        for constraint in parsed.constraints:
            if repo.kind(constraint) == "missing":
                raise SpecError(f"{current}: constraints file {constraint!r} does not exist", "fix the -c path")
            repo.read_text(constraint)  # the image copies it: it must be a readable text file too
        for reference in parsed.local_references:
            # pip runs from the repository root in the image: a path that is not there fails the build late.
            if repo.kind(local_path(reference)) == "missing":
                raise SpecError(f"{current}: {reference!r} does not exist in the repository", "fix the path, or commit what it points at")
    _refuse_include_cycle(seen, path)
    return tuple(seen.values())


def _refuse_include_cycle(files: dict[str, RequirementsFile], start: str) -> None:
    """pip refuses a requirements file that includes itself, directly or through others; say so before the build."""
    chain: list[str] = []
    done: set[str] = set()

    def visit(name: str) -> None:
        if name in chain:
            cycle = " -> ".join([*chain[chain.index(name):], name])
            raise SpecError(f"{chain[-1]}: -r includes form a cycle ({cycle})", "remove the -r line that includes a file back")
        if name in done or name not in files:
            return
        chain.append(name)
        for include in files[name].includes:
            visit(include)
        chain.pop()
        done.add(name)

    visit(start)


def _runtime(repo: RepoView, path: str, files: frozenset[str], pipfile_python: str) -> tuple[Runtime | None, str]:
    """runtime.txt where it applies, and why it is ignored where it does not (repo2docker: a Dockerfile is built
    as-is, environment.yml pins Python itself, and a Pipfile's Python wins); ignored means not validated either."""
    if "runtime.txt" not in files:
        return None, ""
    if "Dockerfile" in files:
        return None, "the Dockerfile is built as-is"
    text = repo.read_text(path)
    if names_r(text):
        return parse_runtime(text, path), ""
    if "environment.yml" in files or "environment.yaml" in files:
        return None, "environment.yml pins Python itself"
    if pipfile_python:
        return None, "the Pipfile's Python version wins"
    return parse_runtime(text, path), ""


def _python_request(runtime: Runtime | None, pyproject: Pyproject | None, pipfile_python: tuple[str, str]) -> PythonRequest:
    version, source = pipfile_python
    if version:
        return PythonRequest(version, "", source)
    if runtime is not None and runtime.name == "python":
        request = PythonRequest(runtime.python, "", runtime.path)
        if request.version and pyproject and pyproject.requires_python and request.version + ".0" not in SpecifierSet(pyproject.requires_python):
            # repo2docker: "repo2docker MUST honor the user decision in runtime.txt", and refuses a contradiction.
            raise SpecError(f"{runtime.path}: python-{runtime.version} is outside pyproject.toml's requires-python {pyproject.requires_python!r}",
                            "make runtime.txt and requires-python agree")
        if request.version or not (pyproject and pyproject.requires_python):
            return request
    if pyproject and pyproject.requires_python:
        return PythonRequest("", pyproject.requires_python, "pyproject.toml requires-python")
    return PythonRequest("", "", "")


def old_python_environment(runtime: Runtime, requirements: tuple[RequirementsFile, ...]) -> CondaEnvironment:
    """A Python only conda provides (python-2.7 … 3.7), as repo2docker builds it: a conda environment with that
    Python, pip and ipykernel, requirements.txt as its pip: packages (locked by conda-lock), the kernel of a
    notebook server that runs on a current Python."""
    local = [ref for f in requirements for ref in f.local_references]
    if local:
        raise SpecError(f"{requirements[0].path}: {local[0]!r} cannot be installed into a Python {runtime.python} conda environment yet",
                        "list released packages only (NAME==VERSION) for an old Python")
    options = [o for f in requirements for o in f.options]
    if options or any(f.constraints for f in requirements):
        raise SpecError(f"{requirements[0].path}: options and constraints files ({(options or ['-c'])[0]}) are not supported for a Python "
                        f"{runtime.python} conda environment yet", "list the packages alone, one per line")
    pip = tuple(r for f in requirements for r in f.requirements)
    from r2env.parsers.environment import CondaEnvironment
    return CondaEnvironment(runtime.path, f"python-{runtime.python}", (), (f"python={runtime.python}", "pip", "ipykernel"), pip, runtime.python)


def inspect(repo: RepoView) -> RepoFacts:
    config_dir = find_config_dir(repo)

    def path(name: str) -> str:
        return posixpath.join(config_dir, name) if config_dir else name

    kinds = {name: repo.kind(path(name)) for name in DECLARATION_FILES if not (config_dir and name in _ROOT_ONLY)}
    for name, kind in kinds.items():
        # Present but not a file: refused, not skipped (a FIFO named requirements.txt is a declaration r2env
        # cannot read, and would block a build that copies it).
        if kind not in ("missing", "a regular file"):
            raise SpecError(f"{path(name)}: is {kind}, not a regular file", "replace it with the file itself, or remove it")
    files = frozenset(name for name, kind in kinds.items() if kind == "a regular file")
    requirements = _read_requirements(repo, path("requirements.txt")) if "requirements.txt" in files else ()
    pyproject = parse_pyproject(repo.read_text(path("pyproject.toml")), path("pyproject.toml")) if "pyproject.toml" in files else None
    pipfile, pipfile_lock, pipfile_local, pipfile_python = _pipfile(repo, files, path)
    apt_packages = parse_apt(repo.read_text(path("apt.txt")), path("apt.txt")) if "apt.txt" in files else ()
    runtime, runtime_ignored = _runtime(repo, path("runtime.txt"), files, pipfile_python[0])
    python = _python_request(runtime, pyproject, pipfile_python)
    ignored = (f"{path('runtime.txt')} ({runtime_ignored})",) if runtime_ignored else ()
    not_executable = frozenset(
        name for name in ("postBuild", "start") if name in files and not repo.is_executable(path(name))
    )
    environment_name = next((name for name in ("environment.yml", "environment.yaml") if name in files), "")
    conda_environment: CondaEnvironment | None = None
    if environment_name:
        from r2env.parsers.environment import parse_environment
        conda_environment = parse_environment(repo.read_text(path(environment_name)), path(environment_name))
    if conda_environment is None and runtime is not None and runtime.python in CONDA_ONLY_VERSIONS and not pipfile_python[0] \
            and "Pipfile" not in files and "Pipfile.lock" not in files:
        conda_environment = old_python_environment(runtime, requirements)
    description: Description | None = None
    renv_lock: RenvLock | None = None
    if "DESCRIPTION" in files:
        from r2env.parsers.description import parse_description
        description = parse_description(repo.read_text("DESCRIPTION"), "DESCRIPTION")
    if "renv.lock" in files:
        from r2env.parsers.renv_lock import parse_renv_lock
        renv_lock = parse_renv_lock(repo.read_text(path("renv.lock")), path("renv.lock"))
    pixi = _pixi_manifest(repo, files, path)
    return RepoFacts(
        config_dir, files, python, requirements, apt_packages, pyproject, pipfile, pipfile_lock, not_executable, conda_environment,
        runtime=runtime, ignored=ignored, pipfile_local=pipfile_local, description=description, renv_lock=renv_lock, pixi=pixi,
    )


def _pipfile(repo: RepoView, files: frozenset[str], path: Callable[[str], str]
             ) -> tuple[Pipfile | None, tuple[LockedPackage, ...] | None, tuple[str, ...], tuple[str, str]]:
    """The Pipfile, Pipfile.lock's pins, their `path` packages as pip arguments, and the Python they ask for (the
    lock's _meta.requires wins over the Pipfile's [requires]) with where it was asked."""
    if "Pipfile" not in files and "Pipfile.lock" not in files:
        return None, None, (), ("", "")
    from r2env.parsers.pipfile import parse_pipfile, parse_pipfile_lock, pipfile_lock_local_references, pipfile_lock_python
    pipfile = parse_pipfile(repo.read_text(path("Pipfile")), path("Pipfile")) if "Pipfile" in files else None
    if "Pipfile.lock" not in files:
        python = (pipfile.python_version, f"{path('Pipfile')} [requires]") if pipfile and pipfile.python_version else ("", "")
        return pipfile, None, pipfile.local_references if pipfile else (), python
    text = repo.read_text(path("Pipfile.lock"))
    pins = parse_pipfile_lock(text, path("Pipfile.lock"))
    if locked := pipfile_lock_python(text):
        python = (locked, f"{path('Pipfile.lock')} _meta.requires")
    elif pipfile and pipfile.python_version:
        python = (pipfile.python_version, f"{path('Pipfile')} [requires]")
    else:
        python = ("", "")
    return pipfile, pins, pipfile_lock_local_references(text, path("Pipfile.lock")), python


def _pixi_manifest(repo: RepoView, files: frozenset[str], path: Callable[[str], str]) -> PixiManifest | None:
    """pixi.toml, else a pyproject.toml with [tool.pixi] (pixi's own order); pixi.lock lives beside the manifest."""
    if "pixi.toml" not in files and "pyproject.toml" not in files:
        return None
    from r2env.parsers.pixi import parse_pixi_manifest
    for name in ("pixi.toml", "pyproject.toml"):
        if name in files:
            manifest = parse_pixi_manifest(repo.read_text(path(name)), path(name), path("pixi.lock"))
            if manifest is not None:
                return manifest
    return None
