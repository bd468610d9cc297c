"""What changed between two locks, as a readable table."""

from __future__ import annotations

import re
from dataclasses import dataclass

from packaging.version import InvalidVersion, Version

from r2env.lock.lockfile import Lock


@dataclass(frozen=True)
class Change:
    kind: str  # "python", "apt", "r", "conda-server"…
    name: str
    old: str  # "" when added
    new: str  # "" when removed

    @property
    def verb(self) -> str:
        if not self.old:
            return "added"
        if not self.new:
            return "removed"
        if self.kind == "r" and self.name != "R":
            # R package versions are integers separated by . or - ("Writing R Extensions" 1.1.1), compared as such.
            old, new = (tuple(int(part) for part in re.split(r"[.-]", v)) for v in (self.old, self.new))
            return "upgraded" if new > old else "downgraded"
        if self.kind != "python":  # Debian versions do not order as PEP 440 versions (2.36-9+deb12u10 > …u9)
            return "changed"
        try:
            return "upgraded" if Version(self.new) > Version(self.old) else "downgraded"
        except InvalidVersion:  # Debian versions: not PEP 440
            return "changed"


def _versions(lock: Lock) -> dict[tuple[str, str], str]:
    python = {("python", p.name): p.version for p in (*lock.server, *lock.packages)}
    r = {("r", p.name): p.version for p in (lock.r.packages if lock.r else ())}
    if lock.r is not None:
        r[("r", "R")] = f"{lock.r.version} ({lock.r.source})"
    return {**python, **{("apt", name): version for name, version in lock.apt.items()}, **r}


def lock_counts(lock: Lock | None) -> str:
    """What a new lock holds, e.g. "91 Python, 12 R and 198 Debian packages"."""
    if lock is None:
        return "no packages"
    counts = [f"{len(lock.server) + len(lock.packages)} Python"]
    counts += [f"{len(lock.r.packages)} R"] if lock.r is not None else []
    counts += [f"{len(lock.apt)} Debian"]
    return ", ".join(counts[:-1]) + f" and {counts[-1]} packages"


def diff_locks(old: Lock, new: Lock) -> list[Change]:
    before, after = _versions(old), _versions(new)
    changes = [
        Change(kind, name, before.get((kind, name), ""), after.get((kind, name), ""))
        for kind, name in sorted(set(before) | set(after))
        if before.get((kind, name)) != after.get((kind, name))
    ]
    if old.conda is not None or new.conda is not None:
        # conda-lock.yml holds the conda packages; r2env.lock only its digest, and what r2env adds to it.
        before_conda = {(f"conda-{part}", p.name): p.version for part in ("kernel", "server")
                        for p in (getattr(old.conda, part) if old.conda else ())}
        after_conda = {(f"conda-{part}", p.name): p.version for part in ("kernel", "server")
                       for p in (getattr(new.conda, part) if new.conda else ())}
        changes += [
            Change(kind, name, before_conda.get((kind, name), ""), after_conda.get((kind, name), ""))
            for kind, name in sorted(set(before_conda) | set(after_conda))
            if before_conda.get((kind, name)) != after_conda.get((kind, name))
        ]
        old_digest, new_digest = (lock.conda.digest[:19] if lock.conda else "" for lock in (old, new))
        if old_digest != new_digest:
            changes.insert(0, Change("conda", (new.conda or old.conda).lockfile, old_digest, new_digest))  # type: ignore[union-attr]
    if old.base.id != new.base.id:
        changes.insert(0, Change("base", new.base.image, old.base.id[:19], new.base.id[:19]))
    return changes


def format_diff(changes: list[Change]) -> str:
    if not changes:
        return "no changes"
    rows = [("", "kind", "package", "old", "new")] + [(c.verb, c.kind, c.name, c.old or "-", c.new or "-") for c in changes]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    counts = {verb: sum(1 for c in changes if c.verb == verb) for verb in ("added", "removed", "upgraded", "downgraded", "changed")}
    summary = ", ".join(f"{n} {verb}" for verb, n in counts.items() if n)
    return "\n".join([*lines, summary])
