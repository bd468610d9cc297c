"""apt.txt: one Debian package per line; comments and blank lines allowed."""

from __future__ import annotations

import re

from r2env.errors import SpecError

# Debian policy 5.6.1: package names are [a-z0-9][a-z0-9+.-]+; an optional =VERSION pins it.
_PACKAGE = re.compile(r"^[a-z0-9][a-z0-9+.-]+(=[A-Za-z0-9.+~:-]+)?$")


def parse_apt(text: str, path: str) -> tuple[str, ...]:
    packages: dict[str, None] = {}  # ordered and O(1) to look up: a list made a 10 MB apt.txt quadratic (issue 17)
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        for word in line.split():
            if not _PACKAGE.match(word):
                shown = repr(word) if len(word) <= 60 else repr(word[:57]) + "..."
                raise SpecError(
                    f"{path} line {number}: {shown} is not a Debian package name",
                    "use lower-case names like 'libgl1' (optionally NAME=VERSION), one per line",
                )
            packages.setdefault(word)
    return tuple(packages)
