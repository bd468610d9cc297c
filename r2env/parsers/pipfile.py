"""Pipfile and Pipfile.lock (pipenv's formats), turned into pip requirement lines."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from r2env.errors import SpecError
from r2env.lock.lockfile import LockedPackage
from r2env.parsers.runtime import MAJOR_PYTHONS
from r2env.parsers.toml import load_toml


@dataclass(frozen=True)
class Pipfile:
    requirements: tuple[str, ...]
    python_version: str  # [requires] python_version, "" when absent


def _requirement(name: str, value: Any, path: str) -> str:
    if value == "*" or value == {}:
        return name
    if isinstance(value, str):
        # pipenv reads a bare version ("1.0") as an exact pin.
        return f"{name}=={value}" if value[:1].isdigit() else f"{name}{value}"
    if isinstance(value, dict):
        if any(key in value for key in ("git", "path", "file", "editable")):
            raise SpecError(f"{path}: package {name!r} uses git/path/file sources", "not supported yet: pin a version")
        extras = f"[{','.join(value['extras'])}]" if value.get("extras") else ""
        version = value.get("version", "")
        version = "" if version == "*" else version
        markers = f"; {value['markers']}" if value.get("markers") else ""
        return f"{name}{extras}{version}{markers}"
    raise SpecError(f"{path}: package {name!r} has an unreadable version {value!r}", "use a string like '==1.2'")


def _checked(requirement: str, path: str) -> str:
    try:
        Requirement(requirement)
    except InvalidRequirement:
        raise SpecError(f"{path}: {requirement!r} is not a valid requirement", "fix the version string") from None
    return requirement


def parse_pipfile(text: str, path: str) -> Pipfile:
    data = load_toml(text, path)
    requirements: list[str] = []
    # repo2docker installs dev-packages too (pipenv install --dev): notebooks often need them.
    for section in ("packages", "dev-packages"):
        packages = data.get(section, {})
        if not isinstance(packages, dict):
            raise SpecError(f"{path}: [{section}] must be a table", "see pipenv's Pipfile format")
        requirements += [_checked(_requirement(name, value, path), path) for name, value in packages.items()]
    requires = data.get("requires", {})
    if not isinstance(requires, dict):
        raise SpecError(f"{path}: [requires] must be a table", 'write e.g. [requires] python_version = "3.11"')
    for key in ("python_full_version", "python_version"):
        if not isinstance(requires.get(key, ""), str):
            # TOML reads python_version = 3.10 as the float 3.1.
            raise SpecError(f"{path}: [requires] {key} must be a string", f'write it quoted, e.g. {key} = "3.10"')
    return Pipfile(tuple(requirements), _python_version(requires))


_VERSION = re.compile(r"^\d+(?:\.\d+)*")


def _python_version(requires: dict[str, Any]) -> str:
    """X.Y from `python_full_version`, else `python_version` (the order repo2docker reads them in); "" when neither."""
    for key in ("python_full_version", "python_version"):
        match = _VERSION.match(str(requires.get(key) or "").strip())
        if match:
            parts = match.group().split(".")
            return ".".join(parts[:2]) if len(parts) > 1 else MAJOR_PYTHONS.get(parts[0], "")
    return ""


def pipfile_lock_python(text: str) -> str:
    """The Python a Pipfile.lock was made for (`_meta.requires`), "" when it does not say. Its packages are read
    (and the file validated) by parse_pipfile_lock."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return ""
    meta = data.get("_meta") if isinstance(data, dict) else None
    requires = meta.get("requires") if isinstance(meta, dict) else None
    return _python_version(requires) if isinstance(requires, dict) else ""


def parse_pipfile_lock(text: str, path: str) -> tuple[LockedPackage, ...]:
    """The lock's packages, pinned with their hashes, for `pip install --require-hashes`."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise SpecError(f"{path}: invalid JSON: {error}", "regenerate it with 'pipenv lock'") from None
    default = data.get("default") if isinstance(data, dict) else None
    develop = data.get("develop", {}) if isinstance(data, dict) else None
    if not isinstance(default, dict) or not isinstance(develop, dict):
        raise SpecError(f"{path}: no 'default' section", "regenerate it with 'pipenv lock'")
    # Like `pipenv install --dev`: the develop section too; a package in both is pinned by `default`.
    entries = {**develop, **default}
    pins: list[LockedPackage] = []
    for name in sorted(entries):
        entry = entries[name]
        if not isinstance(entry, dict):
            raise SpecError(f"{path}: entry {name!r} is not a table", "regenerate it with 'pipenv lock'")
        version, hashes = entry.get("version"), entry.get("hashes")
        if not isinstance(version, str) or not version.startswith("==") or not hashes:
            raise SpecError(f"{path}: entry {name!r} lacks an exact version and hashes", "regenerate it with 'pipenv lock'")
        markers = str(entry.get("markers") or "")
        _checked(f"{name}{version}" + (f"; {markers}" if markers else ""), path)
        pins.append(LockedPackage(str(canonicalize_name(name)), version[2:], tuple(hashes), markers))
    return tuple(pins)
