"""pyproject.toml: is it an installable project, and which Python does it require (PEP 621)."""

from __future__ import annotations

from dataclasses import dataclass

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet

from r2env.errors import SpecError
from r2env.grammars import excerpt, has_control
from r2env.parsers.toml import load_toml


@dataclass(frozen=True)
class Pyproject:
    installable: bool  # declares both a [project] and a [build-system] (repo2docker's rule), and does not opt out
    requires_python: str  # PEP 440 specifier set, "" when absent
    dependencies: tuple[str, ...]


def parse_pyproject(text: str, path: str) -> Pyproject:
    data = load_toml(text, path)
    project = data.get("project", {})
    if not isinstance(project, dict):
        raise SpecError(f"{path}: [project] must be a table", "see PEP 621")
    requires_python = project.get("requires-python", "")
    try:
        if not isinstance(requires_python, str) or has_control(requires_python):
            raise InvalidSpecifier(str(requires_python))
        SpecifierSet(requires_python)
    except (InvalidSpecifier, TypeError):
        raise SpecError(
            f"{path}: requires-python {excerpt(requires_python)} is not a valid version specifier", "e.g. '>=3.10'"
        ) from None
    dependencies = project.get("dependencies", [])
    if not isinstance(dependencies, list) or not all(isinstance(d, str) for d in dependencies):
        raise SpecError(f"{path}: [project].dependencies must be a list of strings", "see PEP 621")
    for dependency in dependencies:
        # They are installed by name (pip arguments in the Dockerfile): each must be one PEP 508 requirement.
        try:
            if has_control(dependency):
                raise InvalidRequirement(dependency)
            Requirement(dependency)
        except InvalidRequirement:
            raise SpecError(f"{path}: [project].dependencies: {excerpt(dependency)} is not a valid requirement", "see PEP 508") from None
    # repo2docker installs the repository only when pyproject.toml has both [project] and [build-system] (a bare
    # [project] is a dependency list, as uv reads it too); a project may also opt out as uv and Poetry read it:
    # [tool.uv] package = false, or [tool.poetry] package-mode = false.
    tool = data.get("tool", {}) if isinstance(data.get("tool"), dict) else {}
    uv = tool.get("uv", {}) if isinstance(tool.get("uv"), dict) else {}
    poetry = tool.get("poetry", {}) if isinstance(tool.get("poetry"), dict) else {}
    opted_out = uv.get("package") is False or poetry.get("package-mode") is False
    installable = "project" in data and "build-system" in data and not opted_out
    return Pyproject(installable, requires_python, tuple(str(d) for d in dependencies))
