"""The one way r2env reads a repository's declaration files and locks: bounded, non-blocking, strict UTF-8.

Every parser gets text from here, so a FIFO, a device, a directory, a huge or binary file is one line naming the file,
never a hang, a traceback or a parse of garbage (issue 17, "Bad input, measured")."""

from __future__ import annotations

import codecs
import errno
import os
import stat
from pathlib import Path

from r2env.errors import R2envError, SpecError

MIB = 1 << 20
# Declaration files are written by hand: the largest real ones are a few hundred lines. A 5.3 MB environment.yml
# took 21 s and 150 MB to plan (issue 17), so anything past this is refused before it is parsed.
DECLARATION_LIMIT = 1 * MIB
# Locks are machine-written and list every file of every package (a large conda-lock.yml is a few MB); ruamel.yaml's
# pure-Python loader reads about 1 MB/s here, so 8 MiB keeps the worst lock to seconds.
LOCK_LIMIT = 8 * MIB
LOCK_NAMES = frozenset({"r2env.lock", "conda-lock.yml", "Pipfile.lock", "poetry.lock", "uv.lock", "pixi.lock", "renv.lock"})

_KINDS = (
    (stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
)


def limit_for(name: str) -> int:
    return LOCK_LIMIT if Path(name).name in LOCK_NAMES else DECLARATION_LIMIT


def kind_of(mode: int) -> str:
    """"a regular file", "a directory", "a FIFO (named pipe)", ... for an st_mode."""
    if stat.S_ISREG(mode):
        return "a regular file"
    return next((kind for test, kind in _KINDS if test(mode)), "not a regular file")


def _size(size: int) -> str:
    return f"{size / 1e6:.1f} MB" if size >= 100_000 else f"{size} bytes"


def _limit(limit: int) -> str:
    return f"{limit // MIB} MiB" if limit % MIB == 0 else f"{limit} bytes"


def os_problem(error: OSError) -> str:
    """An OSError as the few words a user can act on (no errno numbers, no traceback)."""
    if isinstance(error, PermissionError) or error.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if error.errno == errno.ENAMETOOLONG:
        return "its name or path is too long for the file system"
    if error.errno == errno.ELOOP:
        return "it is a loop of symbolic links"
    if error.errno == errno.ENOENT:
        return "it does not exist (or is a link to nothing)"
    return (error.strerror or type(error).__name__).lower()


def decode(data: bytes, shown: str, error: type[R2envError] = SpecError) -> str:
    """Strict UTF-8, a leading BOM allowed (Windows editors write one); NUL bytes refused (a binary file)."""
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise error(f"{shown}: is UTF-16 text, not UTF-8", "save it as UTF-8 (every tool that reads it expects UTF-8)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as problem:
        raise error(f"{shown}: cannot be read as UTF-8 text (byte 0x{data[problem.start]:02x} at offset {problem.start})",
                    "save it as UTF-8 text (is it a binary file?)") from None
    nul = text.find("\0")
    if nul >= 0:
        raise error(f"{shown}: contains a NUL byte at offset {len(text[:nul].encode())}", "it must be a text file, not binary data")
    return text


def read_text(full: Path, shown: str, limit: int = DECLARATION_LIMIT, error: type[R2envError] = SpecError) -> str:
    """The text of the regular file `full` (named `shown` in errors), at most `limit` bytes.

    Checked with stat before opening (a FIFO would block open() and read(), /dev/zero never ends), opened with
    O_NONBLOCK and checked again on the descriptor (the file may be swapped between the two), read to limit + 1."""
    fix = "r2env reads declaration files and locks as UTF-8 text files of the repository"
    try:
        before = os.stat(full)
        if not stat.S_ISREG(before.st_mode):
            raise error(f"{shown}: is {kind_of(before.st_mode)}, not a regular file", f"replace it with a file: {fix}")
        if before.st_size > limit:
            raise error(f"{shown}: {_size(before.st_size)} is over r2env's limit of {_limit(limit)} for "
                        f"{'a lock file' if limit > DECLARATION_LIMIT else 'a declaration file'}", "make it smaller")
        descriptor = os.open(full, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        try:
            mode = os.fstat(descriptor).st_mode
            if not stat.S_ISREG(mode):
                raise error(f"{shown}: is {kind_of(mode)}, not a regular file", f"replace it with a file: {fix}")
            chunks: list[bytes] = []
            total = 0
            while total <= limit:
                chunk = os.read(descriptor, min(MIB, limit + 1 - total))
                if not chunk:
                    break
                chunks.append(chunk)
                total += len(chunk)
        finally:
            os.close(descriptor)
    except OSError as problem:
        raise error(f"{shown}: {os_problem(problem)}", fix) from None
    except ValueError:  # a NUL byte in the path itself
        raise error(f"{shown}: is not a valid file name", fix) from None
    if total > limit:  # it grew after the stat
        raise error(f"{shown}: is over r2env's limit of {_limit(limit)}", "make it smaller")
    return decode(b"".join(chunks), shown, error)
