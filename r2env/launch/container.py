"""What a container is asked to be: plain data that the launcher fills in and the engine carries out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from r2env.launch.gpus import GpuRequest

LAUNCH_LABEL = "org.r2env.launch"  # every container r2env starts carries it (value: server or command); `ps` and `stop` find them by it
SOURCE_LABEL = "org.r2env.launch.source"  # what the user launched
SERVER_PORT = 8888


def env_dict(config: dict[str, Any]) -> dict[str, str]:
    """An image's or container's Config.Env list as a mapping."""
    return dict(item.split("=", 1) for item in config.get("Env") or [] if "=" in item)


@dataclass(frozen=True)
class LaunchOptions:
    """What the user asks of a launch (the configuration's launch options; r2env/launch/launcher.py acts on them)."""

    ip: str = "127.0.0.1"
    port: int = 0  # 0 = a free port chosen by the engine
    detach: bool = False
    volumes: tuple[str, ...] = ()  # HOST:CONTAINER[:ro]
    editable: bool = False
    env: tuple[str, ...] = ()  # KEY=VALUE, or KEY to pass the host's value
    memory: str = ""
    cpus: float = 0.0
    gpus: str = ""
    timeout: float = 60.0  # seconds for the server to answer
    command: tuple[str, ...] = ()  # run this instead of the server
    task: str = ""  # a pixi task to run instead of the server (r2env/pixi/tasks.py)


@dataclass(frozen=True)
class Mount:
    host: str  # absolute
    container: str  # absolute
    read_only: bool = False


@dataclass(frozen=True)
class ContainerRequest:
    image: str
    command: tuple[str, ...] | None = None  # None: the image's own command
    environment: tuple[tuple[str, str], ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    publish: tuple[str, int] | None = None  # (host ip, host port; 0 = any free port) for the server port
    mounts: tuple[Mount, ...] = ()
    user: str = ""  # "uid:gid"; "" = the image's user
    memory: str = ""  # Docker's notation: 512m, 4g
    cpus: float = 0.0
    gpus: GpuRequest | None = None
    pids_limit: int = 0  # processes and threads the container may have; 0 = the engine's default (none)


@dataclass(frozen=True)
class ContainerInfo:
    id: str
    image: str
    status: str  # created, running, exited
    exit_code: int
    host_port: int  # where the server port is published; 0 when not
    host_ip: str
    labels: dict[str, str] = field(default_factory=dict)
    environment: dict[str, str] = field(default_factory=dict)
    created: str = ""
