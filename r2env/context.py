"""A digest of the repository's contents (the build context), so a locked build can be skipped when nothing changed."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path


def context_digest(root: Path) -> str:
    """sha256 over every file's path, mode and content (.git excluded: it is not what the image runs)."""
    digest = hashlib.sha256()
    for directory, folders, files in os.walk(root):
        folders[:] = sorted(f for f in folders if f != ".git")
        for name in sorted(files):
            path = Path(directory) / name
            relative = path.relative_to(root).as_posix()
            if path.is_symlink():
                digest.update(f"L {relative} {os.readlink(path)}\n".encode())
                continue
            mode = path.lstat().st_mode
            if not stat.S_ISREG(mode):
                # A FIFO would block open() and a device never ends (issue 17): its kind is all that is hashed.
                digest.update(f"O {relative} {mode:o}\n".encode())
                continue
            digest.update(f"F {relative} {mode & 0o777:o}\n".encode())
            with path.open("rb") as stream:
                for chunk in iter(lambda: stream.read(1 << 20), b""):
                    digest.update(chunk)
    return "sha256:" + digest.hexdigest()
