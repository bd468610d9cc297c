"""conda-lock.yml (conda-lock's unified lock format, version 1): the conda and pip packages of one platform.

https://conda.github.io/conda-lock/output/ describes the format; r2env reads it, conda-lock writes it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name
from ruamel.yaml.error import YAMLError

from r2env.documents import DocumentTooComplex, Shape, bounded_yaml
from r2env.errors import LockError
from r2env.grammars import excerpt, is_python_name, is_python_version
from r2env.lock.lockfile import LockedPackage
from r2env.yaml_memo import load_checked

_HEX = {"md5": re.compile(r"^[0-9a-f]{32}$"), "sha256": re.compile(r"^[0-9a-f]{64}$")}
_PACKAGE_SUFFIXES = (".conda", ".tar.bz2")


@dataclass(frozen=True)
class CondaPackage:
    name: str
    version: str
    build: str
    subdir: str  # linux-64, noarch, ...
    url: str  # where it was locked from (rewritten by --channel-map at build time)
    sha256: str
    md5: str
    depends: tuple[str, ...]

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[1]


@dataclass(frozen=True)
class CondaLockFile:
    path: str
    platform: str
    channels: tuple[str, ...]
    packages: tuple[CondaPackage, ...]  # every conda package of the platform, sorted by name
    pip: tuple[LockedPackage, ...]  # the pip: subsection's closure, hash-pinned

    @property
    def python_version(self) -> str:
        """X.Y of the environment's python package, "" when it has none (then it gets no kernel)."""
        version = next((p.version for p in self.packages if p.name == "python"), "")
        return ".".join(version.split(".")[:2])


def _fail(path: str, problem: str) -> LockError:
    return LockError(f"{path}: {problem}", "regenerate it with `r2env lock` (it runs conda-lock)")


_CONDA_NAME = re.compile(r"^[a-z0-9_][a-z0-9_.+-]{0,127}$")
_CONDA_VERSION = re.compile(r"^[A-Za-z0-9_.+!-]{1,64}$")
_URL_TEXT = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^\s\x00-\x1f\x7f\"'`$\\]+$")


def _string(shape: Shape, pattern: re.Pattern[str], what: str, numbers: bool = False) -> str:
    """A string matching `pattern`; with `numbers`, an unquoted YAML number too (`version: 1.0`)."""
    number = numbers and isinstance(shape.value, (int, float)) and not isinstance(shape.value, bool)
    value = str(shape.value) if number else shape.string()
    if not pattern.match(value):
        raise shape.fail(f"{excerpt(value)} is not {what}")
    return value


def _conda_package(entry: Shape, where: str) -> CondaPackage:
    url = _string(entry.key("url"), _URL_TEXT, "a package URL")
    filename = url.rsplit("/", 1)[-1]
    stem = next((filename[: -len(s)] for s in _PACKAGE_SUFFIXES if filename.endswith(s)), "")
    if not stem or stem.count("-") < 2:
        raise _fail(entry.path, f"{where} has no conda package URL (got {excerpt(url)})")
    hashes = entry.key("hash", {})
    sha256 = hashes.key("sha256", "").string()
    md5 = hashes.key("md5", "").string()
    if not _HEX["sha256"].match(sha256):
        # rattler does not check file:// packages itself; r2env checks every package, so it needs the hash.
        raise _fail(entry.path, f"{where} has no sha256 hash")
    if md5 and not _HEX["md5"].match(md5):
        raise _fail(entry.path, f"{where} has a malformed md5 hash")
    depends = tuple(f"{name} {spec.string() if spec.value is not None else ''}".strip() for name, spec in entry.key("dependencies", {}).items())
    return CondaPackage(
        name=_string(entry.key("name"), _CONDA_NAME, "a conda package name"), version=_string(entry.key("version"), _CONDA_VERSION, "a conda version", numbers=True),
        build=stem.rsplit("-", 2)[2], subdir=url.rsplit("/", 2)[-2], url=url, sha256=sha256, md5=md5, depends=depends,
    )


def parse_conda_lock(text: str, path: str, platform: str = "linux-64", memo: Path | None = None) -> CondaLockFile:
    """conda-lock.yml, every value checked for its type (naming the key path) and its grammar (issue 17).
    With `memo`, a folder of r2env/yaml_memo.py, a text loaded before skips the YAML parser (not the checks)."""
    return load_checked(memo, text, lambda text: _load_yaml(text, path), lambda data: _checked_conda_lock(data, path, platform))


def _load_yaml(text: str, path: str) -> Any:
    try:
        return bounded_yaml().load(text)
    except YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        problem = getattr(error, "problem", None) if isinstance(error, DocumentTooComplex) else None
        raise _fail(path + (f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""), "invalid YAML" + (f": {problem}" if problem else "")) from None


def _checked_conda_lock(data: Any, path: str, platform: str) -> CondaLockFile:
    if not isinstance(data, dict) or data.get("version") != 1 or not isinstance(data.get("package"), list):
        raise _fail(path, "not a conda-lock file of version 1")
    document = Shape(data, path, error=LockError, hint="regenerate it with `r2env lock` (it runs conda-lock)")
    metadata = document.key("metadata", {})
    if platform not in [p.string() for p in metadata.key("platforms", []).list()]:
        raise LockError(f"{path}: not locked for {platform}", f"run `r2env lock` (r2env locks {platform})")
    channels = tuple(c.key("url", "").string() for c in metadata.key("channels", []).list() if isinstance(c.value, dict))
    conda: list[CondaPackage] = []
    pip: list[LockedPackage] = []
    for index, entry in enumerate(document.key("package").list()):
        if not isinstance(entry.value, dict) or not {"name", "version", "manager", "platform"} <= set(entry.value):
            raise _fail(path, f"package[{index}] lacks name, version, manager or platform")
        if entry.key("platform").string() != platform or entry.key("category", "main").string() != "main":
            continue
        where = f"package[{index}] ({str(entry.value['name'])[:40].encode('unicode_escape').decode()})"  # a newline stays on the line
        manager = entry.key("manager").string()
        if manager == "conda":
            conda.append(_conda_package(entry, where))
        elif manager == "pip":
            sha256 = entry.key("hash", {}).key("sha256", "").string()
            if not _HEX["sha256"].match(sha256):
                raise _fail(path, f"{where} has no sha256 hash")
            name = entry.key("name").string()
            if not is_python_name(name):
                raise entry.key("name").fail(f"{excerpt(name)} is not a Python package name")
            version = _string(entry.key("version"), _CONDA_VERSION, "a version", numbers=True)
            if not is_python_version(version):
                raise entry.key("version").fail(f"{excerpt(version)} is not a PEP 440 version")
            pip.append(LockedPackage(str(canonicalize_name(name)), version, (f"sha256:{sha256}",)))
        else:
            raise _fail(path, f"{where} has unknown manager {excerpt(manager, 40)}")
    return CondaLockFile(path, platform, channels, tuple(sorted(conda, key=lambda p: p.name)), tuple(sorted(pip, key=lambda p: p.name)))
