"""The daemon's state in SQLite (WAL): builds with their whole event log, launches, and the daemon's identity.

One connection, used only from the daemon's event loop thread, so no locking is needed; a write is committed
at once (a crash loses nothing that was answered). A restart reads this file to report what happened."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import sqlite3
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

SCHEMA = """
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS builds (
    id TEXT PRIMARY KEY, repo TEXT NOT NULL, ref TEXT NOT NULL, commit_sha TEXT NOT NULL, spec_digest TEXT NOT NULL,
    state TEXT NOT NULL, image TEXT NOT NULL, error TEXT NOT NULL DEFAULT '', hint TEXT NOT NULL DEFAULT '',
    cached INTEGER NOT NULL DEFAULT 0, checkout TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL, started REAL, finished REAL);
CREATE INDEX IF NOT EXISTS builds_by_key ON builds (commit_sha, spec_digest);
CREATE TABLE IF NOT EXISTS events (
    build_id TEXT NOT NULL, seq INTEGER NOT NULL, time REAL NOT NULL, phase TEXT NOT NULL, kind TEXT NOT NULL,
    message TEXT NOT NULL, progress TEXT, PRIMARY KEY (build_id, seq));
CREATE TABLE IF NOT EXISTS launches (
    id TEXT PRIMARY KEY, build_id TEXT NOT NULL, state TEXT NOT NULL, container_id TEXT NOT NULL DEFAULT '',
    url TEXT NOT NULL DEFAULT '', error TEXT NOT NULL DEFAULT '', hint TEXT NOT NULL DEFAULT '',
    stopped_reason TEXT NOT NULL DEFAULT '', created REAL NOT NULL, last_activity REAL, finished REAL);
"""

BUILD_ACTIVE = ("queued", "building")
BUILD_ENDED = ("built", "failed", "cancelled")
LAUNCH_ACTIVE = ("waiting", "starting", "running")
INTERRUPTED = "interrupted by restart"


def iso(timestamp: float | None) -> str | None:
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec="seconds") if timestamp else None


@dataclass(frozen=True)
class Build:
    id: str
    repo: str
    ref: str
    commit: str
    spec_digest: str
    state: str
    image: str
    error: str
    hint: str
    cached: bool
    checkout: str
    created: float
    started: float | None
    finished: float | None

    def to_json(self) -> dict[str, Any]:
        record = asdict(self)
        del record["checkout"]  # the daemon's own path: nothing a client needs
        record.update(created=iso(self.created), started=iso(self.started), finished=iso(self.finished),
                      events_url=f"/api/v1/builds/{self.id}/events")
        return record


@dataclass(frozen=True)
class Launch:
    id: str
    build: str
    state: str
    container_id: str
    url: str
    error: str
    hint: str
    stopped_reason: str
    created: float
    last_activity: float | None
    finished: float | None

    def to_json(self) -> dict[str, Any]:
        record = asdict(self)
        record.update(url=self.url or None, created=iso(self.created), last_activity=iso(self.last_activity), finished=iso(self.finished))
        return record


@dataclass(frozen=True)
class Event:
    seq: int
    time: float
    phase: str
    kind: str
    message: str
    progress: tuple[int, int] | None

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "time": iso(self.time), "phase": self.phase, "kind": self.kind,
                "message": self.message, "progress": list(self.progress) if self.progress else None}


def _token_digest(token: str, salt: bytes) -> str:
    """HMAC-SHA256 of the token keyed with a random salt of its own (issue 17): a copy of the database does not
    allow a precomputed-table search, even for a configured token of the minimal length."""
    return hmac.new(salt, token.encode(), hashlib.sha256).hexdigest()


def _legacy_digest(token: str) -> str:
    """How releases before issue 17 stored the token (unsalted SHA-256, setting token_sha256)."""
    return hashlib.sha256(token.encode()).hexdigest()


def private(path: Path) -> None:
    """Make an existing file readable and writable by its owner only."""
    try:
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)
    except FileNotFoundError:
        pass


class Store:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.path = path
        # The database keeps build logs and notebook URLs with their tokens: it and its -wal and -shm files are
        # the daemon user's only, from their first byte (issue 17). SQLite creates the -wal and -shm files with the
        # database's mode (https://www.sqlite.org/tempfiles.html), so the database is created 0600 before SQLite
        # opens it, and the umask covers any file SQLite makes while the schema is set up.
        previous = os.umask(0o077)
        try:
            os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
            for name in ("", "-wal", "-shm"):  # left readable by an older daemon
                private(path.with_name(path.name + name))
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.row_factory = sqlite3.Row
            # WAL: readers never block the writer, and a kill -9 leaves a consistent database.
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
        finally:
            os.umask(previous)

    def close(self) -> None:
        self._db.close()

    # identity and token

    def setting(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return str(row["value"]) if row else None

    def set_setting(self, key: str, value: str) -> None:
        self._db.execute("INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value))

    def daemon_id(self) -> str:
        """Names this daemon's containers, so a restart removes its own orphans and never another daemon's."""
        found = self.setting("daemon_id")
        if found is None:
            found = secrets.token_hex(8)
            self.set_setting("daemon_id", found)
        return found

    def new_token(self) -> str:
        """A fresh token; only its digest is kept, so it can be shown once and never again."""
        token = secrets.token_urlsafe(32)
        self.set_token(token)
        return token

    def set_token(self, token: str) -> None:
        salt = secrets.token_bytes(16)
        self.set_setting("token_hmac_sha256", f"{salt.hex()}:{_token_digest(token, salt)}")
        self._db.execute("DELETE FROM settings WHERE key = 'token_sha256'")

    def has_token(self) -> bool:
        return self.setting("token_hmac_sha256") is not None or self.setting("token_sha256") is not None

    def token_matches(self, token: str) -> bool:
        stored = self.setting("token_hmac_sha256")
        if stored:
            salt, _, expected = stored.partition(":")
            return hmac.compare_digest(_token_digest(token, bytes.fromhex(salt)), expected)
        legacy = self.setting("token_sha256")
        if legacy and hmac.compare_digest(_legacy_digest(token), legacy):
            self.set_token(token)  # a token generated before the salted digest: stored anew at its first use
            return True
        return False

    # builds

    def add_build(self, repo: str, ref: str, commit: str, spec_digest: str, image: str, checkout: str) -> Build:
        build_id = "b-" + secrets.token_hex(6)
        self._db.execute(
            "INSERT INTO builds (id, repo, ref, commit_sha, spec_digest, state, image, checkout, created) VALUES (?, ?, ?, ?, ?, 'queued', ?, ?, ?)",
            (build_id, repo, ref, commit, spec_digest, image, checkout, time.time()),
        )
        build = self.build(build_id)
        assert build is not None
        return build

    def build(self, build_id: str) -> Build | None:
        row = self._db.execute("SELECT * FROM builds WHERE id = ?", (build_id,)).fetchone()
        return _build(row) if row else None

    def builds(self, limit: int | None = None, states: tuple[str, ...] = ()) -> list[Build]:
        """Newest first; all of them unless `limit`, in any state unless `states`."""
        where = f"WHERE state IN ({','.join('?' * len(states))})" if states else ""
        rows = self._db.execute(f"SELECT * FROM builds {where} ORDER BY created DESC, rowid DESC LIMIT ?",
                                (*states, -1 if limit is None else limit))  # SQLite: LIMIT -1 is no limit
        return [_build(row) for row in rows]

    def build_counts(self) -> dict[str, int]:
        return self._counts("builds")

    def build_for(self, commit: str, spec_digest: str, states: tuple[str, ...]) -> Build | None:
        """The newest build of this commit and spec in one of `states`."""
        row = self._db.execute(
            f"SELECT * FROM builds WHERE commit_sha = ? AND spec_digest = ? AND state IN ({','.join('?' * len(states))}) "
            "ORDER BY created DESC, rowid DESC LIMIT 1",
            (commit, spec_digest, *states),
        ).fetchone()
        return _build(row) if row else None

    def set_build(self, build_id: str, **fields: Any) -> Build:
        if "state" in fields:
            if fields["state"] == "building":
                fields.setdefault("started", time.time())
            if fields["state"] in BUILD_ENDED:
                fields.setdefault("finished", time.time())
        if "cached" in fields:
            fields["cached"] = int(fields["cached"])
        assignments = ", ".join(f"{name} = ?" for name in fields)
        self._db.execute(f"UPDATE builds SET {assignments} WHERE id = ?", (*fields.values(), build_id))
        build = self.build(build_id)
        assert build is not None
        return build

    def add_event(self, build_id: str, phase: str, kind: str, message: str, progress: tuple[int, int] | None = None) -> int:
        row = self._db.execute("SELECT COALESCE(MAX(seq), 0) + 1 AS next FROM events WHERE build_id = ?", (build_id,)).fetchone()
        seq = int(row["next"])
        self._db.execute(
            "INSERT INTO events (build_id, seq, time, phase, kind, message, progress) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (build_id, seq, time.time(), phase, kind, message, json.dumps(list(progress)) if progress else None),
        )
        return seq

    def last_messages(self, build_id: str, count: int) -> set[str]:
        rows = self._db.execute("SELECT message FROM events WHERE build_id = ? ORDER BY seq DESC LIMIT ?", (build_id, count))
        return {str(row["message"]) for row in rows}

    def events(self, build_id: str, after: int = 0, limit: int = 1000) -> list[Event]:
        rows = self._db.execute(
            "SELECT * FROM events WHERE build_id = ? AND seq > ? ORDER BY seq LIMIT ?", (build_id, after, limit)
        )
        return [Event(row["seq"], row["time"], row["phase"], row["kind"], row["message"],
                      tuple(json.loads(row["progress"])) if row["progress"] else None) for row in rows]

    # launches

    def add_launch(self, build_id: str) -> Launch:
        launch_id = "l-" + secrets.token_hex(6)
        self._db.execute("INSERT INTO launches (id, build_id, state, created) VALUES (?, ?, 'waiting', ?)", (launch_id, build_id, time.time()))
        launch = self.launch(launch_id)
        assert launch is not None
        return launch

    def launch(self, launch_id: str) -> Launch | None:
        row = self._db.execute("SELECT * FROM launches WHERE id = ?", (launch_id,)).fetchone()
        return _launch(row) if row else None

    def launches(self, limit: int | None = None, states: tuple[str, ...] = ()) -> list[Launch]:
        """Newest first; all of them unless `limit`, in any state unless `states`."""
        where = f"WHERE state IN ({','.join('?' * len(states))})" if states else ""
        rows = self._db.execute(f"SELECT * FROM launches {where} ORDER BY created DESC, rowid DESC LIMIT ?",
                                (*states, -1 if limit is None else limit))  # SQLite: LIMIT -1 is no limit
        return [_launch(row) for row in rows]

    def launch_counts(self) -> dict[str, int]:
        return self._counts("launches")

    def set_launch(self, launch_id: str, **fields: Any) -> Launch:
        if fields.get("state") in ("failed", "stopped"):
            fields.setdefault("finished", time.time())
            fields.setdefault("url", "")  # the server is gone: its URL and token open nothing any more
        assignments = ", ".join(f"{name} = ?" for name in fields)
        self._db.execute(f"UPDATE launches SET {assignments} WHERE id = ?", (*fields.values(), launch_id))
        launch = self.launch(launch_id)
        assert launch is not None
        return launch

    def _counts(self, table: str) -> dict[str, int]:
        """How many rows of `table` (builds or launches) are in each state."""
        return {str(row["state"]): int(row["count"]) for row in self._db.execute(f"SELECT state, COUNT(*) AS count FROM {table} GROUP BY state")}

    def interrupted(self) -> Iterator[tuple[str, str]]:
        """After a restart: fail what was in progress when the daemon stopped. Yields (kind, id) of each."""
        for build in self.builds(states=("building",)):
            self.add_event(build.id, "done", "info", f"build failed: {INTERRUPTED}")
            self.set_build(build.id, state="failed", error=f"the build was {INTERRUPTED}", hint="submit it again")
            yield "build", build.id
        for launch in self.launches(states=("waiting", "starting")):
            self.set_launch(launch.id, state="failed", error=f"the launch was {INTERRUPTED}", hint="launch it again")
            yield "launch", launch.id


def _build(row: sqlite3.Row) -> Build:
    return Build(row["id"], row["repo"], row["ref"], row["commit_sha"], row["spec_digest"], row["state"], row["image"], row["error"],
                 row["hint"], bool(row["cached"]), row["checkout"], row["created"], row["started"], row["finished"])


def _launch(row: sqlite3.Row) -> Launch:
    return Launch(row["id"], row["build_id"], row["state"], row["container_id"], row["url"], row["error"], row["hint"],
                  row["stopped_reason"], row["created"], row["last_activity"], row["finished"])
