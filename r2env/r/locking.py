"""Locking an R environment: every package in the user library, with the file it came from and its sha256.

install.R is code, so what it installs is known only by running it (as `renv::snapshot()` records what a session
installed): `r2env lock` builds the image with everything else locked, lists the user library in it, and finds each
package's file in the repository (its current file, else CRAN's Archive/ layout). renv.lock alone needs no build:
its packages are its own. r2env downloads each file once to hash it; locked builds download exactly that file."""

from __future__ import annotations

import hashlib
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Callable

from r2env.errors import LockError
from r2env.grammars import R_PACKAGE_NAME, R_PACKAGE_VERSION, URL, excerpt
from r2env.inspect import RepoFacts
from r2env.lock.lockfile import LockedFile, LockedRPackage, RSection
from r2env.r.scripts import SNAPSHOT
from r2env.r.versions import RChoice

_MARK = "r2env-package"


@dataclass(frozen=True)
class Candidate:
    name: str
    version: str
    urls: tuple[str, ...]


def parse_snapshot(output: str, own_package: str) -> tuple[Candidate, ...]:
    """The SNAPSHOT script's lines; the repository's own package (DESCRIPTION) is the repository, not a dependency."""
    found = []
    for line in output.splitlines():
        words = line.split()
        if len(words) < 4 or words[0] != _MARK:
            continue
        name, version, urls = words[1], words[2], tuple(words[3:])
        if name == own_package:
            continue
        if not (R_PACKAGE_NAME.match(name) and R_PACKAGE_VERSION.match(version) and all(URL.match(url) for url in urls)):
            raise LockError(f"the image's R library lists {excerpt(line, 80)}, which r2env cannot lock", "report this: R printed an unexpected line")
        found.append(Candidate(name, version, urls))
    return tuple(found)


def renv_candidates(facts: RepoFacts, mirror: str) -> tuple[Candidate, ...]:
    """renv.lock's packages, each in its repository (or --cran-mirror's): its current file, else CRAN's Archive/."""
    assert facts.renv_lock is not None
    return tuple(Candidate(p.name, p.version, file_urls(mirror or p.repository, p.name, p.version)) for p in facts.renv_lock.packages)


def file_urls(repository: str, name: str, version: str) -> tuple[str, ...]:
    contrib = f"{repository.rstrip('/')}/src/contrib"
    return (f"{contrib}/{name}_{version}.tar.gz", f"{contrib}/Archive/{name}/{name}_{version}.tar.gz")


Fetch = Callable[[str], bytes]


def url_fetcher(ca_file: str = "") -> Fetch:
    context = ssl.create_default_context(cafile=ca_file or None)

    def fetch(url: str) -> bytes:
        with urllib.request.urlopen(url, timeout=300, context=context) as response:
            data: bytes = response.read()
            return data

    return fetch


def hash_candidates(candidates: tuple[Candidate, ...], fetch: Fetch, why: str) -> tuple[LockedRPackage, ...]:
    locked = []
    for candidate in candidates:
        problems = []
        for url in candidate.urls:
            try:
                data = fetch(url)
            except (OSError, urllib.error.URLError, ValueError) as error:
                problems.append(f"{url}: {getattr(error, 'reason', error)}")
                continue
            locked.append(LockedRPackage(candidate.name, candidate.version, url, hashlib.sha256(data).hexdigest()))
            break
        else:
            raise LockError(
                f"the R package {candidate.name} {candidate.version} ({why}) is not in the repository: {'; '.join(problems)[:300]}",
                "r2env locks R packages from CRAN-like repositories: install it from one (not GitHub), or check --cran-mirror",
            )
    return tuple(sorted(locked, key=lambda p: p.name.lower()))


def hash_file(url: str, expected: str, fetch: Fetch, what: str) -> LockedFile:
    """A file r2env downloads in builds, hashed once here; `expected` (a pinned sha256) must match."""
    try:
        data = fetch(url)
    except (OSError, urllib.error.URLError, ValueError) as error:
        raise LockError(f"cannot download {what} from {url}: {getattr(error, 'reason', error)}",
                        "give the URL of a reachable copy, or lock without it") from None
    digest = hashlib.sha256(data).hexdigest()
    if expected and digest != expected:
        raise LockError(f"{what} from {url} has sha256 {digest}, not the pinned {expected}", "check the file: it is not the one r2env pins")
    return LockedFile(url, digest)


def snapshot_library(run: Callable[[list[str]], tuple[int, str]], own_package: str) -> tuple[Candidate, ...]:
    code, output = run(["Rscript", "--no-init-file", "-e", SNAPSHOT])
    if code != 0:
        raise LockError(f"cannot list the R packages in the image: {excerpt(output.strip()[-300:], 300)}", "check install.R and --cran-mirror")
    return parse_snapshot(output, own_package)


def r_section(choice: RChoice, repository: str, packages: tuple[LockedRPackage, ...]) -> RSection:
    return RSection(choice.version, choice.source, repository, packages)
