"""The daemon's notebook servers: start one when its build is done, stop it on request or when idle, and
after a restart keep the ones still running and remove every container of this daemon nobody tracks."""

from __future__ import annotations

import asyncio
import json
import os
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Callable, Protocol

from r2env.config import Settings
from r2env.launch.container import ContainerInfo
from r2env.errors import LaunchError, R2envError, UsageError
from r2env.launch.launcher import ContainerEngine, Ready, container_request, free_port, host_identity, new_token, open_url, run, split_server_url
from r2env.redact import safe_line
from r2env.serve.builds import Changes
from r2env.serve.config import ServeSettings
from r2env.serve.store import INTERRUPTED, LAUNCH_ACTIVE, Launch, Store

SERVE_LABEL = "org.r2env.serve"  # value: the daemon's id (r2env.serve.store.Store.daemon_id)
SERVE_LAUNCH_LABEL = "org.r2env.serve.launch"  # value: the launch id


class DaemonEngine(ContainerEngine, Protocol):
    def containers(self, label: str) -> list[ContainerInfo]: ...

    def image_id(self, reference: str) -> str | None: ...


class TooManyLaunches(UsageError):
    http_status = 429


class Launches:
    def __init__(self, store: Store, engine: DaemonEngine, settings: Settings, serve: ServeSettings, daemon_id: str,
                 changes: Changes, log: Callable[[str], None], copy_image: Callable[[str], None] | None = None) -> None:
        self.store = store
        self.engine = engine
        # Set when builds run on another engine (c.Serve.launch_docker_host): brings a built image to this one.
        self.copy_image = copy_image
        # Limits, address, timeout and mounts come from the config file (c.R2env.*, else the daemon's c.Serve.launch_*
        # defaults); never from a request.
        self.options = replace(settings.launch, detach=True, editable=False, command=(),
                               memory=settings.launch.memory or serve.launch_memory, cpus=settings.launch.cpus or serve.launch_cpus)
        self.serve = serve
        self.daemon_id = daemon_id
        self.changes = changes
        self.log = log
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def check_room(self) -> None:
        """Before anything is built for a launch: a full server refuses at once."""
        active = sum(self.counts().values())
        if active >= self.serve.max_launches:
            servers = "notebook server is" if active == 1 else "notebook servers are"
            raise TooManyLaunches(f"{active} {servers} running or starting, the most this server allows",
                                  "stop one (DELETE /api/v1/launches/ID) or try again later")

    def submit(self, build_id: str) -> Launch:
        self.check_room()
        launch = self.store.add_launch(build_id)
        task = asyncio.create_task(self._start(launch.id))
        self._tasks[launch.id] = task
        task.add_done_callback(lambda _: self._tasks.pop(launch.id, None))
        self.changes.fire()
        return launch

    async def _start(self, launch_id: str) -> None:
        launch = self.store.launch(launch_id)
        assert launch is not None
        while True:  # wait for the build
            news = self.changes.current()
            build = self.store.build(launch.build)
            assert build is not None
            if build.state not in ("queued", "building"):
                break
            await news.wait()
        if build.state != "built":
            self._set(launch_id, state="failed", error=f"its build {build.id} {build.state}: {build.error}", hint=build.hint or "see the build's events")
            return
        self._set(launch_id, state="starting")
        failure: tuple[str, str] | None = None
        try:
            container_id, url = await asyncio.to_thread(self._start_container, launch_id, build.image, build.repo)
        except R2envError as error:
            failure = (error.message, error.hint)
        except Exception as error:  # the engine's own errors, or a bug: the launch fails instead of starting for ever
            self.log(f"launch {launch_id}: {traceback.format_exc()}")
            failure = (safe_line(f"the server could not be started: {type(error).__name__}: {error}"), "see the daemon's log")
        current = self.store.launch(launch_id)
        if current is None or current.state != "starting":
            # Stopped while it was starting: its record says so already, and a server that came up is for nobody.
            if failure is None:
                await asyncio.to_thread(self.stop_server, container_id)
            return
        if failure is not None:
            self._set(launch_id, state="failed", error=failure[0], hint=failure[1])
            return
        self._set(launch_id, state="running", container_id=container_id, url=url, last_activity=time.time())

    def _start_container(self, launch_id: str, image: str, source: str) -> tuple[str, str]:
        if self.copy_image is not None and not self.engine.image_id(image):
            self.log(f"launch {launch_id}: copying {image} from the build engine to the launch engine")
            self.copy_image(image)
        if not self.engine.image_id(image):
            # `docker rmi` or a prune since the build: the launch CLI's hint (`r2env build`) is not the daemon's.
            raise LaunchError(f"the image {image} was removed from the engine after its build",
                              "ask for the repository again: a build whose image is gone is built again")
        options = replace(self.options, port=self.options.port or free_port(self.options.ip))
        uid, gid = host_identity()
        request = container_request(image, self.engine.image_config(image), options, token=new_token(), source=source,
                                    cwd=Path.cwd(), uid=uid, gid=gid, host_env=os.environ)
        request = replace(request, labels=(*request.labels, (SERVE_LABEL, self.daemon_id), (SERVE_LAUNCH_LABEL, launch_id)),
                          pids_limit=self.serve.launch_pids)
        ready: Ready | None = None
        # Run to the end: a detached run keeps its container only when it finishes normally after Ready.
        for event in run(self.engine, request, options):
            if isinstance(event, Ready):
                ready = event
        if ready is None:
            raise LaunchError("the server stopped before it answered", "see the daemon's log")
        return ready.container_id, ready.url

    def stop(self, launch_id: str, reason: str) -> Launch:
        launch = self.store.launch(launch_id)
        assert launch is not None
        if launch.state not in LAUNCH_ACTIVE:
            return launch
        if launch.state == "waiting" and launch_id in self._tasks:
            self._tasks[launch_id].cancel()
        launch = self._set(launch_id, state="stopped", stopped_reason=reason)
        if launch.container_id:
            asyncio.get_running_loop().run_in_executor(None, self.stop_server, launch.container_id)
        return launch

    def stop_server(self, container_id: str) -> None:
        """Stop and remove one server (a container here; the hub backend asks its hub)."""
        self.engine.stop_container(container_id)

    def server_state(self, launch: Launch) -> tuple[bool, str]:
        """(whether its server still runs, why not); a server that exited is removed."""
        try:
            info = self.engine.container(launch.container_id)
        except LaunchError:
            return False, "its container is gone"
        if info.status != "running":
            self.engine.stop_container(launch.container_id)
            return False, f"the server exited with code {info.exit_code}"
        return True, ""

    def server_activity(self, launch: Launch) -> float | None:
        return last_activity(launch.url)

    def _set(self, launch_id: str, **fields: object) -> Launch:
        launch = self.store.set_launch(launch_id, **fields)
        self.changes.fire()
        return launch

    # culling and restarts

    async def cull_forever(self) -> None:
        limits = [limit for limit in (self.serve.cull_idle_timeout, self.serve.max_age) if limit]
        interval = min(60.0, max(1.0, min(limits) / 4)) if limits else 60.0
        while True:
            await asyncio.sleep(interval)
            try:
                await self.check_running()
            except Exception as error:  # an engine hiccup must not end culling for good
                self.log(f"checking notebook servers failed: {type(error).__name__}: {error}")

    async def check_running(self) -> None:
        """Each running server: gone or exited → stopped; idle longer than the cull timeout → stopped and removed."""
        for launch in self.store.launches(states=("running",)):
            running, reason = await asyncio.to_thread(self.server_state, launch)
            if not running:
                self._set(launch.id, state="stopped", stopped_reason=reason)
                continue
            now = time.time()
            age = now - launch.created
            if self.serve.max_age and age > self.serve.max_age:
                # What the container says about activity is the repository's to forge: the age is the daemon's own.
                self.log(f"culling {launch.id}: running for {age:.0f} s")
                await asyncio.to_thread(self.stop_server, launch.container_id)
                self._set(launch.id, state="stopped", stopped_reason=f"stopped after {age:.0f} s, the longest a server may run")
                continue
            activity = await asyncio.to_thread(self.server_activity, launch)
            if activity:
                # A stamp in the future (a container reporting 2099) counts as activity now, never later (issue 17).
                activity = min(activity, now)
            known = min(launch.last_activity or 0, now)  # one stored by an earlier daemon may lie in the future
            if (activity and activity > known) or known != (launch.last_activity or 0):
                launch = self._set(launch.id, last_activity=max(activity or 0, known))
            idle = now - (launch.last_activity or launch.created)
            if self.serve.cull_idle_timeout and idle > self.serve.cull_idle_timeout:
                self.log(f"culling {launch.id}: idle for {idle:.0f} s")
                await asyncio.to_thread(self.stop_server, launch.container_id)
                self._set(launch.id, state="stopped", stopped_reason=f"culled after {idle:.0f} s without activity")

    def recover(self) -> None:
        """After a restart (the store has already failed launches that were starting): running servers that survived
        are kept; every other container labelled with this daemon's id is an orphan and is removed."""
        tracked = {launch.container_id: launch for launch in self.store.launches(states=("running",))}
        alive: set[str] = set()
        for info in self.engine.containers(f"{SERVE_LABEL}={self.daemon_id}"):
            if info.id in tracked and info.status == "running":
                alive.add(info.id)
            else:
                self.log(f"removing orphan container {info.id[:12]} ({info.labels.get(SERVE_LAUNCH_LABEL, '?')})")
                self.engine.stop_container(info.id)
        for container_id, launch in tracked.items():
            if container_id not in alive:
                self.store.set_launch(launch.id, state="stopped", stopped_reason=f"its container did not survive the restart ({INTERRUPTED})")

    def record(self, launch: Launch, request_host: str | None) -> dict[str, object]:
        """The launch as a client sees it. A server published on every interface is reached at the host name the
        client used for the daemon (the stored URL names 127.0.0.1, which is only right on this machine)."""
        record = launch.to_json()
        # On a launch engine of another machine the URL names that machine already (r2env/engine.py _container_info).
        if launch.url and request_host and self.options.ip in ("0.0.0.0", "::", "") and not getattr(self.engine, "remote_host", ""):
            parts = urllib.parse.urlsplit(launch.url)
            host = f"[{request_host}]" if ":" in request_host else request_host
            record["url"] = urllib.parse.urlunsplit(parts._replace(netloc=f"{host}:{parts.port}"))
        return record

    def counts(self) -> dict[str, int]:
        counts = self.store.launch_counts()
        return {state: counts.get(state, 0) for state in LAUNCH_ACTIVE}


def last_activity(url: str) -> float | None:
    """When the Jupyter server last saw a user (its /api/status; asking does not count as activity)."""
    base, token = split_server_url(url)
    request = urllib.request.Request(f"{base}api/status", headers={"Authorization": f"token {token}"})
    try:
        with open_url(request, timeout=5) as response:  # a redirect is an HTTPError: no activity learnt
            stamp = json.load(response).get("last_activity")
    except (urllib.error.URLError, OSError, ValueError):
        return None
    try:
        return datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp() if stamp else None
    except ValueError:
        return None
