"""pip requirements files (https://pip.pypa.io/en/stable/reference/requirements-file-format/)."""

from __future__ import annotations

import posixpath
import re
import shlex
from dataclasses import dataclass

from packaging.requirements import InvalidRequirement, Requirement

from r2env.errors import SpecError

# Options pip accepts inside a requirements file that take a value / take none.
_VALUE_OPTIONS = {
    "-i", "--index-url", "--extra-index-url", "-f", "--find-links", "--no-binary", "--only-binary",
    "--trusted-host", "--use-feature", "--config-settings", "--global-option",
}
_FLAG_OPTIONS = {"--pre", "--prefer-binary", "--no-index", "--require-hashes"}
_INCLUDE_OPTIONS = {"-r", "--requirement"}
_CONSTRAINT_OPTIONS = {"-c", "--constraint"}
# Per-requirement options: pip accepts `--hash=sha256:…` and `--hash sha256:…`.
_HASH = re.compile(r"\s+--hash(?:=|\s+)\S+")
_OTHER_OPTION = re.compile(r"\s(--?[A-Za-z][\w-]*)")
_URL = re.compile(r"^[a-z][a-z0-9+.-]*://|^git\+|^hg\+|^svn\+|^bzr\+", re.IGNORECASE)


@dataclass(frozen=True)
class RequirementsFile:
    path: str
    requirements: tuple[str, ...]  # PEP 508 strings, as written
    includes: tuple[str, ...]  # -r files, repo-relative
    local_references: tuple[str, ...]  # -e . / ./pkg / file: — need the repository contents to install
    hashed: bool  # every requirement carries --hash
    options: tuple[str, ...] = ()  # index and install options, as pip arguments
    constraints: tuple[str, ...] = ()  # -c files, repo-relative: they limit versions, they install nothing

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(Requirement(r).name for r in self.requirements if not _URL.match(r))


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """Join backslash continuations and drop comments, keeping the first physical line number."""
    lines: list[tuple[int, str]] = []
    pending = ""
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        if not pending:
            start = number
        # pip strips comments starting with '#' at line start or after whitespace.
        line = re.sub(r"(^|\s+)#.*$", "", raw)
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = (pending + line).strip()
        pending = ""
        if line:
            lines.append((start, line))
    if pending.strip():
        lines.append((start, pending.strip()))
    return lines


def _is_local(target: str) -> bool:
    return target.startswith((".", "/", "file:")) or target.endswith("/") or not _URL.match(target) and "/" in target


def parse_requirements(text: str, path: str) -> RequirementsFile:
    """Parse a requirements file; `path` is repo-relative and names the file in errors."""
    requirements: list[str] = []
    includes: list[str] = []
    constraints: list[str] = []
    local: list[str] = []
    options: list[str] = []
    hashed = True
    base = posixpath.dirname(path)
    for number, line in _logical_lines(text):
        where = f"{path} line {number}"
        if line.startswith("-"):
            try:
                words = shlex.split(line, posix=True)
            except ValueError as error:
                raise SpecError(f"{where}: cannot split {line!r} ({error})", "fix the quoting") from None
            head = words[0]
            option, _, attached = head.partition("=") if head.startswith("--") else (head[:2], "", head[2:])
            value = attached or (words[1] if len(words) > 1 else "")
            if option in _INCLUDE_OPTIONS or option in _CONSTRAINT_OPTIONS:
                if not value:
                    raise SpecError(f"{where}: {option} needs a file name", "e.g. '-r requirements-extra.txt'")
                included = posixpath.normpath(posixpath.join(base, value))
                if posixpath.isabs(value) or included.startswith("../") or included == "..":
                    raise SpecError(f"{where}: {value!r} is outside the repository", "include files from inside the repository")
                (includes if option in _INCLUDE_OPTIONS else constraints).append(included)
                continue
            if option in ("-e", "--editable"):
                if not value:
                    raise SpecError(f"{where}: -e needs a path or URL", "e.g. '-e .'")
                if _URL.match(value):
                    requirements.append(value)
                else:
                    local.append(f"-e {value}")  # kept editable: it is installed as written
                hashed = False
                continue
            if option in _VALUE_OPTIONS:
                if not value:
                    raise SpecError(f"{where}: {option} needs a value", "see pip's requirements file format")
                options.extend([option, value])
                continue
            if head in _FLAG_OPTIONS:
                options.append(head)
                continue
            raise SpecError(
                f"{where}: unknown option {head!r}",
                "remove it, or use an option pip accepts in requirements files",
            )
        target = _HASH.sub("", line).strip()
        has_hash = target != line
        unknown = _OTHER_OPTION.search(target.split(";", 1)[0])
        if unknown:
            raise SpecError(f"{where}: unsupported per-requirement option {unknown.group(1)!r}", "only --hash is supported")
        hashed = hashed and has_hash
        if _URL.match(target):
            requirements.append(target)
            continue
        try:
            Requirement(target)
        except InvalidRequirement as error:
            if _is_local(target):
                local.append(target)
                continue
            raise SpecError(
                f"{where}: {target!r} is not a valid requirement",
                f"write it as NAME, NAME==VERSION or NAME>=VERSION ({str(error).splitlines()[0]})",
            ) from None
        requirements.append(target)
    if not requirements and not local:
        hashed = False
    return RequirementsFile(path, tuple(requirements), tuple(includes), tuple(local), hashed, tuple(options), tuple(constraints))
