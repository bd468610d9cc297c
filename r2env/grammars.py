"""The grammars of values that reach a Dockerfile or a shell: checked where they are read (issue 17), so a newline
in a locked version can never become its own `RUN` line. Every pattern is anchored and linear (no nested repeats)."""

from __future__ import annotations

import re

from packaging.markers import InvalidMarker, Marker
from packaging.utils import InvalidName, canonicalize_name
from packaging.version import InvalidVersion, Version

# A canonical (PEP 503) project name, as locks write them.
_CANONICAL_NAME = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
# PEP 440 text as written in locks: no spaces (packaging's Version() strips surrounding whitespace, a lock must not
# carry any).
_VERSION_TEXT = re.compile(r"^[A-Za-z0-9.!+_-]{1,128}$")
SHA256_HASH = re.compile(r"^sha256:[0-9a-f]{64}$")
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
# Debian policy 5.6.1 (package names) and 5.6.12 (versions: [epoch:]upstream[-revision], upstream starting with a digit).
DEBIAN_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
DEBIAN_VERSION = re.compile(r"^(?:[0-9]+:)?[0-9][A-Za-z0-9.+~-]*$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def is_python_name(name: str) -> bool:
    """A PEP 508 project name (any case, `.` and `_` allowed)."""
    try:
        canonicalize_name(name, validate=True)
    except InvalidName:
        return False
    return True


def is_canonical_python_name(name: str) -> bool:
    return bool(_CANONICAL_NAME.match(name))


def is_python_version(version: str) -> bool:
    if not _VERSION_TEXT.match(version):
        return False
    try:
        Version(version)
    except InvalidVersion:
        return False
    return True


def is_marker(marker: str) -> bool:
    if _CONTROL.search(marker):
        return False
    try:
        Marker(marker)
    except InvalidMarker:
        return False
    return True


def has_control(value: str) -> bool:
    """A newline, tab or other control character: never part of a name, version, path or URL r2env renders."""
    return bool(_CONTROL.search(value))


def excerpt(value: object, width: int = 80) -> str:
    """A bad value as an error shows it: its repr, cut to a line's worth."""
    shown = repr(value)
    return shown if len(shown) <= width else shown[: width - 3] + "..."


# "Writing R Extensions" 1.1.1: a package name has letters, digits and periods, starts with a letter and does not
# end with a period; a version is at least two non-negative integers separated by . or -.
R_PACKAGE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9.]{0,98}[A-Za-z0-9]$")
R_PACKAGE_VERSION = re.compile(r"^[0-9]{1,9}(?:[.-][0-9]{1,9}){1,6}$")
# An http(s) or file URL without spaces, quotes or shell metacharacters: R code and shell scripts name it.
URL = re.compile(r"^(?:https?://[A-Za-z0-9.-]+(?::[0-9]{1,5})?|file://)(?:/[A-Za-z0-9._~%+:@=,-]*)*$")
