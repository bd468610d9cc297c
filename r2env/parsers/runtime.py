"""runtime.txt, as repo2docker reads it: `NAME-VERSION`, `NAME-VERSION-YYYY-MM-DD` or `NAME-YYYY-MM-DD`
(repo2docker's `BuildPack.runtime`), where NAME is `python` or `r`."""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass

from r2env.errors import SpecError

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_PYTHON_VERSION = re.compile(r"^\d+(?:\.\d+){0,2}$")
_R_VERSION = re.compile(r"^\d\.\d{1,2}(?:\.\d{1,2})?$")  # X.Y or X.Y.Z (R's own numbering)
# repo2docker's default for a bare major version (its `major_pythons`); "3" means r2env's default Python 3.
MAJOR_PYTHONS = {"2": "2.7"}
# Older Pythons real Binder repositories still ask for, which neither Debian nor a standalone build provides: only
# conda channels do (repo2docker serves them from conda-forge), so r2env builds them as a conda environment.
CONDA_ONLY_VERSIONS = ("2.7", "3.5", "3.6", "3.7")


@dataclass(frozen=True)
class Runtime:
    path: str
    name: str  # "python" or "r"
    version: str  # as written ("3", "3.7", "3.7.2", "4.2"); "" when only a date is given
    date: str  # "YYYY-MM-DD" or ""

    @property
    def python(self) -> str:
        """The Python this runtime asks for: "X.Y", or "" for the default Python 3 (also for R runtimes)."""
        if self.name != "python":
            return ""
        parts = self.version.split(".")
        if len(parts) == 1:
            return MAJOR_PYTHONS.get(parts[0], "")
        return ".".join(parts[:2])


def names_r(text: str) -> bool:
    """Whether runtime.txt asks for R: checked even where runtime.txt is otherwise ignored, because repo2docker's
    R buildpack comes before conda and Pipfile in its order."""
    return text.strip().startswith("r-")


def parse_runtime(text: str, path: str) -> Runtime:
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    if len(lines) != 1:
        raise SpecError(f"{path}: expected one line such as 'python-3.11'", "write the Python version as python-X.Y")
    value = lines[0]
    excerpt = value if len(value) <= 60 else value[:57] + "..."
    parts = value.split("-")
    name = parts[0]
    if len(parts) not in (2, 4, 5) or not all(parts) or name not in ("python", "r"):
        raise SpecError(f"{path}: {excerpt!r} is not understood", "write python-X.Y (e.g. python-3.11), or r-X.Y-YYYY-MM-DD for R")
    version = parts[1] if len(parts) in (2, 5) else ""
    date = "-".join(parts[-3:]) if len(parts) in (4, 5) else ""
    if date:
        try:
            if not _DATE.match(date):
                raise ValueError(date)
            datetime.date.fromisoformat(date)
        except ValueError:
            raise SpecError(f"{path}: {date!r} in {excerpt!r} is not a date", "write the date as YYYY-MM-DD") from None
    if name == "python" and not (_PYTHON_VERSION.match(version) and ("." in version or version in ("2", "3"))):
        raise SpecError(f"{path}: {excerpt!r} is not understood", "write the Python version as python-X.Y, e.g. python-3.11")
    if name == "r" and version and not _R_VERSION.match(version):
        raise SpecError(f"{path}: {excerpt!r} is not understood", "write R's version as r-X.Y or r-X.Y.Z, optionally with a date: r-4.2-2023-01-05")
    return Runtime(path, name, version, date)
