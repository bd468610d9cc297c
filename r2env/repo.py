"""Read-only views of a repository: the only way the inspector touches files."""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Mapping, Protocol

from r2env.errors import SpecError
from r2env.reading import kind_of, limit_for, os_problem, read_text


class RepoView(Protocol):
    """What the inspector may ask of a repository. Paths are POSIX, relative to the repo root."""

    def is_file(self, path: str) -> bool: ...

    def is_dir(self, path: str) -> bool: ...

    def read_text(self, path: str) -> str: ...

    def kind(self, path: str) -> str:
        """"missing", "a regular file", "a directory", or what else is there ("a FIFO (named pipe)", ...)."""
        ...

    def is_executable(self, path: str) -> bool: ...


def _relative(path: str) -> PurePosixPath:
    pure = PurePosixPath(path)
    if pure.is_absolute() or ".." in pure.parts:
        raise ValueError(f"{path!r} is outside the repository")
    return pure


def leads_outside(path: Path, root: Path) -> bool:
    """Whether `path`, its links followed, ends outside `root`. realpath, not resolve(): before Python 3.13
    resolve() raises on a loop of links, and a loop stays inside."""
    return not Path(os.path.realpath(path)).is_relative_to(os.path.realpath(root))


@dataclass(frozen=True)
class DiskRepo:
    root: Path

    def _path(self, path: str) -> Path:
        full = self.root.joinpath(*_relative(path).parts)
        # The image gets the link, not what it points at (Docker never follows links out of the context); reading
        # the target here would plan from a file the image does not have, or show a host file in an error.
        if leads_outside(full, self.root):
            raise SpecError(f"{path} is a symbolic link to {os.path.realpath(full)}, outside the repository",
                            "commit the file itself: the image cannot see what the link points at")
        return full

    def is_file(self, path: str) -> bool:
        return self.kind(path) == "a regular file"

    def is_dir(self, path: str) -> bool:
        return self.kind(path) == "a directory"

    def read_text(self, path: str) -> str:
        # Through the one reading layer: bounded, non-blocking, strict UTF-8 (r2env/reading.py).
        return read_text(self._path(path), path, limit_for(path))

    def kind(self, path: str) -> str:
        full = self._path(path)
        try:
            return kind_of(full.stat().st_mode)
        except (FileNotFoundError, NotADirectoryError):
            return "a symbolic link to nothing" if full.is_symlink() else "missing"
        except OSError as error:
            if error.errno == errno.ELOOP:
                return "a loop of symbolic links"
            raise SpecError(f"{path}: {os_problem(error)}", "r2env reads declaration files as files of the repository") from None

    def is_executable(self, path: str) -> bool:
        try:
            return bool(self._path(path).stat().st_mode & 0o111)
        except OSError as error:
            raise SpecError(f"{path}: {os_problem(error)}", "r2env reads declaration files as files of the repository") from None


@dataclass(frozen=True)
class MemoryRepo:
    """An in-memory repository for tests: {path: text}; executable paths listed separately."""

    files: Mapping[str, str]
    executables: frozenset[str] = field(default_factory=frozenset)

    def is_file(self, path: str) -> bool:
        return str(_relative(path)) in self.files

    def is_dir(self, path: str) -> bool:
        if str(_relative(path)) == ".":
            return True  # the repository root
        prefix = str(_relative(path)).rstrip("/") + "/"
        return any(name.startswith(prefix) for name in self.files)

    def read_text(self, path: str) -> str:
        try:
            return self.files[str(_relative(path))]
        except KeyError:
            raise FileNotFoundError(path) from None

    def is_executable(self, path: str) -> bool:
        return str(_relative(path)) in self.executables

    def kind(self, path: str) -> str:
        return "a regular file" if self.is_file(path) else "a directory" if self.is_dir(path) else "missing"
