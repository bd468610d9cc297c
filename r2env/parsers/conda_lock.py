"""conda-lock.yml (conda-lock's unified lock format, version 1): the conda and pip packages of one platform.

https://conda.github.io/conda-lock/output/ describes the format; r2env reads it, conda-lock writes it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from packaging.utils import canonicalize_name
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from r2env.errors import LockError
from r2env.lock.lockfile import LockedPackage

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


def _conda_package(entry: dict[str, Any], path: str, where: str) -> CondaPackage:
    url = str(entry.get("url", ""))
    filename = url.rsplit("/", 1)[-1]
    stem = next((filename[: -len(s)] for s in _PACKAGE_SUFFIXES if filename.endswith(s)), "")
    if not stem or stem.count("-") < 2:
        raise _fail(path, f"{where} has no conda package URL (got {url!r})")
    hashes = entry.get("hash") or {}
    sha256, md5 = str(hashes.get("sha256") or ""), str(hashes.get("md5") or "")
    if not _HEX["sha256"].match(sha256):
        # rattler does not check file:// packages itself; r2env checks every package, so it needs the hash.
        raise _fail(path, f"{where} has no sha256 hash")
    if md5 and not _HEX["md5"].match(md5):
        raise _fail(path, f"{where} has a malformed md5 hash")
    depends = tuple(f"{name} {spec}".strip() for name, spec in (entry.get("dependencies") or {}).items())
    return CondaPackage(
        name=str(entry["name"]), version=str(entry["version"]), build=stem.rsplit("-", 2)[2],
        subdir=url.rsplit("/", 2)[-2], url=url, sha256=sha256, md5=md5, depends=depends,
    )


def parse_conda_lock(text: str, path: str, platform: str = "linux-64") -> CondaLockFile:
    try:
        data = YAML(typ="safe", pure=True).load(text)
    except YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        raise _fail(path + (f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""), "invalid YAML") from None
    if not isinstance(data, dict) or data.get("version") != 1 or not isinstance(data.get("package"), list):
        raise _fail(path, "not a conda-lock file of version 1")
    metadata = data.get("metadata") or {}
    if platform not in (metadata.get("platforms") or []):
        raise LockError(f"{path}: not locked for {platform}", f"run `r2env lock` (r2env locks {platform})")
    channels = tuple(str(c.get("url", "")) for c in metadata.get("channels") or [] if isinstance(c, dict))
    conda: list[CondaPackage] = []
    pip: list[LockedPackage] = []
    for index, entry in enumerate(data["package"]):
        if not isinstance(entry, dict) or not {"name", "version", "manager", "platform"} <= set(entry):
            raise _fail(path, f"package[{index}] lacks name, version, manager or platform")
        if entry["platform"] != platform or entry.get("category", "main") != "main":
            continue
        where = f"package[{index}] ({entry['name']})"
        if entry["manager"] == "conda":
            conda.append(_conda_package(entry, path, where))
        elif entry["manager"] == "pip":
            sha256 = str((entry.get("hash") or {}).get("sha256") or "")
            if not _HEX["sha256"].match(sha256):
                raise _fail(path, f"{where} has no sha256 hash")
            pip.append(LockedPackage(str(canonicalize_name(str(entry["name"]))), str(entry["version"]), (f"sha256:{sha256}",)))
        else:
            raise _fail(path, f"{where} has unknown manager {entry['manager']!r}")
    return CondaLockFile(path, platform, channels, tuple(sorted(conda, key=lambda p: p.name)), tuple(sorted(pip, key=lambda p: p.name)))
