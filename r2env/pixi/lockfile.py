"""pixi.lock, read with py-rattler's own LockFile (rattler_lock is the format's reference implementation), for one
environment and linux-64: its conda packages as r2env's conda installer takes them, and its PyPI packages with
the URL and sha256 each is installed from. No solve: a lock that no longer satisfies the manifest is stale, and
`pixi lock` (not r2env) makes it again, as pixi itself would report it."""

from __future__ import annotations

import hashlib
import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from r2env.errors import LockError, SpecError
from r2env.grammars import excerpt, is_python_name, is_python_version
from r2env.lock.lockfile import LockedPackage
from r2env.parsers.conda_lock import CondaLockFile, CondaPackage
from r2env.parsers.pixi import PLATFORM, PixiEnvironment, PixiManifest
from r2env.reading import LOCK_LIMIT, read_text

if TYPE_CHECKING:
    from rattler import PackageRecord, RepoDataRecord
    from rattler.lock import PypiLockedPackage

_RELOCK = "run `pixi lock` and commit pixi.lock (r2env installs pixi projects exactly from it and never re-solves them)"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
# A file name r2env writes on the host and names in pip's requirements: no path separators, no leading dot.
_CONDA_FILE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+!-]*\.(?:conda|tar\.bz2)$")
_PYPI_FILE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+!-]*\.(?:whl|tar\.gz|zip)$")
_URL = re.compile(r"^(?:https?|file)://[^\s\x00-\x1f\x7f\"'`$\\]+$")


@dataclass(frozen=True)
class PypiPackage:
    name: str  # canonical
    version: str
    url: str  # the wheel (or sdist) the lock names
    sha256: str  # hex

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1].split("#", 1)[0].split("?", 1)[0]


@dataclass(frozen=True)
class PixiLockFile(CondaLockFile):
    """One environment of pixi.lock for linux-64, shaped like a conda-lock.yml so the conda steps install it;
    `pip` holds its PyPI packages as pins (the server resolves around them), `pypi` where each comes from."""

    environment: str = "default"
    pypi: tuple[PypiPackage, ...] = ()


def _hex(value: bytes | None) -> str:
    return value.hex() if value else ""


def parse_pixi_lock(path: Path, shown: str, environment: PixiEnvironment) -> PixiLockFile:
    """Read `path` (pixi.lock, shown as `shown`) for `environment`; every failure is one LockError line."""
    from rattler import LockFile  # py-rattler loads a native library: only when a pixi project is built

    read_text(path, shown, LOCK_LIMIT, LockError)  # size, file type and encoding checked by r2env's reading layer first
    try:
        lock = LockFile.from_path(path)
    except Exception as error:  # rattler's parse errors (ParseCondaLockError…): its own words, on one line
        message = " ".join(str(error).split())[:300]
        raise LockError(f"{shown}: not a pixi lock file r2env can read ({message})", _RELOCK) from None
    names = [name for name, _ in lock.environments()]
    found = lock.environment(environment.name)
    if found is None:
        raise LockError(f"{shown}: has no environment {environment.name!r} (it has: {', '.join(names) or 'none'})", _RELOCK)
    platform = next((p for p in found.platforms() if p.name == PLATFORM), None)
    if platform is None:
        locked = ", ".join(p.name for p in found.platforms()) or "none"
        raise LockError(f"{shown}: environment {environment.name!r} is not locked for {PLATFORM} (only for {locked})",
                        f"add {PLATFORM} to the workspace's platforms and run `pixi lock`")
    try:
        records = found.conda_repodata_records_for_platform(platform) or []
        pypi_entries = found.pypi_packages_for_platform(platform) or []
    except Exception as error:
        raise LockError(f"{shown}: environment {environment.name!r}: {' '.join(str(error).split())[:300]}", _RELOCK) from None
    conda = [_conda_package(record, shown) for record in records]
    pypi = [_pypi_package(entry, shown) for entry in pypi_entries]
    channels = tuple(c.url if hasattr(c, "url") else str(c) for c in found.channels())
    pins = tuple(LockedPackage(p.name, p.version, (f"sha256:{p.sha256}",)) for p in sorted(pypi, key=lambda p: p.name))
    result = PixiLockFile(shown, PLATFORM, channels, tuple(sorted(conda, key=lambda p: p.name)), pins,
                          environment=environment.name, pypi=tuple(sorted(pypi, key=lambda p: p.name)))
    check_satisfies(result, environment, shown)
    return result


def _conda_package(record: RepoDataRecord, shown: str) -> CondaPackage:
    name = str(record.name.normalized)
    url = str(record.url)
    sha256 = _hex(record.sha256)
    if not _HEX64.match(sha256):
        # rattler does not check file:// packages itself; r2env checks every package, so it needs the hash.
        raise LockError(f"{shown}: conda package {excerpt(name, 40)} has no sha256 hash", _RELOCK)
    if not _URL.match(url) or not _CONDA_FILE.match(url.rsplit("/", 1)[-1]):
        raise LockError(f"{shown}: conda package {excerpt(name, 40)} has an unusable location {excerpt(url)}", _RELOCK)
    return CondaPackage(
        name=name, version=str(record.version), build=str(record.build), subdir=str(record.subdir),
        url=url, sha256=sha256, md5=_hex(record.md5), depends=tuple(str(d) for d in record.depends),
    )


def _pypi_package(entry: PypiLockedPackage, shown: str) -> PypiPackage:
    name, version, location = str(entry.name), str(entry.version), str(entry.location)
    if not is_python_name(name) or not is_python_version(version):
        raise LockError(f"{shown}: PyPI package {excerpt(name, 40)} {excerpt(version, 40)} is not a Python name and version", _RELOCK)
    if not location.startswith(("https://", "http://")):
        # pixi writes a path (an editable or local project) or git+… for sources it built: nothing r2env can fetch
        # and hash before the build.
        raise LockError(f"{shown}: PyPI package {name} comes from {excerpt(location, 60)}, and r2env installs only PyPI packages "
                        "locked as downloadable files with a sha256", "depend on a released version (from an index) instead")
    try:
        sha256 = _hex(entry.hashes.sha256) if entry.hashes is not None else ""
    except AttributeError:  # py-rattler 0.28 gives an entry without hashes an empty PackageHashes that raises here
        sha256 = ""
    if not _HEX64.match(sha256):
        raise LockError(f"{shown}: PyPI package {name} {version} has no sha256 hash", _RELOCK)
    package = PypiPackage(str(canonicalize_name(name)), version, location, sha256)
    if not _URL.match(location) or not _PYPI_FILE.match(urllib.parse.unquote(package.filename)):
        raise LockError(f"{shown}: PyPI package {name} has an unusable URL {excerpt(location)} (not a wheel or sdist file)", _RELOCK)
    return package


def _channel_key(channel: str) -> str:
    """A channel as pixi compares it: a bare name is conda-forge's host's (https://conda.anaconda.org/NAME)."""
    channel = channel.strip().rstrip("/")
    return channel if "://" in channel else f"https://conda.anaconda.org/{channel}"


def check_satisfies(lock: PixiLockFile, environment: PixiEnvironment, shown: str) -> None:
    """pixi's own staleness rule, for what r2env installs: every dependency the manifest declares for the environment
    (linux-64) is locked at a version its spec allows, from the channels it declares."""
    from rattler import MatchSpec

    problems: list[str] = []
    declared_channels = {_channel_key(c) for c in environment.channels}
    locked_channels = {_channel_key(c) for c in lock.channels}
    if declared_channels and locked_channels and declared_channels != locked_channels:
        problems.append(f"the manifest's channels ({', '.join(sorted(environment.channels))}) are not the lock's ({', '.join(sorted(lock.channels))})")
    packages = {p.name: p for p in lock.packages}
    for name, spec in environment.conda:
        package = packages.get(name)
        if package is None:
            problems.append(f"{name} is declared but not locked")
            continue
        if spec not in ("*", ""):
            try:
                matches = MatchSpec(f"{name} {spec}").matches(_record(package))
            except Exception:
                raise SpecError(f"{environment.name}: {name} = {excerpt(spec)} is not a conda match spec", "fix the manifest") from None
            if not matches:
                problems.append(f"{name} {spec} is declared but {package.version} is locked")
    pypi = {p.name: p for p in lock.pypi}
    for name, spec in environment.pypi:
        locked = pypi.get(name)
        if locked is None:
            problems.append(f"PyPI package {name} is declared but not locked")
            continue
        try:
            if spec and Version(locked.version) not in SpecifierSet(spec):
                problems.append(f"PyPI package {name} {spec} is declared but {locked.version} is locked")
        except (InvalidSpecifier, InvalidVersion):
            raise SpecError(f"{environment.name}: PyPI dependency {name} = {excerpt(spec)} is not a PEP 440 specifier", "fix the manifest") from None
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise LockError(f"{shown} is stale for environment {lock.environment!r}: {problems[0]}{more}", "run `pixi lock` and commit pixi.lock")


def _record(package: CondaPackage) -> PackageRecord:
    from rattler import BuildString, PackageRecord

    # Only what a match spec looks at: name, version and build.
    return PackageRecord(name=package.name, version=package.version, build=BuildString(package.build), build_number=0,
                         subdir=package.subdir, depends=list(package.depends))


def lock_digest(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def read_pixi_environment(root: Path, manifest: PixiManifest, environment_name: str) -> PixiLockFile:
    """The chosen environment of the repository's pixi.lock; pixi.toml alone is one sentence: run `pixi lock`."""
    environment = manifest.environment(environment_name)
    path = root / manifest.lockfile
    if not path.is_file():
        raise SpecError(f"{manifest.path} has no {manifest.lockfile} beside it: run `pixi lock` and commit {manifest.lockfile}",
                        "r2env installs pixi projects exactly from their lock and never solves them")
    return parse_pixi_lock(path, manifest.lockfile, environment)
