"""r2env.serve.launches: what a client is shown (the URL at the host it used when the server listens everywhere),
the periodic check of running servers (gone, exited, idle), a restart's clean-up of containers, and the limit on
servers. The engine and Jupyter's activity are faked (tests/serve_fakes.py)."""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import replace
from typing import Callable, Iterator

import pytest

from r2env.serve import launches as launches_module
from r2env.errors import LaunchError
from r2env.launch.container import ContainerRequest
from r2env.launch.launcher import Ready
from r2env.serve.launches import Launches, TooManyLaunches
from serve_fakes import NOTEBOOK_URL, REPO, Daemon


@pytest.mark.parametrize(
    ("ip", "request_host", "url"),
    [
        ("127.0.0.1", "binder.example.org", NOTEBOOK_URL),
        ("192.168.1.5", "binder.example.org", NOTEBOOK_URL),
        ("0.0.0.0", "binder.example.org", "http://binder.example.org:9000/?token=nb-token"),
        ("::", "binder.example.org", "http://binder.example.org:9000/?token=nb-token"),
        ("0.0.0.0", "2001:db8::1", "http://[2001:db8::1]:9000/?token=nb-token"),
        ("0.0.0.0", None, NOTEBOOK_URL),
    ],
)
def test_a_launch_record_names_the_request_host_only_for_servers_on_every_interface(
    daemon_with: Callable[..., Daemon], ip: str, request_host: str | None, url: str
) -> None:
    daemon = daemon_with(ip=ip)
    launch = daemon.store.set_launch(daemon.store.add_launch("b-1").id, state="running", url=NOTEBOOK_URL)
    record = daemon.launches.record(launch, request_host)
    assert record["url"] == url


def test_a_waiting_launch_has_no_url_to_rewrite(daemon_with: Callable[..., Daemon]) -> None:
    daemon = daemon_with(ip="0.0.0.0")
    record = daemon.launches.record(daemon.store.add_launch("b-1"), "binder.example.org")
    assert record["url"] is None


def running_launch(daemon: Daemon, container_id: str, idle_seconds: float = 0.0) -> str:
    """A launch the store has as running in `container_id`, last active `idle_seconds` ago; its URL names the container."""
    launch = daemon.store.add_launch("b-1")
    daemon.store.set_launch(launch.id, state="running", container_id=container_id, url=f"http://127.0.0.1:9000/{container_id}/?token=t",
                            last_activity=time.time() - idle_seconds)
    return launch.id


def outcome(daemon: Daemon, launch_id: str) -> tuple[str, str]:
    launch = daemon.store.launch(launch_id)
    assert launch is not None
    return launch.state, launch.stopped_reason


def test_checking_running_servers_stops_the_gone_the_exited_and_the_idle(
    daemon_with: Callable[..., Daemon], monkeypatch: pytest.MonkeyPatch
) -> None:
    daemon = daemon_with(cull_idle_timeout=600.0)
    daemon_id = daemon.store.daemon_id()
    gone = running_launch(daemon, "gone")  # no such container any more
    exited = running_launch(daemon, "exited")
    daemon.engine.add("exited", daemon_id, status="exited", exit_code=3)
    idle = running_launch(daemon, "idle", idle_seconds=900)
    busy = running_launch(daemon, "busy", idle_seconds=900)
    recent = running_launch(daemon, "recent", idle_seconds=60)
    for name in ("idle", "busy", "recent"):
        daemon.engine.add(name, daemon_id)
    now = time.time()
    # What each Jupyter server's /api/status says: only "busy" saw its user lately.
    monkeypatch.setattr(launches_module, "last_activity", lambda url: now if "/busy/" in url else None)

    asyncio.run(daemon.launches.check_running())
    assert outcome(daemon, gone) == ("stopped", "its container is gone")
    assert outcome(daemon, exited) == ("stopped", "the server exited with code 3")
    state, reason = outcome(daemon, idle)
    assert state == "stopped" and re.fullmatch(r"culled after 9\d\d s without activity", reason), reason
    assert outcome(daemon, busy) == outcome(daemon, recent) == ("running", "")
    assert daemon.store.launch(busy).last_activity == now  # type: ignore[union-attr]
    assert sorted(daemon.engine.stopped) == ["exited", "idle"]  # a gone container has nothing to stop


def test_without_a_cull_timeout_idle_servers_keep_running(daemon_with: Callable[..., Daemon], monkeypatch: pytest.MonkeyPatch) -> None:
    daemon = daemon_with(cull_idle_timeout=0.0)
    idle = running_launch(daemon, "idle", idle_seconds=10 * 24 * 3600)
    daemon.engine.add("idle", daemon.store.daemon_id())
    monkeypatch.setattr(launches_module, "last_activity", lambda url: None)
    asyncio.run(daemon.launches.check_running())
    assert outcome(daemon, idle) == ("running", "") and daemon.engine.stopped == []


def test_a_restart_keeps_tracked_servers_and_removes_this_daemons_other_containers(daemon_with: Callable[..., Daemon]) -> None:
    daemon = daemon_with()
    daemon_id = daemon.store.daemon_id()
    kept = running_launch(daemon, "kept")
    daemon.engine.add("kept", daemon_id)
    exited = running_launch(daemon, "exited")
    daemon.engine.add("exited", daemon_id, status="exited", exit_code=137)
    vanished = running_launch(daemon, "vanished")  # tracked, but its container is gone
    stopped = daemon.store.set_launch(daemon.store.add_launch("b-1").id, state="stopped", container_id="stale").id
    daemon.engine.add("stale", daemon_id, launch_id=stopped)  # a stopped launch's container that survived
    daemon.engine.add("orphan", daemon_id)  # started, then the daemon died before it recorded the container
    daemon.engine.add("other", "another-daemon")  # never ours to remove

    daemon.launches.recover()
    assert sorted(daemon.engine.stopped) == ["exited", "orphan", "stale"]
    assert outcome(daemon, kept) == ("running", "")
    for launch_id in (exited, vanished):
        assert outcome(daemon, launch_id) == ("stopped", "its container did not survive the restart (interrupted by restart)")


def test_more_launches_than_allowed_are_refused_and_leave_nothing_behind(daemon_with: Callable[..., Daemon]) -> None:
    daemon = daemon_with(max_launches=2)
    build = daemon.add_build("queued")
    running_launch(daemon, "running")
    daemon.store.set_launch(daemon.store.add_launch(build.id).id, state="stopped")  # ended launches do not count

    async def scenario() -> None:
        daemon.launches.submit(build.id)  # waits for its build
        with pytest.raises(TooManyLaunches) as refused:
            daemon.launches.submit(build.id)
        assert refused.value.http_status == 429

    asyncio.run(scenario())
    assert daemon.launches.counts() == {"waiting": 1, "starting": 0, "running": 1}


def test_a_launch_of_a_build_that_fails_fails_with_its_error(daemon: Daemon) -> None:
    build = daemon.add_build("building")

    async def scenario() -> str:
        launch = daemon.launches.submit(build.id)
        await asyncio.sleep(0)
        daemon.store.set_build(build.id, state="failed", error="pip failed", hint="fix requirements.txt")
        daemon.changes.fire()
        while outcome(daemon, launch.id)[0] == "waiting":
            await asyncio.sleep(0.01)
        return launch.id

    launch = daemon.store.launch(asyncio.run(asyncio.wait_for(scenario(), 10)))
    assert launch is not None and launch.state == "failed"
    assert (launch.error, launch.hint) == (f"its build {build.id} failed: pip failed", "fix requirements.txt")
    assert daemon.started == []


def test_a_launch_of_a_build_whose_image_was_removed_says_how_to_get_it_back(daemon: Daemon) -> None:
    with pytest.raises(LaunchError, match=r"the image r2env-serve/gone:1 was removed from the engine after its build") as raised:
        Launches._start_container(daemon.launches, "l-1", "r2env-serve/gone:1", REPO)
    assert raised.value.hint == "ask for the repository again: a build whose image is gone is built again"


def test_a_server_reporting_activity_in_the_future_is_stopped_at_max_age(daemon_with: Callable[..., Daemon], monkeypatch: pytest.MonkeyPatch) -> None:
    daemon = daemon_with(cull_idle_timeout=600.0, max_age=3600.0)
    forged = running_launch(daemon, "forged", idle_seconds=900)
    daemon.engine.add("forged", daemon.store.daemon_id())
    year_2099 = 4070908800.0
    monkeypatch.setattr(launches_module, "last_activity", lambda url: year_2099)

    asyncio.run(daemon.launches.check_running())  # 2099 counts as activity now, never later
    launch = daemon.store.launch(forged)
    assert launch is not None and launch.state == "running" and launch.last_activity is not None
    assert launch.last_activity <= time.time()
    # An hour on, the container still says 2099: its age, which the daemon measures itself, stops it.
    daemon.store._db.execute("UPDATE launches SET created = ? WHERE id = ?", (time.time() - 3601, forged))
    asyncio.run(daemon.launches.check_running())
    state, reason = outcome(daemon, forged)
    assert state == "stopped" and reason.startswith("stopped after 360"), reason


def test_a_future_activity_stored_by_an_earlier_daemon_is_brought_back_to_now(daemon_with: Callable[..., Daemon], monkeypatch: pytest.MonkeyPatch) -> None:
    daemon = daemon_with(cull_idle_timeout=600.0)
    launch_id = running_launch(daemon, "stored", idle_seconds=-10 ** 9)  # last_activity decades ahead
    daemon.engine.add("stored", daemon.store.daemon_id())
    monkeypatch.setattr(launches_module, "last_activity", lambda url: None)
    asyncio.run(daemon.launches.check_running())
    launch = daemon.store.launch(launch_id)
    assert launch is not None and launch.last_activity is not None and launch.last_activity <= time.time()


def test_a_server_older_than_max_age_is_stopped_however_active(daemon_with: Callable[..., Daemon], monkeypatch: pytest.MonkeyPatch) -> None:
    daemon = daemon_with(cull_idle_timeout=600.0, max_age=3600.0)
    old = running_launch(daemon, "old")
    young = running_launch(daemon, "young")
    daemon.store._db.execute("UPDATE launches SET created = ? WHERE id = ?", (time.time() - 3700, old))
    for name in ("old", "young"):
        daemon.engine.add(name, daemon.store.daemon_id())
    monkeypatch.setattr(launches_module, "last_activity", lambda url: time.time())  # both busy
    asyncio.run(daemon.launches.check_running())
    state, reason = outcome(daemon, old)
    assert state == "stopped" and re.fullmatch(r"stopped after 3\d\d\d s, the longest a server may run", reason), reason
    assert outcome(daemon, young) == ("running", "")
    assert daemon.engine.stopped == ["old"]


def test_servers_get_the_daemons_limits_unless_the_config_file_sets_them(
    daemon_with: Callable[..., Daemon], monkeypatch: pytest.MonkeyPatch
) -> None:
    daemon = daemon_with(launch_memory="2g", launch_cpus=0.5, launch_pids=256)
    assert (daemon.launches.options.memory, daemon.launches.options.cpus) == ("2g", 0.5)
    settings = replace(daemon.builds.settings, launch=replace(daemon.builds.settings.launch, memory="8g", cpus=2.0))
    own = Launches(daemon.store, daemon.launches.engine, settings, daemon.launches.serve, "d", daemon.changes, lambda _: None)
    assert (own.options.memory, own.options.cpus) == ("8g", 2.0)  # c.R2env.memory and cpus win

    requests: list[ContainerRequest] = []

    def run(engine: object, request: ContainerRequest, options: object) -> Iterator[Ready]:
        requests.append(request)
        yield Ready(NOTEBOOK_URL, "c-1")

    daemon.engine.images.add("r2env-serve/x:1")
    monkeypatch.setattr(launches_module, "run", run)
    monkeypatch.setattr(daemon.launches.engine, "image_config", lambda image: {}, raising=False)
    assert Launches._start_container(daemon.launches, "l-1", "r2env-serve/x:1", REPO) == ("c-1", NOTEBOOK_URL)
    [request] = requests
    assert (request.memory, request.cpus, request.pids_limit) == ("2g", 0.5, 256)
