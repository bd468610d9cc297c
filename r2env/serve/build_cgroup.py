"""Bound the memory, CPU and processes of the engine's BuildKit build steps while the daemon runs (issue 17).

Docker Engine 20.10's built-in BuildKit ignores `docker build --memory` and `--cgroup-parent` (a step allocated
400 MiB under `--memory 64m`), but it runs every RUN step in a cgroup of its own under one parent: `buildkit` in the
engine's cgroup parent (`/docker/buildkit` with the cgroupfs driver, seen here as /sys/fs/cgroup/memory/docker/
buildkit/<step>). Limits on that parent bound all BuildKit steps of the engine together, so the daemon sets them
to c.Serve.build_memory, build_cpus and build_pids × c.Serve.max_builds (swap included in memory, where the kernel
accounts it) and puts the previous values back when it stops. A step past the memory is killed by the kernel (exit
137) and its build fails; past the CPUs, steps are slowed; past the processes, fork fails. What it wrote and what was
there before are kept in a record file (/run/r2env-serve-buildkit-limits.json), so that a daemon killed with SIGKILL
does not leave its limits for good: the next daemon puts the values back first, as the firewall's sweep removes
chains of daemons that are gone.

Only for an engine on this machine with the cgroupfs driver; anything else is reported, not guessed at."""

from __future__ import annotations

import errno
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from r2env.serve.firewall import process_alive

CGROUP_ROOT = Path("/sys/fs/cgroup")
RECORD = Path("/run/r2env-serve-buildkit-limits.json")
CFS_PERIOD = 100_000  # microseconds: the kernel's default period, used where none can be read
PARENT = "docker/buildkit"  # the cgroupfs driver's parent ("/docker") + BuildKit's "buildkit"


class CgroupUnavailable(Exception):
    """Why the limit cannot be set, in one line."""


@dataclass
class BuildkitLimits:
    """Limits for all BuildKit steps together; 0 for none."""

    memory: int = 0  # bytes
    cpus: float = 0.0
    pids: int = 0
    root: Path = CGROUP_ROOT
    record: Path = RECORD
    _written: list[tuple[Path, str, str]] = field(default_factory=list)  # (file, previous value, our value)

    def files(self) -> list[tuple[Path, str]]:
        """The files to write, in the order that keeps the kernel's rule (swap+memory ≥ memory) while lowering."""
        files: list[tuple[Path, str]] = []
        if (self.root / "memory").is_dir():  # cgroup v1: one hierarchy per controller
            memory, cpu, pids = (self.root / name / PARENT for name in ("memory", "cpu", "pids"))
            if self.memory:
                files.append((memory / "memory.limit_in_bytes", str(self.memory)))
                if (memory / "memory.memsw.limit_in_bytes").exists() or not memory.exists() and _accounts_swap(self.root / "memory"):
                    files.append((memory / "memory.memsw.limit_in_bytes", str(self.memory)))
            if self.cpus and cpu.parent.parent.is_dir():
                files.append((cpu / "cpu.cfs_quota_us", str(round(self.cpus * _period(cpu / "cpu.cfs_period_us")))))
            if self.pids and pids.parent.parent.is_dir():
                files.append((pids / "pids.max", str(self.pids)))
            return files
        if (self.root / "cgroup.controllers").exists():  # cgroup v2 (unified)
            v2 = self.root / PARENT
            if self.memory:
                files += [(v2 / "memory.max", str(self.memory)), (v2 / "memory.swap.max", "0")]
            if self.cpus:
                files.append((v2 / "cpu.max", f"{round(self.cpus * CFS_PERIOD)} {CFS_PERIOD}"))
            if self.pids:
                files.append((v2 / "pids.max", str(self.pids)))
            return files
        raise CgroupUnavailable(f"no cgroup hierarchy under {self.root}")

    def install(self) -> str:
        """Set the limit; return where. CgroupUnavailable (nothing left changed) when it cannot."""
        files = self.files()
        folders = list(dict.fromkeys(path.parent for path, _ in files))
        owner = _read_record(self.record)
        if owner is not None and not process_alive(owner[0]):
            _restore(owner[1])  # a daemon that was killed: its limit goes first
            self.record.unlink(missing_ok=True)
            owner = None
        try:
            for folder in folders:
                folder.mkdir(parents=True, exist_ok=True)  # made by the first BuildKit build otherwise; the same cgroup
            for path, value in files:
                if not path.exists():
                    continue  # memory.swap.max without swap accounting
                previous = path.read_text().strip()
                try:
                    path.write_text(value)
                except OSError as error:
                    raise _refused(path, value, error) from None
                self._written.append((path, previous, value))
            if owner is None:  # a running daemon's record stays: its values are the ones to put back in the end
                self.record.write_text(json.dumps({"pid": os.getpid(), "written": [[str(p), old, new] for p, old, new in self._written]}))
        except CgroupUnavailable:
            self.remove()
            raise
        except OSError as error:
            self.remove()
            raise _refused(Path(error.filename) if error.filename else None, "", error) from None
        return ", ".join(str(folder) for folder in folders)

    def remove(self) -> None:
        """Put back what was there, unless someone changed it since (another daemon's limit is not ours to undo)."""
        _restore(self._written)
        owner = _read_record(self.record)
        if owner is not None and owner[0] == os.getpid():
            self.record.unlink(missing_ok=True)
        self._written.clear()


def _refused(path: Path | None, value: str, error: OSError) -> CgroupUnavailable:
    """Why the kernel refused a value, and what to change."""
    where = f" {path}" if path else ""
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return CgroupUnavailable(f"cannot set{where}: {error.strerror}: run the daemon as root on the engine's host, or limit the engine itself")
    if error.errno == errno.EBUSY and path is not None and value.isdigit() and path.name.startswith("memory."):
        # cgroup v1 only lowers a memory limit to what it can reclaim first; kernel caches (dentries, inodes) of
        # earlier steps stay charged to the parent and mostly cannot be reclaimed from it.
        used = _read_int(path.parent / "memory.usage_in_bytes")
        held = f" the {used:,} bytes" if used is not None else " what"
        return CgroupUnavailable(f"cannot set {path} to {int(value):,} bytes: the kernel could not reclaim{held} earlier build steps "
                                 "left charged there (kernel caches); raise c.Serve.build_memory x c.Serve.max_builds above that")
    return CgroupUnavailable(f"cannot set{where}: {error.strerror or error}")


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


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


def _period(path: Path) -> int:
    return _read_int(path) or CFS_PERIOD


def _normal(path: Path, value: str) -> str:
    """The value as the kernel reads it back: memory limits are rounded down to whole pages."""
    if (path.name.endswith("limit_in_bytes") or path.name == "memory.max") and value.isdigit():
        page = os.sysconf("SC_PAGE_SIZE")
        return str(int(value) // page * page)
    return value
