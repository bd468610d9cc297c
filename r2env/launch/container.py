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
