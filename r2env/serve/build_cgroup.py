"""Bound the memory of the engine's BuildKit build steps while the daemon runs (issue 17).

Docker Engine 20.10's built-in BuildKit ignores `docker build --memory` and `--cgroup-parent` (a step allocated
400 MiB under `--memory 64m`), but it runs every RUN step in a cgroup of its own under one parent: `buildkit` in the
engine's cgroup parent (`/docker/buildkit` with the cgroupfs driver, seen here as /sys/fs/cgroup/memory/docker/
buildkit/<step>). A limit on that parent bounds all BuildKit steps of the engine together, so the daemon sets it
to c.Serve.build_memory × c.Serve.max_builds (swap included, where the kernel accounts it) and puts the previous
values back when it stops. Steps past it are killed by the kernel (exit 137), and the build fails.

Only for an engine on this machine with the cgroupfs driver; anything else is reported, not guessed at."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from r2env.serve.firewall import process_alive

CGROUP_ROOT = Path("/sys/fs/cgroup")
RECORD = Path("/run/r2env-serve-buildkit-memory.json")
PARENT = "docker/buildkit"  # the cgroupfs driver's parent ("/docker") + BuildKit's "buildkit"


class CgroupUnavailable(Exception):
    """Why the limit cannot be set, in one line."""


@dataclass
class BuildkitMemoryLimit:
    limit: int  # bytes, for all BuildKit steps together
    root: Path = CGROUP_ROOT
    record: Path = RECORD
    _written: list[tuple[Path, str, str]] = field(default_factory=list)  # (file, previous value, our value)

    def files(self) -> list[tuple[Path, str]]:
        """The files to write, in the order that keeps the kernel's rule (swap+memory ≥ memory) while lowering."""
        v1 = self.root / "memory" / PARENT
        if (self.root / "memory").is_dir():
            files = [(v1 / "memory.limit_in_bytes", str(self.limit))]
            if (v1 / "memory.memsw.limit_in_bytes").exists() or not v1.exists() and _accounts_swap(self.root / "memory"):
                files.append((v1 / "memory.memsw.limit_in_bytes", str(self.limit)))
            return files
        if (self.root / "cgroup.controllers").exists():  # cgroup v2 (unified)
            v2 = self.root / PARENT
            return [(v2 / "memory.max", str(self.limit)), (v2 / "memory.swap.max", "0")]
        raise CgroupUnavailable(f"no memory cgroup under {self.root}")

    def install(self) -> str:
        """Set the limit; return where. CgroupUnavailable (nothing left changed) when it cannot."""
        files = self.files()
        folder = files[0][0].parent
        owner = _read_record(self.record)
        if owner is not None and not process_alive(owner[0]):
            _restore(owner[1])  # a daemon that was killed: its limit goes first
            self.record.unlink(missing_ok=True)
            owner = None
        try:
            folder.mkdir(parents=True, exist_ok=True)  # made by the first BuildKit build otherwise; it is the same cgroup
            for path, value in files:
                if not path.exists():
                    continue  # memory.swap.max without swap accounting
                previous = path.read_text().strip()
                path.write_text(value)
                self._written.append((path, previous, value))
            if owner is None:  # a running daemon's record stays: its values are the ones to put back in the end
                self.record.write_text(json.dumps({"pid": os.getpid(), "written": [[str(p), old, new] for p, old, new in self._written]}))
        except OSError as error:
            self.remove()
            raise CgroupUnavailable(f"cannot set {folder}: {error.strerror or error}") from None
        return str(folder)

    def remove(self) -> None:
        """Put back what was there, unless someone changed it since (another daemon's limit is not ours to undo)."""
        _restore(self._written)
        owner = _read_record(self.record)
        if owner is not None and owner[0] == os.getpid():
            self.record.unlink(missing_ok=True)
        self._written.clear()


def _restore(written: list[tuple[Path, str, str]]) -> None:
    for path, previous, value in reversed(written):  # raise swap+memory before memory
        try:
            if path.read_text().strip() == _normal(path, value):
                path.write_text(previous)
        except OSError:
            pass


def _read_record(record: Path) -> tuple[int, list[tuple[Path, str, str]]] | None:
    try:
        data = json.loads(record.read_text())
        return int(data["pid"]), [(Path(path), str(old), str(new)) for path, old, new in data["written"]]
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return (0, [])  # unreadable: treated as a dead daemon's, with nothing to put back


def _accounts_swap(memory_root: Path) -> bool:
    return (memory_root / "memory.memsw.limit_in_bytes").exists()


def _normal(path: Path, value: str) -> str:
    """The value as the kernel reads it back: v1 rounds limits down to whole pages."""
    if path.name.endswith("limit_in_bytes") and value.isdigit():
        page = os.sysconf("SC_PAGE_SIZE")
        return str(int(value) // page * page)
    return value
