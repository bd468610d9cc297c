"""Which Python an image gets, and from where: Debian's own python3 when a suite ships it, else uv's standalone builds."""

from __future__ import annotations

from packaging.specifiers import SpecifierSet
from packaging.version import Version

from r2env.errors import SpecError
from r2env.inspect import PythonRequest
from r2env.parsers.runtime import CONDA_ONLY_VERSIONS
from r2env.spec import Interpreter

# Debian suites r2env can bootstrap, and the python3 each ships.
DEBIAN_PYTHON = {"bookworm": "3.11", "trixie": "3.13"}
DEFAULT_SUITE = "bookworm"
# Versions a uv-managed standalone build can provide (python-build-standalone publishes these).
STANDALONE_VERSIONS = ("3.8", "3.9", "3.10", "3.11", "3.12", "3.13", "3.14")


def suite_for(version: str) -> str | None:
    return next((suite for suite, shipped in DEBIAN_PYTHON.items() if shipped == version), None)


def choose_interpreter(request: PythonRequest, default_suite: str = DEFAULT_SUITE) -> tuple[Interpreter, str]:
    """Return the interpreter and the Debian suite of the base image."""
    default_version = DEBIAN_PYTHON[default_suite]
    if request.version:
        suite = suite_for(request.version)
        if suite:
            return Interpreter(request.version, "debian", f"{request.source} asks for {request.version}; Debian {suite} ships it"), suite
        if request.version in CONDA_ONLY_VERSIONS:
            raise SpecError(
                f"{request.source}: Python {request.version} comes only from conda, and r2env builds it from runtime.txt with "
                "requirements.txt (not with a Pipfile or pyproject.toml yet)",
                "ask for python-X.Y in runtime.txt beside requirements.txt, or for Python 3.8 or newer",
            )
        if request.version not in STANDALONE_VERSIONS:
            raise SpecError(
                f"{request.source}: Python {request.version} is not a version r2env knows",
                f"ask for one of {', '.join(STANDALONE_VERSIONS)}",
            )
        return (
            Interpreter(request.version, "uv", f"{request.source} asks for {request.version}; no Debian suite ships it"),
            default_suite,
        )
    if request.specifier:
        specifier = SpecifierSet(request.specifier)
        debian = [(suite, v) for suite, v in DEBIAN_PYTHON.items() if Version(v) in specifier]
        debian.sort(key=lambda item: (item[0] != default_suite, -Version(item[1]).minor))
        if debian:
            suite, version = debian[0]
            return Interpreter(version, "debian", f"{request.source} {request.specifier!r} allows {version} (Debian {suite})"), suite
        standalone = [v for v in STANDALONE_VERSIONS if Version(v) in specifier]
        if not standalone:
            raise SpecError(f"{request.source}: no known Python satisfies {request.specifier!r}", "widen requires-python")
        version = standalone[-1]
        return Interpreter(version, "uv", f"{request.source} {request.specifier!r} allows {version}"), default_suite
    asked = f"{request.source} asks for Python 3" if request.source else "no version requested"
    return Interpreter(default_version, "debian", f"{asked}: Debian {default_suite}'s Python"), default_suite
