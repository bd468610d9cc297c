"""Which R an image gets, and from where: Debian's r-base-core where a suite r2env can bootstrap ships the version
asked for, otherwise a build of R from Posit's R builds (https://github.com/rstudio/r-builds), as repo2docker uses."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Literal

from r2env.errors import SpecError
from r2env.parsers.runtime import Runtime

# What r-base-core each suite ships (checked with `apt-cache policy r-base-core` against each suite's index).
DEBIAN_R = {"bookworm": "4.2.2", "trixie": "4.5.0"}
# The first release of each R minor version (https://cran.r-project.org/src/base/R-4/, R-3/): the R that was
# current at a date. repo2docker maps a bare X.Y to its latest patch release the same way.
R_RELEASES = (
    ("3.5", "2018-04-23", "3.5.3"), ("3.6", "2019-04-26", "3.6.3"), ("4.0", "2020-04-24", "4.0.5"),
    ("4.1", "2021-05-18", "4.1.3"), ("4.2", "2022-04-22", "4.2.3"), ("4.3", "2023-04-21", "4.3.3"),
    ("4.4", "2024-04-24", "4.4.3"), ("4.5", "2025-04-11", "4.5.1"),
)
LATEST_PATCH = {minor: patch for minor, _, patch in R_RELEASES}
# Posit's R builds name each Debian release by number.
POSIT_PLATFORM = {"bookworm": "debian-12", "trixie": "debian-13"}
DEFAULT_R_BUILDS_URL = "https://cdn.posit.co/r/{platform}/pkgs/r-{version}_1_amd64.deb"
# The first Posit Package Manager snapshot with a working IRkernel (repo2docker's RSPM_CUTOFF_DATE): older dates
# were served by Microsoft's MRAN, which is gone.
FIRST_SNAPSHOT = "2018-12-07"


@dataclass(frozen=True)
class RChoice:
    version: str  # X.Y.Z
    source: Literal["debian", "posit"]
    suite: str  # Debian suite of the base image
    snapshot: str  # YYYY-MM-DD of the CRAN snapshot, or "latest"
    reason: str

    @property
    def minor(self) -> str:
        return ".".join(self.version.split(".")[:2])


def current_at(date: str) -> str:
    """The R minor version that was current on a date."""
    current = ""
    for minor, released, _ in R_RELEASES:
        if released <= date:
            current = minor
    return current or R_RELEASES[0][0]


def _debian_suite(version: str, preferred: str) -> str | None:
    """The suite whose r-base-core is `version` (X.Y: any patch; X.Y.Z: exactly), the preferred suite first."""
    suites = sorted(DEBIAN_R, key=lambda suite: suite != preferred)
    for suite in suites:
        shipped = DEBIAN_R[suite]
        if shipped == version or (version.count(".") == 1 and shipped.startswith(version + ".")):
            return suite
    return None


def choose_r(runtime: Runtime | None, asked_by_lock: tuple[str, str], default_suite: str, base_is_fixed: bool) -> RChoice:
    """`runtime`: runtime.txt when it names R; `asked_by_lock`: (version, file) from renv.lock, used when runtime.txt
    names no version; `base_is_fixed`: --base-image was given, so its suite stays whatever R is asked for."""
    date = runtime.date if runtime is not None and runtime.name == "r" else ""
    if date and date < FIRST_SNAPSHOT:
        raise SpecError(f"{runtime.path if runtime else 'runtime.txt'}: no CRAN snapshot exists for {date}: Posit Package Manager's "
                        f"snapshots start on {FIRST_SNAPSHOT} (MRAN, which had older ones, is gone)",
                        f"use a date on or after {FIRST_SNAPSHOT}")
    if date and date > datetime.date.today().isoformat():
        raise SpecError(f"{runtime.path if runtime else 'runtime.txt'}: {date} is in the future: no CRAN snapshot exists for it yet",
                        "use a past date")
    snapshot = date or "latest"
    version, asked = "", ""
    if runtime is not None and runtime.name == "r" and runtime.version:
        version, asked = runtime.version, f"{runtime.path} asks for R {runtime.version}"
    elif asked_by_lock[0]:
        version, asked = asked_by_lock[0], f"{asked_by_lock[1]} was made with R {asked_by_lock[0]}"
    elif date:
        version = current_at(date)
        asked = f"{runtime.path if runtime else 'runtime.txt'} names only a date: R {version} was current on {date}"
    if not version:
        shipped = DEBIAN_R.get(default_suite, DEBIAN_R["bookworm"])
        suite = default_suite if default_suite in DEBIAN_R else "bookworm"
        return RChoice(shipped, "debian", suite, snapshot, f"no R version asked for: Debian {suite}'s R {shipped}")
    debian = _debian_suite(version, default_suite)
    if debian and (not base_is_fixed or debian == default_suite):
        return RChoice(DEBIAN_R[debian], "debian", debian, snapshot, f"{asked}; Debian {debian} ships R {DEBIAN_R[debian]}")
    minor = ".".join(version.split(".")[:2])
    if minor not in LATEST_PATCH:
        known = ", ".join(LATEST_PATCH)
        raise SpecError(f"{asked}, which is not an R version r2env knows", f"ask for one of {known} (or X.Y.Z of one of them)")
    exact = version if version.count(".") == 2 else LATEST_PATCH[minor]
    suite = default_suite if default_suite in POSIT_PLATFORM else "bookworm"
    return RChoice(exact, "posit", suite, snapshot, f"{asked}; no Debian suite ships it: Posit's R build {exact} for Debian {suite}")


def r_builds_url(template: str, choice: RChoice) -> str:
    return template.format(platform=POSIT_PLATFORM.get(choice.suite, "debian-12"), version=choice.version)
