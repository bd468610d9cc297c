"""launch: start a built image as a notebook server (or a command) and watch it until it is ready.

The request is planned purely (`container_request`), then carried out through any engine with the
container methods below; the run loop yields log lines, then `Ready` (server) or `Exited` (command)."""

from __future__ import annotations

import os
import posixpath
import queue
import re
import secrets
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Generator, Iterator, Mapping, Protocol

from r2env.launch.container import LAUNCH_LABEL, SERVER_PORT, SOURCE_LABEL, ContainerInfo, ContainerRequest, LaunchOptions, Mount, env_dict
from r2env.errors import LaunchError, UsageError
from r2env.events import BuildEvent, Kind, Phase
from r2env.launch.gpus import TOOLKIT_HINT, GpuRequest, no_gpu_runtime, parse_gpus

JUPYTER_COMMANDS = ("jupyter", "jupyter-lab", "jupyter-notebook", "jupyter-server")
# A uid that is not the image's cannot write the image's home: Jupyter's runtime files go here instead.
FOREIGN_UID_HOME = "/tmp/r2env-home"


@dataclass(frozen=True)
class Ready:
    """The server answers at `url` (token included)."""

    url: str
    container_id: str


@dataclass(frozen=True)
class Exited:
    """A command (or the server) ended with `code`."""

    code: int
    container_id: str


class ContainerEngine(Protocol):
    def image_config(self, reference: str) -> dict[str, Any]: ...

    def gpu_support(self, image: str, gpus: GpuRequest) -> str: ...

    def start_container(self, request: ContainerRequest) -> str: ...

    def container(self, container_id: str) -> ContainerInfo: ...

    def follow_logs(self, container_id: str) -> Iterator[str]: ...

    def logs_tail(self, container_id: str, lines: int = 20) -> str: ...

    def wait(self, container_id: str) -> int: ...

    def stop_container(self, container_id: str, grace_seconds: int = 5) -> None: ...

    @property
    def host(self) -> str: ...


_MEMORY = re.compile(r"^\d+(\.\d+)?[bkmgBKMG]?$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def parse_volume(text: str, cwd: Path, workdir: str) -> Mount:
    """HOST:CONTAINER[:ro|rw]. A relative host path is from the current directory, a relative container
    path from the repository's folder in the image. The host path must exist: Docker would create it as root."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1] or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
        raise UsageError(f"--volume {text!r} is not HOST:CONTAINER[:ro]", "e.g. --volume ./data:data:ro")
    host = (cwd / Path(parts[0]).expanduser()).resolve()
    if not host.exists():
        raise UsageError(f"--volume {text!r}: {host} does not exist", "create it first, or fix the path")
    container = posixpath.normpath(posixpath.join(workdir, parts[1]))
    return Mount(str(host), container, read_only=len(parts) == 3 and parts[2] == "ro")


def parse_env(items: tuple[str, ...], host_env: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    pairs = []
    for item in items:
        name, has_value, value = item.partition("=")
        if not _ENV_NAME.match(name):
            raise UsageError(f"--env {item!r} is not KEY=VALUE", "e.g. --env MPLBACKEND=Agg")
        if not has_value:
            if name not in host_env:
                raise UsageError(f"--env {name}: {name} is not set here", "give a value: --env NAME=VALUE")
            value = host_env[name]
        pairs.append((name, value))
    return tuple(pairs)


def image_uid(config: Mapping[str, Any]) -> int | None:
    """The uid the image runs as: NB_UID (r2env and repo2docker images), or a numeric USER."""
    env = env_dict(dict(config))
    if env.get("NB_UID", "").isdigit():
        return int(env["NB_UID"])
    user = str(config.get("User") or "0").split(":")[0]
    return int(user) if user.isdigit() else None


def image_workdir(config: Mapping[str, Any]) -> str:
    return env_dict(dict(config)).get("REPO_DIR") or str(config.get("WorkingDir") or "/")


def container_request(
    image: str,
    config: Mapping[str, Any],
    options: LaunchOptions,
    *,
    token: str,
    source: str = "",
    editable_dir: Path | None = None,
    cwd: Path = Path("."),
    uid: int = 0,
    gid: int = 0,
    host_env: Mapping[str, str] = {},
) -> ContainerRequest:
    """Everything about the container, decided before anything starts."""
    if options.port < 0 or options.port > 65535:
        raise UsageError(f"--port {options.port} is not a port", "give 1-65535, or leave it out for a free one")
    if options.memory and not _MEMORY.match(options.memory):
        raise UsageError(f"--memory {options.memory!r} is not a size", "e.g. --memory 4g or 512m")
    if options.cpus < 0:
        raise UsageError(f"--cpus {options.cpus:g} is not a CPU count", "e.g. --cpus 2 or 0.5")
    workdir = image_workdir(config)
    mounts = [parse_volume(text, cwd, workdir) for text in options.volumes]
    if options.editable:
        if editable_dir is None:
            raise UsageError("--editable needs a local repository", "launch a local directory, not an image or a git URL")
        mounts.insert(0, Mount(str(editable_dir.resolve()), workdir))
    environment = dict(parse_env(options.env, host_env))
    server = not options.command
    if server:
        environment.setdefault("JUPYTER_TOKEN", token)
    command: tuple[str, ...] | None = options.command or None
    image_command = tuple(config.get("Cmd") or ())
    jupyter = server and bool(image_command) and posixpath.basename(image_command[0]) in JUPYTER_COMMANDS
    extra: list[str] = []
    if jupyter and options.port:
        # Jupyter's own log then shows the address on this host, not the container's port 8888.
        extra.append(f"--ServerApp.custom_display_url=http://{browser_host(options.ip)}:{options.port}/")
    user = ""
    # Files written on a mount belong to the host user only if the container runs as that user.
    if mounts and image_uid(config) != uid:
        user = f"{uid}:{gid}"
        if uid == 0 and jupyter:
            extra.append("--allow-root")
        if uid != 0:
            environment.setdefault("HOME", FOREIGN_UID_HOME)
    if extra:
        command = (*image_command, *extra)
    return ContainerRequest(
        image=image,
        command=command,
        environment=tuple(sorted(environment.items())),
        labels=((LAUNCH_LABEL, "server" if server else "command"), (SOURCE_LABEL, source or image)),
        publish=(options.ip, options.port),
        mounts=tuple(mounts),
        user=user,
        memory=options.memory,
        cpus=options.cpus,
        gpus=parse_gpus(options.gpus) if options.gpus else None,
    )


def browser_host(ip: str) -> str:
    return "127.0.0.1" if ip in ("0.0.0.0", "::", "") else (f"[{ip}]" if ":" in ip else ip)


def server_url(info: ContainerInfo) -> str:
    """The URL of a launched server, token included."""
    token = info.environment.get("JUPYTER_TOKEN", "")
    return f"http://{browser_host(info.host_ip)}:{info.host_port}/" + (f"?token={token}" if token else "")


def split_server_url(url: str) -> tuple[str, str]:
    """The inverse of server_url: (the server's base URL, ending in /; its token, "" when none)."""
    parts = urllib.parse.urlsplit(url)
    token = urllib.parse.parse_qs(parts.query).get("token", [""])[0]
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path or "/", "", "")), token


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # urllib then raises HTTPError with the 3xx status


def open_url(request: str | urllib.request.Request, timeout: float) -> Any:
    """urlopen that never follows a redirect: the container answering decides what it says, not where r2env's
    request goes next (a server redirecting the daemon's status request to another host or port; issue 17)."""
    return urllib.request.build_opener(_RefuseRedirects).open(request, timeout=timeout)


def answers(url: str) -> bool:
    """Any HTTP answer counts: the server is up, whatever it thinks of the request."""
    try:
        with open_url(url, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError):
        return False


def free_port(ip: str) -> int:
    """A port free on `ip` now, chosen before the start so the server can be told its address."""
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    with socket.socket(family) as probe:
        probe.bind((ip if ip not in ("", "0.0.0.0", "::") else ("::" if family == socket.AF_INET6 else "0.0.0.0"), 0))
        return int(probe.getsockname()[1])


def new_token() -> str:
    return secrets.token_hex(24)


def run(
    engine: ContainerEngine,
    request: ContainerRequest,
    options: LaunchOptions,
    *,
    probe: Callable[[str], bool] = answers,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Generator[BuildEvent | Ready | Exited, None, None]:
    """Start the container and follow it. Unless it is left running on purpose (--detach once ready),
    the container is stopped and removed when this generator ends: normally, on error or when closed."""
    if request.gpus is not None:
        yield BuildEvent(Phase.LAUNCH, Kind.INFO, f"checking that the engine can pass GPUs ({request.gpus.text})")
        refusal = engine.gpu_support(request.image, request.gpus)
        if refusal:
            raise LaunchError(no_gpu_runtime(engine.host, request.gpus), TOOLKIT_HINT)
    container_id = engine.start_container(request)
    yield BuildEvent(Phase.LAUNCH, Kind.INFO, f"started container {container_id[:12]} from {request.image}")
    keep = False
    try:
        lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=_pump, args=(engine, container_id, lines), daemon=True).start()
        if not _is_server(request):
            keep = options.detach
            yield from _follow_command(engine, container_id, lines, options)
            return
        yield from _wait_ready(engine, container_id, lines, options, probe, sleep, clock)
        if options.detach:
            keep = True
            return
        for line in _lines(lines):
            yield BuildEvent(Phase.LAUNCH, Kind.LOG, line)
        yield Exited(engine.wait(container_id), container_id)
    finally:
        if not keep:
            engine.stop_container(container_id)


def _is_server(request: ContainerRequest) -> bool:
    return dict(request.labels).get(LAUNCH_LABEL) == "server"


def _pump(engine: ContainerEngine, container_id: str, lines: "queue.Queue[str | None]") -> None:
    try:
        for line in engine.follow_logs(container_id):
            lines.put(line)
    except Exception:  # the container went away under us: the main loop sees its state
        pass
    finally:
        lines.put(None)


def _lines(lines: "queue.Queue[str | None]") -> Iterator[str]:
    """The pumped lines until the end marker. Never one blocking get: a signal (Ctrl-C, SIGTERM) that the kernel
    hands to another thread only sets a flag, and the main thread runs its handler at its next bytecode, which a
    get() waiting for a quiet server's next line would never reach."""
    while True:
        try:
            line = lines.get(timeout=0.2)
        except queue.Empty:
            continue
        if line is None:
            return
        yield line


def _drain(lines: "queue.Queue[str | None]") -> Iterator[BuildEvent]:
    while True:
        try:
            line = lines.get_nowait()
        except queue.Empty:
            return
        if line is None:
            lines.put(None)  # keep the end marker for whoever reads next
            return
        yield BuildEvent(Phase.LAUNCH, Kind.LOG, line)


def _follow_command(
    engine: ContainerEngine, container_id: str, lines: "queue.Queue[str | None]", options: LaunchOptions
) -> Iterator[BuildEvent | Exited]:
    info = engine.container(container_id)
    if info.host_port:
        yield BuildEvent(Phase.LAUNCH, Kind.INFO, f"port {SERVER_PORT} is published at {browser_host(info.host_ip)}:{info.host_port}")
    if options.detach:
        return
    for line in _lines(lines):
        yield BuildEvent(Phase.LAUNCH, Kind.LOG, line)
    yield Exited(engine.wait(container_id), container_id)


def _wait_ready(
    engine: ContainerEngine,
    container_id: str,
    lines: "queue.Queue[str | None]",
    options: LaunchOptions,
    probe: Callable[[str], bool],
    sleep: Callable[[float], None],
    clock: Callable[[], float],
) -> Iterator[BuildEvent | Ready]:
    deadline = clock() + options.timeout
    while True:
        yield from _drain(lines)
        info = engine.container(container_id)
        if info.status in ("exited", "dead"):
            code = engine.wait(container_id)
            yield from _drain(lines)
            raise LaunchError(
                f"the container exited with code {code} before the server answered",
                "see its last lines above; fix the start script or the server command",
                details=engine.logs_tail(container_id).rstrip(),
            )
        if info.host_port and probe(f"http://{browser_host(info.host_ip)}:{info.host_port}/api"):
            yield Ready(server_url(info), container_id)
            return
        if clock() > deadline:
            raise LaunchError(
                f"the server did not answer within {options.timeout:g} s",
                "see its log above; give it longer with --launch-timeout",
                details=engine.logs_tail(container_id).rstrip(),
            )
        sleep(0.2)


def host_identity() -> tuple[int, int]:
    return os.getuid(), os.getgid()
