"""A pixi environment's locked files, fetched on the host and handed to the build as a tiny image: the conda packages
exactly as for conda-lock.yml (r2env/conda/packages.py), plus the PyPI files pixi.lock names, each checked against
its sha256 before the build and installed from the image with pip's --require-hashes, never from an index.
--channel-map applies to both, so a mirror or an air-gapped copy serves PyPI files too."""

from __future__ import annotations

import hashlib
import json
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from r2env.conda.packages import INSTALLER, PACKAGES_DIR, _under, build_staged, fetch_package, map_url, records_json, ssl_context, stage_packages
from r2env.events import BuildEvent, Kind, Phase
from r2env.parsers.conda_lock import CondaLockFile, CondaPackage
from r2env.pixi.lockfile import PixiLockFile, PypiPackage

if TYPE_CHECKING:
    from r2env.engine import Engine

PYPI_DIR = f"{PACKAGES_DIR}/pypi"  # the PyPI files, requirements.txt (paths and hashes) and constraints.txt
_IMAGE = "r2env/pixi-packages"


def wheel_name(package: PypiPackage) -> str:
    # pip reads the version and tags from the file's name: the URL's percent-encoding (%2B for +) must go.
    return urllib.parse.unquote(package.filename)


def requirements_text(lock: PixiLockFile) -> str:
    """pip's requirements: each locked file by its path in the build stage, with the sha256 pixi.lock gives it."""
    return "".join(f"{PYPI_DIR}/{wheel_name(p)} --hash=sha256:{p.sha256}\n" for p in lock.pypi)


def environment_constraints(lock: CondaLockFile) -> str:
    """What the environment already has, as pip constraints: the notebook server added without a lock must not
    replace any of it (the same rule r2env.lock's server resolution follows, r2env/lock/locking.py)."""
    present: dict[str, str] = {}
    for package in lock.packages:
        try:
            present[str(canonicalize_name(package.name))] = str(Version(package.version))
        except InvalidVersion:
            continue
    present |= {p.name: p.version for p in lock.pip}
    present.pop("python", None)
    return "".join(f"{name}=={version}\n" for name, version in sorted(present.items()))


def package_image(lock: PixiLockFile) -> str:
    """Named by what it holds: the conda packages and PyPI files (by hash), the constraints and the installer."""
    content = records_json(lock) + requirements_text(lock) + environment_constraints(lock)
    digest = hashlib.sha256(content.encode() + INSTALLER.read_bytes()).hexdigest()
    return f"{_IMAGE}:{digest[:20]}"


def stage_pixi_packages(lock: PixiLockFile, channel_map: Sequence[tuple[str, str]], directory: Path, ca_bundle: str,
                        trusted_channels: Sequence[str] | None = None) -> None:
    context = ssl_context(ca_bundle)
    stage_packages(lock, channel_map, directory, context, trusted_channels)
    pypi = directory / "pypi"
    pypi.mkdir()
    for package in lock.pypi:
        url = map_url(package.url, channel_map)
        public_only = trusted_channels is not None and url == package.url and not _under(url, trusted_channels)
        # fetch_package checks the sha256 (and names the file and both hashes when it differs).
        as_file = CondaPackage(package.name, package.version, "", "", package.url, package.sha256, "", ())
        (pypi / wheel_name(package)).write_bytes(fetch_package(as_file, url, context, lock.path, public_only))
    (pypi / "requirements.txt").write_text(requirements_text(lock), encoding="utf-8")
    (pypi / "constraints.txt").write_text(environment_constraints(lock), encoding="utf-8")


def ensure_pixi_package_image(
    engine: "Engine", lock: PixiLockFile, channel_map: Sequence[tuple[str, str]], ca_bundle: str, refetch: bool = False,
    trusted_channels: Sequence[str] | None = None,
) -> Iterator[BuildEvent]:
    image = package_image(lock)
    counts = f"{len(lock.packages)} conda and {len(lock.pypi)} PyPI packages"
    if engine.image_id(image) and not refetch:
        yield BuildEvent(Phase.BUILD, Kind.INFO, f"pixi packages: {image} is present ({counts})")
        return
    yield BuildEvent(Phase.BUILD, Kind.INFO, f"pixi packages: fetching {counts} from {lock.path} and checking their hashes")
    build_staged(engine, image, lambda directory: stage_pixi_packages(lock, channel_map, directory, ca_bundle, trusted_channels), refetch)
    yield BuildEvent(Phase.BUILD, Kind.INFO, f"pixi packages: built {image} ({json.dumps(lock.environment)} environment)")
