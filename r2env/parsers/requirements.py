"""pip requirements files (https://pip.pypa.io/en/stable/reference/requirements-file-format/)."""

from __future__ import annotations

import posixpath
import re
import shlex
from dataclasses import dataclass

from packaging.requirements import InvalidRequirement, Requirement

from r2env.errors import SpecError
from r2env.grammars import excerpt

# Options pip accepts inside a requirements file that take a value / take none.
_VALUE_OPTIONS = {
    "-i", "--index-url", "--extra-index-url", "-f", "--find-links", "--no-binary", "--only-binary",
    "--trusted-host", "--use-feature", "--config-settings", "--global-option",
}
_FLAG_OPTIONS = {"--pre", "--prefer-binary", "--no-index", "--require-hashes"}
_INCLUDE_OPTIONS = {"-r", "--requirement"}
_CONSTRAINT_OPTIONS = {"-c", "--constraint"}
# Per-requirement options: pip accepts `--hash=sha256:…` and `--hash sha256:…`.
# Linear: a match starts only after whitespace, so a run of spaces is not retried from each of its characters
# (the former `\s+--hash` took 69 s on a line of 100,000 spaces; issue 17). Same for comments below.
_HASH = re.compile(r"(?<!\S)--hash(?:=|\s+)\S+")
# The hashes pip accepts (hashlib names and hex lengths); anything else fails only when pip downloads.
_HASH_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}
_HEX = re.compile(r"[0-9a-fA-F]+")
_COMMENT = re.compile(r"(?:^|(?<=\s))#")
_OTHER_OPTION = re.compile(r"\s(--?[A-Za-z][\w-]*)")
_URL = re.compile(r"^[a-z][a-z0-9+.-]*://|^git\+|^hg\+|^svn\+|^bzr\+", re.IGNORECASE)
_VCS = re.compile(r"^(?:git|hg|svn|bzr)\+", re.IGNORECASE)
# What pip installs from a bare URL: a distribution archive (a VCS URL or `NAME @ URL` names the package instead).
_ARCHIVES = (".whl", ".tar.gz", ".tgz", ".tar.bz2", ".tbz", ".tar.xz", ".txz", ".tar", ".zip")
# A local reference is a path in the repository, optionally with [extras]: it goes to pip (through a shell) as
# written, so it gets a path's characters and nothing a shell or pip would expand.
_LOCAL = re.compile(r"^[\w./+@=,~-]+(?:\[[\w.,\s-]*\])?$")


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
        comment = _COMMENT.search(raw)
        line = raw[: comment.start()].rstrip() if comment else raw
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


def local_path(reference: str) -> str:
    """The repository path a local reference (`-e ./pkg[extra]`, `file:sub/pkg`) installs from, normalised: relative
    to the repository root, where pip runs in the image ("" when it is absolute or leaves the repository)."""
    target = reference.removeprefix("-e ").strip()
    if target.startswith("file:"):
        target = target.removeprefix("file:")
        target = target[2:] if target.startswith("//") else target  # file://PATH; file:///abs stays absolute
    target = target.split("[", 1)[0].split("#", 1)[0]
    normal = posixpath.normpath(target)
    return "" if posixpath.isabs(normal) or normal == ".." or normal.startswith("../") else normal


def _local(where: str, reference: str) -> str:
    """A local reference r2env can install: a path with no shell or pip expansion, inside the repository."""
    target = reference.removeprefix("-e ").strip()
    if not _LOCAL.match(target.removeprefix("file:")):
        raise SpecError(f"{where}: {excerpt(target)} is not a path r2env can install",
                        "write a path inside the repository (letters, digits and ./_+-@=,~), e.g. '-e .' or './pkg'")
    if not local_path(reference):
        raise SpecError(f"{where}: {excerpt(target)} is outside the repository",
                        "the image has only the repository: install a package from inside it, or a released version")
    return reference


def _url(where: str, target: str) -> str:
    if target.lower().startswith("file:"):
        return _local(where, target)  # a file: URL is a local reference: inside the repository or refused
    if any(c.isspace() or c in "`$\\\"'<>|;" for c in target):
        raise SpecError(f"{where}: {excerpt(target)} is not a URL pip can install", "quote nothing and expand nothing: write the URL itself")
    if not _VCS.match(target) and not target.split("#", 1)[0].split("?", 1)[0].lower().endswith(_ARCHIVES):
        raise SpecError(f"{where}: {excerpt(target)} is a URL that names no package",
                        "write NAME @ URL, a URL to a wheel or sdist, or a git+https:// URL")
    return target


def _check_hash(where: str, value: str) -> None:
    algorithm, _, digest = value.partition(":")
    length = _HASH_LENGTHS.get(algorithm.lower())
    if length is None or len(digest) != length or not _HEX.fullmatch(digest):
        raise SpecError(f"{where}: --hash={excerpt(value)} is not a hash pip can check",
                        "write --hash=sha256:<64 hex digits> (pip-compile --generate-hashes writes them)")


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
        if "${" in line or "`" in line:
            # pip expands ${VAR} from its own environment, which is not the user's when the image is built.
            raise SpecError(f"{where}: {excerpt(line)} uses {'${…}' if '${' in line else 'a backtick'}, which r2env does not expand",
                            "write the value itself (environment variables are not passed to the build)")
        if line.startswith("-"):
            try:
                words = shlex.split(line, posix=True)
            except ValueError as error:
                raise SpecError(f"{where}: cannot split {excerpt(line)} ({error})", "fix the quoting") from None
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
                    requirements.append(_url(where, value))
                else:
                    local.append(_local(where, f"-e {value}"))  # kept editable: it is installed as written
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
                f"{where}: unknown option {excerpt(head)}",
                "remove it, or use an option pip accepts in requirements files",
            )
        for found in _HASH.finditer(line):
            _check_hash(where, found.group().split("=", 1)[-1].split()[-1])
        target = _HASH.sub("", line).strip()
        has_hash = target != line
        unknown = _OTHER_OPTION.search(target.split(";", 1)[0])
        if unknown:
            raise SpecError(f"{where}: unsupported per-requirement option {excerpt(unknown.group(1))}", "only --hash is supported")
        hashed = hashed and has_hash
        if _URL.match(target):
            requirements.append(_url(where, target))
            continue
        try:
            parsed = Requirement(target)
        except InvalidRequirement as error:
            if _is_local(target):
                local.append(_local(where, target))
                continue
            raise SpecError(
                f"{where}: {excerpt(target)} is not a valid requirement",
                f"write it as NAME, NAME==VERSION or NAME>=VERSION ({str(error).splitlines()[0]})",
            ) from None
        if parsed.url and parsed.url.startswith("file:"):
            _local(where, parsed.url)  # `NAME @ file:…` is a local reference too: inside the repository
        requirements.append(target)
    if not requirements and not local:
        hashed = False
    return RequirementsFile(path, tuple(requirements), tuple(includes), tuple(local), hashed, tuple(options), tuple(constraints))
