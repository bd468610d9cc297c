"""The apt steps of an image: install Debian packages (held to a lock's versions), and fold r2env's own into one.

Every apt step pays for `apt-get update`, for reading the package database and for dpkg's triggers; the packages
r2env chooses itself (TLS roots, git, R) change only with r2env, so they share one step. Two stay apart: apt.txt's,
after them, so that editing it reinstalls only its packages; and the step that installs Debian's Python where the
uv stage repeats it (r2env/uv_installer.py), so that uv is ready while R is still installing."""

from __future__ import annotations

import shlex
from typing import Iterable, Mapping, Sequence

from r2env.spec import BuildSecret, Stage, Step
from r2env.uv_installer import installs_python

_APT_PREFERENCES = "/etc/apt/preferences.d/r2env-lock"
_LOCKED = " (locked versions)"
APT_SECRETS: tuple[BuildSecret, ...] = ("ca", "proxy")  # apt needs no package index setting of pip's or uv's
REPOSITORY_APT = "apt"  # the buildpack of apt.txt: the repository's own packages
# dpkg without its fsync after every file (as Ubuntu's own container images set): the installed files are the same,
# and a step interrupted half-way leaves no layer anyway. Debian's Node.js and npm installed in 26 s instead of 33 s here.
APT_GET_INSTALL = "apt-get install -y -q -o Dpkg::Options::=--force-unsafe-io --no-install-recommends"


def apt_install(packages: Iterable[str], buildpack: str, description: str, pins: Mapping[str, str] | None = None) -> Step:
    """Install Debian packages; with a lock's pins, apt is held to the exact version of every package it
    installs (dependencies included) through a preferences file that lives only during the step."""
    requested = tuple(packages)
    names = " ".join(shlex.quote(p) for p in requested)
    install = f"{APT_GET_INSTALL} {names}"
    if pins:
        preferences = "".join(f"Package: {name}\\nPin: version {version}\\nPin-Priority: 1001\\n\\n" for name, version in sorted(pins.items()))
        exact = " ".join(shlex.quote(f"{p}={pins[p]}") if p in pins else shlex.quote(p) for p in requested)
        install = (
            f"printf '{preferences}' > {_APT_PREFERENCES} && "
            f"{APT_GET_INSTALL} {exact} && rm {_APT_PREFERENCES}"
        )
    return Step(
        kind="run",
        stage=Stage.SYSTEM,
        buildpack=buildpack,
        description=description + (_LOCKED if pins else ""),
        script=f"apt-get update -q && {install}",
        secrets=APT_SECRETS,
        caches=("apt",),
        packages=requested,
    )


def _own_apt(step: Step) -> bool:
    """An apt step r2env chose the packages of (not apt.txt; not a step that installs a downloaded .deb)."""
    return (step.kind == "run" and step.stage is Stage.SYSTEM and "apt" in step.caches and bool(step.packages)
            and step.buildpack != REPOSITORY_APT and not installs_python(step))


def fold_own_apt(steps: Sequence[Step], pins: Mapping[str, str] | None) -> list[Step]:
    """The steps with every apt step of r2env's own packages folded into one, placed before apt.txt's step."""
    own = [step for step in steps if _own_apt(step)]
    if not own:
        return list(steps)
    folded = own[0]
    if len(own) > 1:
        packages = tuple(dict.fromkeys(package for step in own for package in step.packages))
        parts = [own[0].description.removesuffix(_LOCKED)] + [f"{step.buildpack}: {step.description.removesuffix(_LOCKED)}" for step in own[1:]]
        folded = apt_install(packages, own[0].buildpack, "; ".join(parts), pins)
    rest = [step for step in steps if step not in own]
    # Where the first of them was (no other of them comes before it), or before apt.txt's step if that comes first.
    repository = [index for index, step in enumerate(rest) if step.buildpack == REPOSITORY_APT and "apt" in step.caches]
    place = min([steps.index(own[0]), *repository])
    return rest[:place] + [folded] + rest[place:]
