"""The daemon wired as `r2env serve` wires it, for fast tests: a real Store in a temporary directory, a real Builds and
Launches and the real aiohttp app; only git (FakeMirrors), the container engine (FakeEngine), the build worker (never
scheduled: `Daemon.scheduled` lists what it would have run) and the notebook container (a canned URL) are fakes."""

from __future__ import annotations

import asyncio
import hashlib
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterator, TypeVar, cast

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from r2env.config import load_config
from r2env.launch.container import ContainerInfo
from r2env.errors import LaunchError, SourceError
from r2env.launch.container import LaunchOptions
from r2env.serve.app import make_app
from r2env.serve.builds import Builds, Changes, image_name
from r2env.serve.config import ServeSettings
from r2env.serve.launches import SERVE_LABEL, SERVE_LAUNCH_LABEL, DaemonEngine, Launches
from r2env.serve.sources import SourcePolicy
from r2env.serve.store import Build, Store

T = TypeVar("T")
Client = TestClient[web.Request, web.Application]
TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
REPO = "https://github.com/org/analysis"
COMMIT = "a" * 40
OTHER_COMMIT = "b" * 40
NOTEBOOK_URL = "http://127.0.0.1:9000/?token=nb-token"
SCENARIO_SECONDS = 10.0


@dataclass
class FakeMirrors:
    """Stands in for r2env.serve.mirrors.Mirrors: refs resolve from `refs` (after `delay` seconds, in the thread
    Builds runs it in), and an export writes `files` (a small requirements repository)."""

    refs: dict[str, str] = field(default_factory=lambda: {"": COMMIT, "main": COMMIT, "v1": COMMIT, "v2": OTHER_COMMIT})
    files: dict[str, str] = field(default_factory=lambda: {"requirements.txt": "numpy==1.26.4\n", "analysis.ipynb": "{}\n"})
    links: dict[str, str] = field(default_factory=dict)  # name -> target, made as symbolic links
    delay: float = 0.0
    resolved: list[tuple[str, str]] = field(default_factory=list)
    exported: list[Path] = field(default_factory=list)

    def resolve(self, url: str, ref: str) -> str:
        self.resolved.append((url, ref))
        time.sleep(self.delay)
        if ref not in self.refs:
            raise SourceError(f"{url}: no branch, tag or commit {ref!r}", "give a ref that exists")
        return self.refs[ref]

    def export(self, url: str, commit: str, destination: Path) -> None:
        destination.mkdir(parents=True)
        for name, text in self.files.items():
            (destination / name).write_text(text)
        for name, target in self.links.items():
            (destination / name).symlink_to(target)
        self.exported.append(destination)


@dataclass
class FakeEngine:
    """The few DaemonEngine methods the daemon calls outside a container start: image_id (health, cached builds),
    container, containers (by label) and stop_container."""

    images: set[str] = field(default_factory=set)
    containers_by_id: dict[str, ContainerInfo] = field(default_factory=dict)
    stopped: list[str] = field(default_factory=list)
    unreachable: bool = False

    def image_id(self, reference: str) -> str | None:
        if self.unreachable:
            raise ConnectionError("docker.sock: connection refused")
        return "sha256:" + hashlib.sha256(reference.encode()).hexdigest() if reference in self.images else None

    def container(self, container_id: str) -> ContainerInfo:
        if container_id not in self.containers_by_id:
            raise LaunchError(f"no container {container_id}", "")
        return self.containers_by_id[container_id]

    def containers(self, label: str) -> list[ContainerInfo]:
        key, _, value = label.partition("=")
        return [info for info in self.containers_by_id.values() if info.labels.get(key) == value]

    def stop_container(self, container_id: str, grace_seconds: int = 5) -> None:
        self.stopped.append(container_id)
        self.containers_by_id.pop(container_id, None)

    def add(self, container_id: str, daemon_id: str, status: str = "running", exit_code: int = 0, launch_id: str = "") -> None:
        labels = {SERVE_LABEL: daemon_id, SERVE_LAUNCH_LABEL: launch_id or f"l-{container_id}"}
        self.containers_by_id[container_id] = ContainerInfo(container_id, "image", status, exit_code, 9000, "127.0.0.1", labels)


@dataclass
class Daemon:
    """Everything `r2env serve` wires together, with the fakes in place. `run` serves the real app to a client."""

    store: Store
    builds: Builds
    launches: Launches
    changes: Changes
    engine: FakeEngine
    mirrors: FakeMirrors
    scheduled: list[str]  # builds handed to the (absent) worker
    started: list[str]  # launches whose container was "started"

    def run(self, scenario: Callable[[Client], Awaitable[T]], **server_options: Any) -> T:
        async def main() -> T:
            server = TestServer(make_app(self.store, self.builds, self.launches, self.changes, cast(DaemonEngine, self.engine),
                                         self.builds.serve.allowed_origins))
            await server.start_server(**server_options)
            async with TestClient(server) as client:
                return await asyncio.wait_for(scenario(client), SCENARIO_SECONDS)  # a stream that never ends fails, fast

        return asyncio.run(main())

    def add_build(self, state: str = "queued", commit: str = COMMIT, events: tuple[str, ...] = ()) -> Build:
        build = self.store.add_build(REPO, "main", commit, "sha256:" + "d" * 64, image_name(REPO, commit, "sha256:" + "d" * 64), "")
        for message in events:
            self.store.add_event(build.id, "build", "log", message)
        return self.store.set_build(build.id, state=state) if state != "queued" else build


def make_daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ip: str = "127.0.0.1", **serve_changes: Any) -> Daemon:
    monkeypatch.chdir(tmp_path)  # load_config reads ./r2env_config.py
    settings = replace(load_config(None, {}), launch=LaunchOptions(ip=ip))
    serve = replace(ServeSettings(host="127.0.0.1", port=0, state_dir=tmp_path / "state", token="", max_builds=2, build_timeout=60.0,
                                  resolve_timeout=10.0, max_launches=3, cull_idle_timeout=0.0, sources=SourcePolicy()), **serve_changes)
    store = Store(serve.state_dir / "r2env-serve.sqlite")
    store.set_token(TOKEN)
    engine, mirrors, changes = FakeEngine(), FakeMirrors(), Changes()
    builds = Builds(store, settings, serve, lambda image: bool(engine.image_id(image)), changes, lambda _: None)
    builds.mirrors = mirrors  # type: ignore[assignment]
    scheduled: list[str] = []
    monkeypatch.setattr(builds, "_schedule", lambda build: scheduled.append(build.id))
    launches = Launches(store, cast(DaemonEngine, engine), settings, serve, store.daemon_id(), changes, lambda _: None)
    started: list[str] = []

    def start_container(launch_id: str, image: str, source: str) -> tuple[str, str]:
        started.append(launch_id)
        return f"container-{launch_id}", NOTEBOOK_URL

    monkeypatch.setattr(launches, "_start_container", start_container)
    return Daemon(store, builds, launches, changes, engine, mirrors, scheduled, started)


@contextmanager
def daemons(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Daemon]]:
    """For fixtures: make(ip="0.0.0.0", max_launches=1, ...) gives a Daemon; every store made is closed at the end."""
    made: list[Daemon] = []

    def make(ip: str = "127.0.0.1", **serve_changes: Any) -> Daemon:
        made.append(make_daemon(tmp_path, monkeypatch, ip, **serve_changes))
        return made[-1]

    try:
        yield make
    finally:
        for daemon in made:
            daemon.store.close()
