"""pixi's manifest: pixi.toml, or pyproject.toml's [tool.pixi.*] tables (https://pixi.sh/latest/reference/pixi_manifest/).

r2env reads what decides an environment's packages for linux-64 (its features' dependencies, pypi-dependencies and
channels), the environments made of those features, and the tasks a user may launch. It never solves: pixi.lock
is the source of truth, the manifest only tells whether the lock is stale (r2env/pixi/lockfile.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

from packaging.utils import canonicalize_name

from r2env.errors import SpecError
from r2env.grammars import excerpt, has_control, is_python_name
from r2env.parsers.toml import load_toml

PLATFORM = "linux-64"  # the one platform r2env's images run
DEFAULT = "default"
_HINT = "see https://pixi.sh/latest/reference/pixi_manifest/"
# pixi's rule for feature and environment names: lowercase letters, digits and dashes.
ENVIRONMENT_NAME = re.compile(r"^[a-z0-9-]{1,64}$")
_TASK_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_CONDA_NAME = re.compile(r"^[a-z0-9_][a-z0-9_.+-]{0,127}$")


@dataclass(frozen=True)
class PixiTask:
    name: str
    command: str  # "" for a task that only runs what it depends on
    cwd: str = ""  # relative to the manifest's folder
    env: tuple[tuple[str, str], ...] = ()
    depends_on: tuple[str, ...] = ()


@dataclass(frozen=True)
class PixiFeature:
    name: str
    conda: tuple[tuple[str, str], ...] = ()  # (name, match spec without the name; "*" for any) for linux-64
    pypi: tuple[tuple[str, str], ...] = ()  # (canonical name, PEP 440 specifier; "" for any or a path/git/url source)
    tasks: tuple[PixiTask, ...] = ()
    channels: tuple[str, ...] = ()


@dataclass(frozen=True)
class PixiEnvironment:
    """One environment of the manifest: its features merged (the default feature first, unless it opts out)."""

    name: str
    features: tuple[str, ...]
    conda: tuple[tuple[str, str], ...]
    pypi: tuple[tuple[str, str], ...]
    tasks: tuple[PixiTask, ...]
    channels: tuple[str, ...]

    def declares(self, name: str) -> bool:
        wanted = canonicalize_name(name)
        return any(canonicalize_name(n) == wanted for n, _ in self.conda) or any(n == wanted for n, _ in self.pypi)

    def task(self, name: str, path: str) -> PixiTask:
        for task in self.tasks:
            if task.name == name:
                return task
        known = ", ".join(t.name for t in self.tasks) or "none"
        raise SpecError(f"{path}: environment {self.name!r} has no task {name!r} (its tasks: {known})", "give one of its tasks to --task")


@dataclass(frozen=True)
class PixiManifest:
    path: str  # pixi.toml or pyproject.toml, repo-relative
    lockfile: str  # pixi.lock beside it
    platforms: tuple[str, ...]
    features: tuple[PixiFeature, ...]  # the default feature first
    environments: tuple[tuple[str, tuple[str, ...], bool], ...]  # (name, its features, no-default-feature)

    @property
    def environment_names(self) -> tuple[str, ...]:
        names = [name for name, _, _ in self.environments]
        return tuple([DEFAULT] + [n for n in names if n != DEFAULT])

    def environment(self, name: str) -> PixiEnvironment:
        if name not in self.environment_names:
            raise SpecError(f"{self.path}: there is no pixi environment {name!r} (there are: {', '.join(self.environment_names)})",
                            "choose one with --pixi-environment (or c.R2env.pixi_environment)")
        listed = next(((features, no_default) for n, features, no_default in self.environments if n == name), ((), False))
        features = (() if listed[1] else (DEFAULT,)) + tuple(f for f in listed[0] if f != DEFAULT)
        by_name = {feature.name: feature for feature in self.features}
        chosen = [by_name[f] for f in features]
        # Later features override earlier ones for the same package (pixi merges features in order).
        conda = {n: s for feature in chosen for n, s in feature.conda}
        pypi = {n: s for feature in chosen for n, s in feature.pypi}
        tasks = {t.name: t for feature in chosen for t in feature.tasks}
        channels = tuple(dict.fromkeys(c for feature in chosen for c in feature.channels))
        return PixiEnvironment(name, features, tuple(conda.items()), tuple(pypi.items()), tuple(tasks.values()), channels)


def _table(value: Any, path: str, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SpecError(f"{path}: [{where}] must be a table", _HINT)
    return value


def _strings(value: Any, path: str, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, (str, dict)) for v in value):
        raise SpecError(f"{path}: {where} must be a list of strings", _HINT)
    # A channel may be a table {channel = "…", priority = N}.
    items = [v if isinstance(v, str) else str(v.get("channel", "")) for v in value]
    bad = next((v for v in items if not v or has_control(v)), None)
    if bad is not None:
        raise SpecError(f"{path}: {where}: {excerpt(bad)} is not a name", _HINT)
    return tuple(items)


def _conda_spec(name: str, value: Any, path: str, where: str) -> tuple[str, str]:
    if not _CONDA_NAME.match(name):
        raise SpecError(f"{path}: [{where}] {excerpt(name)} is not a conda package name", _HINT)
    if isinstance(value, dict):
        version, build = value.get("version", "*"), value.get("build", "")
        spec = f"{version} {build}".strip() if build else str(version)
    else:
        spec = value
    if not isinstance(spec, str) or has_control(spec):
        raise SpecError(f"{path}: [{where}] {name} = {excerpt(value)} is not a version spec", _HINT)
    return name, spec.strip() or "*"


def _pypi_spec(name: str, value: Any, path: str, where: str) -> tuple[str, str]:
    if not is_python_name(name):
        raise SpecError(f"{path}: [{where}] {excerpt(name)} is not a Python package name", _HINT)
    if isinstance(value, dict):
        spec = value.get("version", "") if not {"path", "git", "url"} & set(value) else ""
    else:
        spec = value
    if not isinstance(spec, str) or has_control(spec):
        raise SpecError(f"{path}: [{where}] {name} = {excerpt(value)} is not a version specifier", _HINT)
    spec = spec.strip()
    return str(canonicalize_name(name)), "" if spec == "*" else spec


def _task(name: str, value: Any, path: str, where: str) -> PixiTask:
    if not _TASK_NAME.match(name):
        raise SpecError(f"{path}: [{where}] {excerpt(name)} is not a task name", _HINT)
    if isinstance(value, str):
        value = {"cmd": value}
    if isinstance(value, list):
        value = {"depends-on": value}
    if not isinstance(value, dict):
        raise SpecError(f"{path}: [{where}] {name} must be a command or a table", _HINT)
    command = value.get("cmd", "")
    if isinstance(command, list):
        command = " ".join(str(part) for part in command)
    cwd, env = value.get("cwd", ""), _table(value.get("env"), path, f"{where}.{name}.env")
    depends = value.get("depends-on", value.get("depends_on", []))
    depends = [depends] if isinstance(depends, str) else depends
    if not isinstance(command, str) or not isinstance(cwd, str) or not isinstance(depends, list):
        raise SpecError(f"{path}: [{where}] {name}: cmd and cwd must be strings, depends-on a list", _HINT)
    names = tuple(d if isinstance(d, str) else str(d.get("task", "")) for d in depends)
    return PixiTask(name, command, cwd, tuple((str(k), str(v)) for k, v in env.items()), names)


def _feature(name: str, data: Mapping[str, Any], path: str, prefix: str) -> PixiFeature:
    """A feature's own tables, plus its [target.linux-64.*] tables (other platforms do not apply)."""
    tables = [(data, prefix)]
    target = _table(data.get("target"), path, f"{prefix}target")
    if PLATFORM in target:
        tables.append((_table(target[PLATFORM], path, f"{prefix}target.{PLATFORM}"), f"{prefix}target.{PLATFORM}."))
    conda: dict[str, str] = {}
    pypi: dict[str, str] = {}
    tasks: dict[str, PixiTask] = {}
    for table, where in tables:
        for key in ("dependencies", "host-dependencies", "build-dependencies"):
            for dependency, value in _table(table.get(key), path, where + key).items():
                conda.update([_conda_spec(dependency, value, path, where + key)])
        for dependency, value in _table(table.get("pypi-dependencies"), path, where + "pypi-dependencies").items():
            pypi.update([_pypi_spec(dependency, value, path, where + "pypi-dependencies")])
        for task, value in _table(table.get("tasks"), path, where + "tasks").items():
            tasks[task] = _task(task, value, path, where + "tasks")
    channels = _strings(data.get("channels"), path, f"{prefix}channels")
    return PixiFeature(name, tuple(conda.items()), tuple(pypi.items()), tuple(tasks.values()), channels)


def _environments(data: Any, path: str, features: set[str]) -> tuple[tuple[str, tuple[str, ...], bool], ...]:
    environments = []
    for name, value in _table(data, path, "environments").items():
        if not ENVIRONMENT_NAME.match(name):
            raise SpecError(f"{path}: [environments] {excerpt(name)} is not an environment name (lowercase letters, digits, dashes)", _HINT)
        no_default = False
        if isinstance(value, dict):
            no_default = value.get("no-default-feature", False) is True
            value = value.get("features", [])
        chosen = _strings(value, path, f"[environments] {name}")
        unknown = [f for f in chosen if f not in features]
        if unknown:
            raise SpecError(f"{path}: environment {name!r} uses feature {unknown[0]!r}, which is not defined", "add [feature.NAME] or fix the name")
        environments.append((name, chosen, no_default))
    return tuple(environments)


def parse_pixi_manifest(text: str, path: str, lockfile: str) -> PixiManifest | None:
    """pixi.toml, or a pyproject.toml with [tool.pixi] (None for a pyproject.toml without it)."""
    data = load_toml(text, path)
    pyproject = path.rsplit("/", 1)[-1] == "pyproject.toml"
    if pyproject:
        tool = data.get("tool", {})
        pixi = tool.get("pixi") if isinstance(tool, dict) else None
        if pixi is None:
            return None
        data = _table(pixi, path, "tool.pixi")
    prefix = "tool.pixi." if pyproject else ""
    workspace = _table(data.get("workspace", data.get("project")), path, f"{prefix}workspace")
    default = _feature(DEFAULT, data, path, prefix)
    if pyproject:
        # pixi reads [project].dependencies as the default feature's PyPI dependencies.
        project = _table(load_toml(text, path).get("project"), path, "project")
        extra = []
        for requirement in project.get("dependencies", []) if isinstance(project.get("dependencies"), list) else []:
            match = re.match(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*([^;]*)", str(requirement))
            if match:
                extra.append((str(canonicalize_name(match.group(1))), match.group(2).strip()))
        default = PixiFeature(DEFAULT, default.conda, tuple(extra) + default.pypi, default.tasks, default.channels)
    channels = _strings(workspace.get("channels"), path, f"[{prefix}workspace] channels")
    default = PixiFeature(DEFAULT, default.conda, default.pypi, default.tasks, channels)
    features = [default]
    for name, table in _table(data.get("feature"), path, f"{prefix}feature").items():
        if not ENVIRONMENT_NAME.match(name):
            raise SpecError(f"{path}: [{prefix}feature] {excerpt(name)} is not a feature name (lowercase letters, digits, dashes)", _HINT)
        features.append(_feature(name, _table(table, path, f"{prefix}feature.{name}"), path, f"{prefix}feature.{name}."))
    platforms = _strings(workspace.get("platforms"), path, f"[{prefix}workspace] platforms")
    environments = _environments(data.get("environments"), path, {f.name for f in features})
    return PixiManifest(path, lockfile, platforms, tuple(features), environments)
