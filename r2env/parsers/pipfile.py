"""Pipfile and Pipfile.lock (pipenv's formats), turned into pip requirement lines."""

from __future__ import annotations

import json
import posixpath
import re
from dataclasses import dataclass
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from r2env.documents import load_json
from r2env.errors import SpecError
from r2env.grammars import SHA256_HASH, excerpt, has_control, is_python_name, is_python_version
from r2env.lock.lockfile import LockedPackage
from r2env.parsers.runtime import MAJOR_PYTHONS
from r2env.parsers.toml import load_toml


@dataclass(frozen=True)
class Pipfile:
    requirements: tuple[str, ...]
    python_version: str  # [requires] python_version, "" when absent
    local_references: tuple[str, ...] = ()  # `{path = ".", editable = true}` as pip arguments, repository-relative


def local_reference(name: str, value: dict[str, Any], path: str) -> str:
    """A `path` source as pip arguments ("-e ." / "sub/pkg"): relative to the Pipfile's folder, as pipenv runs there
    (repo2docker runs `pipenv install` in the config folder), and kept inside the repository."""
    target = value.get("path")
    if not isinstance(target, str) or not target.strip():
        raise SpecError(f"{path}: package {name!r} has no path", 'write e.g. {path = ".", editable = true}')
    location = posixpath.normpath(posixpath.join(posixpath.dirname(path), target.strip()))
    if location.startswith("/") or location == ".." or location.startswith("../"):
        raise SpecError(f"{path}: package {name!r} points outside the repository ({target!r})", "give a path inside the repository")
    location = location if location == "." else f"./{location}"
    return f"-e {location}" if value.get("editable") is True else location


def _requirement(name: str, value: Any, path: str) -> str:
    if value == "*" or value == {}:
        return name
    if isinstance(value, str):
        # pipenv reads a bare version ("1.0") as an exact pin.
        return f"{name}=={value}" if value[:1].isdigit() else f"{name}{value}"
    if isinstance(value, dict):
        if any(key in value for key in ("git", "file")) or ("editable" in value and "path" not in value):
            raise SpecError(f"{path}: package {name!r} uses a git or file source", "not supported yet: pin a version, or use a path inside the repository")
        extras = value.get("extras", [])
        if not isinstance(extras, list) or not all(isinstance(e, str) for e in extras) or \
                not all(isinstance(value.get(key, ""), str) for key in ("version", "markers")):
            raise SpecError(f"{path}: package {name!r}: extras must be a list of strings, version and markers strings",
                            'write e.g. {version = ">=1.0", extras = ["socks"]}')
        extras = f"[{','.join(value['extras'])}]" if value.get("extras") else ""
        version = value.get("version", "")
        version = "" if version == "*" else version
        markers = f"; {value['markers']}" if value.get("markers") else ""
        return f"{name}{extras}{version}{markers}"
    raise SpecError(f"{path}: package {name!r} has an unreadable version {value!r}", "use a string like '==1.2'")


def _checked(requirement: str, path: str) -> str:
    try:
        if has_control(requirement):  # packaging accepts a trailing newline; the Dockerfile must never get one
            raise InvalidRequirement(requirement)
        Requirement(requirement)
    except InvalidRequirement:
        raise SpecError(f"{path}: {excerpt(requirement)} is not a valid requirement", "fix the version string") from None
    return requirement


def parse_pipfile(text: str, path: str) -> Pipfile:
    data = load_toml(text, path)
    requirements: list[str] = []
    local: list[str] = []
    # repo2docker installs dev-packages too (pipenv install --dev): notebooks often need them.
    for section in ("packages", "dev-packages"):
        packages = data.get(section, {})
        if not isinstance(packages, dict):
            raise SpecError(f"{path}: [{section}] must be a table", "see pipenv's Pipfile format")
        for name, value in packages.items():
            if isinstance(value, dict) and "path" in value:
                local.append(local_reference(name, value, path))
            else:
                requirements.append(_checked(_requirement(name, value, path), path))
    requires = data.get("requires", {})
    if not isinstance(requires, dict):
        raise SpecError(f"{path}: [requires] must be a table", 'write e.g. [requires] python_version = "3.11"')
    for key in ("python_full_version", "python_version"):
        if not isinstance(requires.get(key, ""), str):
            # TOML reads python_version = 3.10 as the float 3.1.
            raise SpecError(f"{path}: [requires] {key} must be a string", f'write it quoted, e.g. {key} = "3.10"')
    return Pipfile(tuple(requirements), _python_version(requires), tuple(local))


_VERSION = re.compile(r"^\d+(?:\.\d+)*")


def _python_version(requires: dict[str, Any]) -> str:
    """X.Y from `python_full_version`, else `python_version` (the order repo2docker reads them in); "" when neither."""
    for key in ("python_full_version", "python_version"):
        match = _VERSION.match(str(requires.get(key) or "").strip())
        if match:
            parts = match.group().split(".")
            return ".".join(parts[:2]) if len(parts) > 1 else MAJOR_PYTHONS.get(parts[0], "")
    return ""


def pipfile_lock_local_references(text: str, path: str) -> tuple[str, ...]:
    """The lock's `path` entries (the repository's own packages, which have no version or hashes), as pip arguments."""
    data = load_json(text, path)  # parse_pipfile_lock has validated it
    entries = {**data.get("develop", {}), **data.get("default", {})}
    return tuple(local_reference(name, entries[name], path) for name in sorted(entries) if isinstance(entries[name], dict) and "path" in entries[name])


def pipfile_lock_python(text: str) -> str:
    """The Python a Pipfile.lock was made for (`_meta.requires`), "" when it does not say. Its packages are read
    (and the file validated) by parse_pipfile_lock."""
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return ""  # parse_pipfile_lock reports it
    meta = data.get("_meta") if isinstance(data, dict) else None
    requires = meta.get("requires") if isinstance(meta, dict) else None
    return _python_version(requires) if isinstance(requires, dict) else ""


def parse_pipfile_lock(text: str, path: str) -> tuple[LockedPackage, ...]:
    """The lock's packages, pinned with their hashes, for `pip install --require-hashes`."""
    data = load_json(text, path, SpecError, "regenerate it with 'pipenv lock'")
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
        if "path" in entry:
            continue  # the repository's own package: pipfile_lock_local_references

        version, hashes = entry.get("version"), entry.get("hashes")
        if not isinstance(version, str) or not version.startswith("==") or not hashes:
            raise SpecError(f"{path}: entry {excerpt(name)} lacks an exact version and hashes", "regenerate it with 'pipenv lock'")
        # Checked against their grammars here: they become `NAME==VERSION --hash=…` lines of the image's install.
        if not is_python_name(name) or not is_python_version(version[2:]):
            raise SpecError(f"{path}: entry {excerpt(name)} has an invalid name or version {excerpt(version)}", "regenerate it with 'pipenv lock'")
        if not isinstance(hashes, list) or not all(isinstance(h, str) and SHA256_HASH.match(h) for h in hashes):
            raise SpecError(f"{path}: {name}.hashes: expected a list of sha256:HEX hashes, got {excerpt(hashes, 60)}",
                            "regenerate it with 'pipenv lock' (pip checks sha256 hashes only)")
        markers = entry.get("markers") or ""
        if not isinstance(markers, str):
            raise SpecError(f"{path}: {name}.markers: expected a string", "regenerate it with 'pipenv lock'")
        _checked(f"{name}{version}" + (f"; {markers}" if markers else ""), path)
        pins.append(LockedPackage(str(canonicalize_name(name)), version[2:], tuple(hashes), markers))
    return tuple(pins)
