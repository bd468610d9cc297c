"""DESCRIPTION: an R package's metadata, in Debian control file format ("Writing R Extensions" 1.1.1). r2env reads
the package's name and the packages it needs; R itself reads the rest when it installs the package."""

from __future__ import annotations

import re
from dataclasses import dataclass

from r2env.errors import SpecError
from r2env.grammars import R_PACKAGE_NAME, excerpt

_FIELD = re.compile(r"^([A-Za-z][A-Za-z0-9/@._-]*):[ \t]*(.*)$")
_DEPENDENCY = re.compile(r"^\s*([A-Za-z][A-Za-z0-9.]*)\s*(?:\(([^)]*)\))?\s*$")
# Shipped with R itself: never installed from a repository.
BASE_PACKAGES = frozenset((
    "R", "base", "compiler", "datasets", "graphics", "grDevices", "grid", "methods", "parallel", "splines", "stats",
    "stats4", "tcltk", "tools", "utils",
))


@dataclass(frozen=True)
class Description:
    path: str
    package: str
    version: str
    needs: tuple[str, ...]  # Depends, Imports and LinkingTo, without R and its base packages


def parse_dcf(text: str, path: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    current = ""
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            if fields:
                break  # the first record is the package's
            continue
        if line[0] in " \t":
            if not current:
                raise SpecError(f"{path} line {number}: a continuation line before any field", "start the file with 'Package: NAME'")
            fields[current] += " " + line.strip()
            continue
        match = _FIELD.match(line)
        if match is None:
            raise SpecError(f"{path} line {number}: {excerpt(line, 60)} is not 'Field: value'",
                            "write one field per line (continuation lines start with a space)")
        current = match.group(1)
        fields[current] = match.group(2).strip()
    return fields


def dependency_names(value: str, path: str, field: str) -> tuple[str, ...]:
    names = []
    for item in value.split(","):
        if not item.strip():
            continue
        match = _DEPENDENCY.match(item)
        if match is None:
            raise SpecError(f"{path}: {field}: {excerpt(item.strip(), 60)} is not 'package' or 'package (>= version)'",
                            "list packages separated by commas")
        names.append(match.group(1))
    return tuple(names)


def parse_description(text: str, path: str) -> Description:
    fields = parse_dcf(text, path)
    package = fields.get("Package", "")
    if not package:
        raise SpecError(f"{path}: has no Package field", "start it with 'Package: NAME' (an R package's DESCRIPTION)")
    if not R_PACKAGE_NAME.match(package):
        raise SpecError(f"{path}: Package {excerpt(package, 60)} is not an R package name", "use letters, digits and periods, starting with a letter")
    needs: dict[str, None] = {}
    for field in ("Depends", "Imports", "LinkingTo"):
        for name in dependency_names(fields.get(field, ""), path, field):
            if name not in BASE_PACKAGES:
                needs.setdefault(name)
    return Description(path, package, fields.get("Version", ""), tuple(needs))
