"""r2env.serve.store: the daemon's SQLite state. Builds and their event logs, launches, what a restart does to work that
was in progress (read by a second Store on the same file, as a restarted daemon does), and the API token."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path
from typing import Iterator

import pytest

from r2env.serve.store import INTERRUPTED, Store

COMMIT = "c" * 40
OTHER_COMMIT = "d" * 40
SPEC = "sha256:" + "e" * 64


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return tmp_path / "state" / "r2env-serve.sqlite"


@pytest.fixture
def store(database: Path) -> Iterator[Store]:
    opened = Store(database)
    yield opened
    opened.close()


def add_build(store: Store, commit: str = COMMIT, spec: str = SPEC) -> str:
    return store.add_build("https://github.com/org/repo", "main", commit, spec, "r2env-serve/repo:tag", "/checkouts/x").id


def reopened(database: Path) -> Store:
    """What a restarted daemon sees: a new connection to the same file."""
    return Store(database)


# --- builds and events -------------------------------------------------------------------------------------


def test_a_build_reads_back_as_it_was_written(store: Store) -> None:
    build = store.add_build("https://github.com/org/repo", "v1", COMMIT, SPEC, "r2env-serve/repo:tag", "/checkouts/x")
    assert build.id.startswith("b-")
    assert (build.repo, build.ref, build.commit, build.spec_digest, build.image, build.checkout) == (
        "https://github.com/org/repo", "v1", COMMIT, SPEC, "r2env-serve/repo:tag", "/checkouts/x")
    assert (build.state, build.error, build.hint, build.cached, build.started, build.finished) == ("queued", "", "", False, None, None)
    assert store.build(build.id) == build
    assert store.build("b-missing") is None


def test_state_changes_stamp_started_and_finished(store: Store) -> None:
    build_id = add_build(store)
    building = store.set_build(build_id, state="building")
    assert building.started is not None and building.finished is None
    built = store.set_build(build_id, state="built", cached=True)
    assert built.finished is not None and built.finished >= building.started
    assert built.cached is True and built.started == building.started


def test_a_builds_json_hides_the_checkout_and_links_its_events(store: Store) -> None:
    build = store.set_build(add_build(store), state="building")
    record = build.to_json()
    assert "checkout" not in record
    assert record["events_url"] == f"/api/v1/builds/{build.id}/events"
    assert isinstance(record["created"], str) and record["created"].endswith("+00:00")
    assert record["finished"] is None


def test_events_round_trip_with_their_progress(store: Store) -> None:
    build_id = add_build(store)
    store.add_event(build_id, "build", "step", "RUN pip install", (2, 7))
    store.add_event(build_id, "build", "log", "Collecting numpy")
    events = store.events(build_id)
    assert [(e.seq, e.phase, e.kind, e.message, e.progress) for e in events] == [
        (1, "build", "step", "RUN pip install", (2, 7)),
        (2, "build", "log", "Collecting numpy", None),
    ]
    assert events[0].to_json()["progress"] == [2, 7]
    assert events[1].to_json()["progress"] is None


def test_event_numbers_count_from_one_for_each_build(store: Store) -> None:
    first, second = add_build(store), add_build(store)
    assert [store.add_event(first, "fetch", "info", f"a{n}") for n in range(3)] == [1, 2, 3]
    assert [store.add_event(second, "fetch", "info", f"b{n}") for n in range(2)] == [1, 2]
    assert store.add_event(first, "fetch", "info", "a3") == 4


def test_events_after_a_number_are_the_ones_not_yet_seen(store: Store) -> None:
    build_id = add_build(store)
    for n in range(5):
        store.add_event(build_id, "build", "log", f"line {n}")
    assert [event.seq for event in store.events(build_id, after=3)] == [4, 5]
    assert [event.seq for event in store.events(build_id, after=1, limit=2)] == [2, 3]
    assert store.events(build_id, after=5) == []


def test_build_for_is_the_newest_of_that_commit_and_spec_in_the_given_states(store: Store) -> None:
    old = add_build(store)
    store.set_build(old, state="built")
    failed = add_build(store)
    store.set_build(failed, state="failed")
    newer = add_build(store)
    store.set_build(newer, state="built")
    queued = add_build(store)
    add_build(store, commit=OTHER_COMMIT)  # another commit never matches
    add_build(store, spec="sha256:" + "f" * 64)  # nor another spec

    assert store.build_for(COMMIT, SPEC, ("built",)).id == newer  # type: ignore[union-attr]
    assert store.build_for(COMMIT, SPEC, ("queued", "building")).id == queued  # type: ignore[union-attr]
    assert store.build_for(COMMIT, SPEC, ("built", "failed", "queued")).id == queued  # type: ignore[union-attr]
    assert store.build_for(COMMIT, SPEC, ("cancelled",)) is None


def test_builds_list_newest_first_and_filter_by_state(store: Store) -> None:
    ids = [add_build(store) for _ in range(3)]
    store.set_build(ids[1], state="building")
    assert [build.id for build in store.builds()] == ids[::-1]
    assert [build.id for build in store.builds(limit=2)] == ids[:0:-1]
    assert [build.id for build in store.builds(states=("building",))] == [ids[1]]


# --- launches ----------------------------------------------------------------------------------------------


def test_a_launch_waits_then_runs_then_stops_with_a_reason(store: Store) -> None:
    launch = store.add_launch(add_build(store))
    assert launch.id.startswith("l-") and launch.state == "waiting" and launch.to_json()["url"] is None
    running = store.set_launch(launch.id, state="running", container_id="abc", url="http://127.0.0.1:9000/?token=t")
    assert running.finished is None and running.to_json()["url"] == "http://127.0.0.1:9000/?token=t"
    stopped = store.set_launch(launch.id, state="stopped", stopped_reason="stopped on request")
    assert stopped.finished is not None and stopped.stopped_reason == "stopped on request"
    assert store.launch("l-missing") is None


# --- a restart ---------------------------------------------------------------------------------------------


def test_a_restart_fails_running_builds_and_unstarted_launches_but_leaves_the_queue(database: Path) -> None:
    before = Store(database)
    building = add_build(before)
    before.set_build(building, state="building")
    before.add_event(building, "build", "log", "half way")
    queued = add_build(before)
    built = add_build(before)
    before.set_build(built, state="built")
    waiting = before.add_launch(built).id
    starting = before.add_launch(built).id
    before.set_launch(starting, state="starting")
    running = before.add_launch(built).id
    before.set_launch(running, state="running", container_id="abc")
    before.close()  # as after kill -9: nothing is written at shutdown

    after = reopened(database)
    try:
        assert sorted(after.interrupted()) == sorted([("build", building), ("launch", waiting), ("launch", starting)])
        failed = after.build(building)
        assert failed is not None and failed.state == "failed" and failed.finished is not None
        assert INTERRUPTED in failed.error and failed.hint
        events = after.events(building)
        assert [event.message for event in events] == ["half way", f"build failed: {INTERRUPTED}"]  # the log so far, then why
        assert events[-1].phase == "done"
        assert after.build(queued).state == "queued"  # type: ignore[union-attr]
        assert after.build(built).state == "built"  # type: ignore[union-attr]
        for launch_id in (waiting, starting):
            launch = after.launch(launch_id)
            assert launch is not None and launch.state == "failed" and INTERRUPTED in launch.error
        assert after.launch(running).state == "running"  # type: ignore[union-attr]  # recover() checks its container
        assert list(after.interrupted()) == []  # once only
    finally:
        after.close()


# --- identity and token ------------------------------------------------------------------------------------


def test_only_the_tokens_digest_is_stored(store: Store, database: Path) -> None:
    token = store.new_token()
    assert len(token) >= 40 and store.has_token()
    store.close()
    files = [path for path in database.parent.iterdir() if path.name.startswith(database.name)]  # the WAL too
    assert files and all(token.encode() not in path.read_bytes() for path in files)
    with sqlite3.connect(database) as connection:
        values = [row[0] for row in connection.execute("SELECT value FROM settings")]
    connection.close()
    assert token not in values


@pytest.mark.parametrize(("presented", "matches"), [("right", True), ("wrong", False), ("", False), ("right ", False)])
def test_token_matches_only_the_token(store: Store, presented: str, matches: bool) -> None:
    store.set_token("right")
    assert store.token_matches(presented) is matches


def test_no_token_matches_before_one_is_set(store: Store) -> None:
    assert not store.has_token()
    assert store.token_matches("") is False
    assert store.token_matches("anything") is False


def test_a_new_token_replaces_the_old_one(store: Store) -> None:
    first = store.new_token()
    second = store.new_token()
    assert first != second
    assert store.token_matches(second) and not store.token_matches(first)


def test_the_daemon_id_survives_a_restart(store: Store, database: Path) -> None:
    daemon_id = store.daemon_id()
    assert daemon_id == store.daemon_id()
    after = reopened(database)
    try:
        assert after.daemon_id() == daemon_id
    finally:
        after.close()


def test_the_database_is_in_write_ahead_log_mode(store: Store, database: Path) -> None:
    with sqlite3.connect(database) as connection:
        mode = connection.execute("PRAGMA journal_mode").fetchone()[0]
    connection.close()
    assert mode == "wal"


def test_the_token_is_stored_as_a_salted_digest(store: Store, database: Path) -> None:
    store.set_token("same-token-" + "x" * 32)
    first = store.setting("token_hmac_sha256")
    store.set_token("same-token-" + "x" * 32)
    second = store.setting("token_hmac_sha256")
    assert first and second and first != second  # a new salt each time: equal tokens do not give equal digests
    assert hashlib.sha256(("same-token-" + "x" * 32).encode()).hexdigest() not in (first + second)
    assert store.setting("token_sha256") is None


def test_a_token_stored_by_an_earlier_release_still_opens_and_is_stored_anew(store: Store) -> None:
    token = "generated-before-issue-17-" + "y" * 20
    store.set_setting("token_sha256", hashlib.sha256(token.encode()).hexdigest())  # how releases before issue 17 kept it
    assert store.has_token()
    assert store.token_matches("wrong") is False and store.setting("token_sha256") is not None
    assert store.token_matches(token) is True
    assert store.setting("token_sha256") is None and store.setting("token_hmac_sha256")
    assert store.token_matches(token) is True and store.token_matches("wrong") is False


# --- file modes (issue 17) ----------------------------------------------------------------------------------

STATE_FILES = ("r2env-serve.sqlite", "r2env-serve.sqlite-wal", "r2env-serve.sqlite-shm")


def _modes(directory: Path) -> dict[str, int]:
    return {name: (directory / name).stat().st_mode & 0o777 for name in STATE_FILES}


def test_a_first_start_creates_the_database_and_its_wal_and_shm_files_private(database: Path) -> None:
    # The database holds build logs and launch URLs with tokens: no other user may read any of the three files,
    # not even between their creation and a later chmod (the umask of a daemon is usually 022).
    store = Store(database)
    try:
        store.add_build("https://github.com/org/repo", "main", COMMIT, SPEC, "image", "/checkouts/x")
        assert _modes(database.parent) == dict.fromkeys(STATE_FILES, 0o600)
    finally:
        store.close()


def test_state_files_left_readable_by_an_older_daemon_are_made_private(database: Path) -> None:
    Store(database).close()
    with sqlite3.connect(database) as connection:  # a WAL left behind by a daemon that was killed
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("CREATE TABLE IF NOT EXISTS t (x)")
        for name in STATE_FILES:
            (database.parent / name).chmod(0o644)
        store = Store(database)
        try:
            assert _modes(database.parent) == dict.fromkeys(STATE_FILES, 0o600)
        finally:
            store.close()
    connection.close()
