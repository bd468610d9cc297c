"""runtime.txt, as repo2docker reads it: `python-X.Y` (a patch level is accepted and ignored)."""

from __future__ import annotations

import re

from r2env.errors import SpecError

_PYTHON = re.compile(r"^python-(\d+)\.(\d+)(?:\.\d+)?$")


def parse_runtime(text: str, path: str) -> str:
    """Return the requested Python 'X.Y'."""
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    if len(lines) != 1:
        raise SpecError(f"{path}: expected one line such as 'python-3.11'", "write the Python version as python-X.Y")
    value = lines[0]
    match = _PYTHON.match(value)
    if match:
        return f"{match.group(1)}.{match.group(2)}"
    if value.startswith("r-"):
        raise SpecError(f"{path}: R environments ({value!r}) are not supported yet", "remove runtime.txt or use Python")
    raise SpecError(f"{path}: {value!r} is not understood", "write the Python version as python-X.Y, e.g. python-3.11")
