"""The daemon's jupyterhub launch backend (c.Serve.launch_backend = "jupyterhub"): a built image is started
through a JupyterHub instead of as a container of the daemon's own, one hub user per launch (r2env/serve/hub.py).
Stopping, culling and restarts go through the hub too; a launch that fails part-way deletes the user it made."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Callable, Protocol

from r2env.config import Settings
from r2env.errors import LaunchError, R2envError
from r2env.serve.builds import Changes
from r2env.serve.config import ServeSettings
from r2env.serve.hub import Hub, spawner_options, user_name
from r2env.serve.launches import DaemonEngine, Launches
from r2env.serve.store import INTERRUPTED, Launch, Store

HUB_PREFIX = "hub:"  # a hub launch's container_id: hub:<user name>


class HubEngine(DaemonEngine, Protocol):
    def run(self, image: str, command: list[str]) -> tuple[int, str]: ...


class HubLaunches(Launches):
    def __init__(self, store: Store, engine: HubEngine, settings: Settings, serve: ServeSettings, daemon_id: str,
                 changes: Changes, log: Callable[[str], None], hub: Hub) -> None:
        super().__init__(store, engine, settings, serve, daemon_id, changes, log)
        self.hub = hub
        self.run_in_image = engine.run

    def _start_container(self, launch_id: str, image: str, source: str) -> tuple[str, str]:
        if not self.engine.image_id(image):
            raise LaunchError(f"the image {image} was removed from the engine after its build",
                              "ask for the repository again: a build whose image is gone is built again")
        # The hub's spawner runs jupyterhub-singleuser (DockerSpawner's and KubeSpawner's default command): an image
        # without it would start, fail and leave only the hub's log to say why.
        code, _ = self.run_in_image(image, ["sh", "-c", "command -v jupyterhub-singleuser"])
        if code != 0:
            raise LaunchError(f"the image {image} has no jupyterhub-singleuser, which the hub's spawner starts",
                              "add jupyterhub (the hub's version) to the repository's requirements, as repo2docker's images have it")
        name = user_name(self.hub.settings.user_prefix, launch_id)
        self.hub.create_user(name)
        try:
            self.hub.start_server(name, spawner_options(image, source, launch_id))
            token = self.hub.user_token(name, self.serve.max_age)
        except BaseException:
            self._delete_user(name)  # no orphan users or servers on the hub
            raise
        return HUB_PREFIX + name, f"{self.hub.server_url(name)}?token={token}"

    def _delete_user(self, name: str) -> None:
        try:
            self.hub.delete_user(name)
        except R2envError as error:
            self.log(f"could not delete hub user {name}: {error.message}")

    def stop_server(self, container_id: str) -> None:
        if container_id.startswith(HUB_PREFIX):
            self._delete_user(container_id.removeprefix(HUB_PREFIX))

    def server_state(self, launch: Launch) -> tuple[bool, str]:
        name = launch.container_id.removeprefix(HUB_PREFIX)
        server = self.hub.server(name)
        if server is None or not (server.get("ready") or server.get("pending")):
            self._delete_user(name)
            return False, "the hub stopped its server"
        return True, ""

    def server_activity(self, launch: Launch) -> float | None:
        try:
            server = self.hub.server(launch.container_id.removeprefix(HUB_PREFIX))
        except LaunchError:
            return None
        return _timestamp((server or {}).get("last_activity"))

    def recover(self) -> None:
        """After a restart: hub users of this daemon's prefix that no running launch owns are deleted."""
        tracked = {launch.container_id.removeprefix(HUB_PREFIX): launch for launch in self.store.launches(states=("running",))}
        alive: set[str] = set()
        for name in self.hub.users(self.hub.settings.user_prefix):
            server = self.hub.server(name)
            if name in tracked and server is not None and server.get("ready"):
                alive.add(name)
            else:
                self.log(f"deleting orphan hub user {name}")
                self._delete_user(name)
        for name, launch in tracked.items():
            if name not in alive:
                self.store.set_launch(launch.id, state="stopped", stopped_reason=f"its hub server did not survive the restart ({INTERRUPTED})")


def _timestamp(value: Any) -> float | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
