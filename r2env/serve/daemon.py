"""`r2env serve`: open the state, settle what a previous run left behind, then answer HTTP until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import fcntl
import functools
import os
import signal
import sqlite3
import sys
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Callable, TextIO

from r2env.config import Settings
from r2env.launch.launcher import container_request, host_identity
from r2env.errors import UsageError
from r2env.serve.app import make_app
from r2env.serve.builds import Builds, Changes
from r2env.option_checks import memory_bytes
from r2env.serve.config import ServeSettings
from r2env.serve.build_cgroup import CGROUP_ROOT, RECORD, BuildkitLimits, CgroupUnavailable
from r2env.serve.firewall import BridgeFirewall, available_tools
from r2env.serve.connections import RESERVED_FILES, install_logging, listen, loop_exception_handler, raise_file_limit, scrub
from r2env.serve.launches import DaemonEngine, Launches
from r2env.serve.store import Store

if TYPE_CHECKING:
    from r2env.engine import DockerEngine

DATABASE = "r2env-serve.sqlite"


def _log(text: str) -> None:
    print(f"{datetime.now().isoformat(timespec='seconds')} r2env serve: {scrub(text)}", file=sys.stderr, flush=True)


def announce_token(store: Store, serve: ServeSettings, new_token: bool, out: TextIO) -> str:
    """The token to check requests against. A configured one is used as given; otherwise one is generated at
    first start (or with --new-token) and printed this once: only its digest is stored."""
    if serve.token:
        store.set_setting("token_source", "configured")
        store.set_token(serve.token)
        return "configured"
    if new_token or not store.has_token() or store.setting("token_source") == "configured":
        token = store.new_token()
        store.set_setting("token_source", "generated")
        print(f"r2env serve: API token (shown once; keep it): {token}", file=out, flush=True)
        return "generated"
    print("r2env serve: using the API token generated at first start (`r2env serve --new-token` makes a new one)", file=out, flush=True)
    return "kept"


def serve(settings: Settings, serve_settings: ServeSettings, new_token: bool = False, out: TextIO = sys.stdout) -> int:
    from r2env.engine import DockerEngine

    if settings.launch.port:
        raise UsageError(f"c.R2env.port = {settings.launch.port} gives every notebook server the same port, and the daemon starts many",
                         "remove it from the config file: each server gets a free port")
    if settings.subdir:  # each build request names its own repository; one folder for all of them means nothing
        raise UsageError(f"c.R2env.subdir = {settings.subdir!r} does not apply to the daemon", "remove it from the config file")
    # The launch options of the config file (mounts, environment, limits) fail now, not at every launch.
    uid, gid = host_identity()
    container_request("", {}, replace(settings.launch, editable=False), token="", cwd=Path.cwd(), uid=uid, gid=gid, host_env=os.environ)
    needed = serve_settings.max_connections + RESERVED_FILES
    available = raise_file_limit(needed)
    if available < needed:
        # Past the limit, accept() fails with "Too many open files" and health checks time out (issue 17).
        raise UsageError(f"max_connections {serve_settings.max_connections} needs {needed} open files, and this process may open {available}",
                         f"lower c.Serve.max_connections to {max(available - RESERVED_FILES, 1)} or less, or raise the limit "
                         "(ulimit -n; LimitNOFILE= in a systemd unit)")
    engine = DockerEngine.connect(prefer_classic=settings.builder == "classic", address=settings.engine)  # unreachable: exit 7, before listening
    # The launch engine or hub too: unreachable, a refused token: one line, before anything is set up.
    launch_engine, launches_for = _launch_backend(engine, settings, serve_settings)
    path = serve_settings.state_dir / DATABASE
    lock = _lock_state(serve_settings.state_dir)
    try:
        # Opened before any thread starts: Store sets the process umask while it creates its files (0600).
        store = Store(path)
    except (OSError, sqlite3.Error) as error:
        raise UsageError(f"{path}: cannot open the daemon's state ({error})",
                         "give a writable --state-dir; a damaged database can be moved away (its builds are forgotten)") from None
    try:
        firewall = _firewall(engine) if serve_settings.block_host_network else None
        build_limits = _buildkit_limits(engine, serve_settings)
        if build_limits is not None:  # applied to the engine's BuildKit as a whole: not a per-build option any more
            serve_settings = replace(serve_settings, build_memory="")
        try:
            asyncio.run(_run(store, engine, settings, serve_settings, new_token, out, launch_engine, launches_for))
        finally:
            if build_limits is not None:
                build_limits.remove()
            if firewall is not None:
                firewall.remove()
    finally:
        store.close()
        lock.close()
    return 0


def _firewall(engine: "DockerEngine") -> BridgeFirewall:
    """Installed before the first build can start (recovered queued builds included); see r2env/serve/firewall.py."""
    if not engine.host.startswith("unix://"):
        raise UsageError(f"c.Serve.block_host_network: the engine at {engine.host} is not on this machine, so the daemon cannot firewall its bridge",
                         "add the rules of docs/serve.md on the engine's host and set c.Serve.block_host_network = False")
    bridge = engine.default_bridge()
    if not bridge:
        raise UsageError("c.Serve.block_host_network: the engine has no default bridge network to firewall",
                         "add equivalent rules for the engine's network yourself (docs/serve.md) and set c.Serve.block_host_network = False")
    firewall = BridgeFirewall(bridge, tools=available_tools())
    firewall.install()
    return firewall


def _buildkit_limits(engine: "DockerEngine", serve: ServeSettings, root: Path = CGROUP_ROOT, record: Path = RECORD) -> BuildkitLimits | None:
    """c.Serve.build_memory, build_cpus and build_pids for BuildKit builds, which take no per-build limit: see
    r2env/serve/build_cgroup.py. Where they cannot be set, the daemon says why once (and each build's log says the
    memory limit is not applied)."""
    if not (serve.build_memory or serve.build_cpus or serve.build_pids):
        return None
    if engine.builder != "buildkit":  # the classic builder limits each step's memory itself, and nothing else
        if serve.build_cpus or serve.build_pids:
            _log("build limits: c.Serve.build_cpus and build_pids are not applied by the classic builder")
        return None
    limits = BuildkitLimits((memory_bytes(serve.build_memory) or 0) * serve.max_builds if serve.build_memory else 0,
                            serve.build_cpus * serve.max_builds, serve.build_pids * serve.max_builds, root, record)
    if not engine.host.startswith("unix://") or engine.cgroup_driver() != "cgroupfs":
        _log(f"build limits: BuildKit steps are not limited (the engine at {engine.host} is not on this machine or does not use the "
             "cgroupfs driver): limit the engine itself, or use the classic builder (docs/serve.md, Limits)")
        return None
    try:
        where = limits.install()
    except CgroupUnavailable as error:
        _log(f"build limits: BuildKit steps are not limited ({error}; docs/serve.md, Limits)")
        return None
    asked = [f"memory {limits.memory:,} bytes" if limits.memory else "", f"{limits.cpus:g} CPUs" if limits.cpus else "",
             f"{limits.pids} processes" if limits.pids else ""]
    _log(f"build limits: all BuildKit build steps together limited to {', '.join(a for a in asked if a)} "
         f"(c.Serve.build_* x c.Serve.max_builds {serve.max_builds}) in {where}")
    return limits


def _lock_state(state_dir: Path) -> IO[str]:
    """One daemon per state directory: a second one would take the first's running builds for interrupted ones
    and remove its servers. The lock goes with the process, however it ends (kill -9 included)."""
    try:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        lock = open(state_dir / "r2env-serve.lock", "a+", encoding="utf-8")
    except OSError as error:
        raise UsageError(f"{state_dir}: cannot use it as the daemon's state directory ({error.strerror or error})", "give a writable --state-dir") from None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        owner = lock.read().strip() or "?"
        lock.close()
        raise UsageError(f"another r2env serve (pid {owner}) uses the state directory {state_dir}",
                         "stop it first, or give this one its own --state-dir") from None
    lock.seek(0)
    lock.truncate()
    lock.write(str(os.getpid()))
    lock.flush()
    return lock


LaunchesFor = Callable[[Store, Changes], Launches]


def _launch_backend(engine: "DockerEngine", settings: Settings, serve: ServeSettings) -> tuple["DockerEngine", LaunchesFor]:
    """The engine notebook servers run on and how launches are made: containers of the daemon's own (on the
    build engine or c.Serve.launch_docker_host), or servers of a JupyterHub. Checked before the daemon listens."""
    from r2env.engine import DockerEngine

    if serve.launch_backend == "jupyterhub":
        from r2env.serve.hub import Hub, HubSettings
        from r2env.serve.hub_launches import HubLaunches

        hub = Hub(HubSettings(serve.hub_url, serve.hub_api_token, serve.hub_user_prefix))
        version = hub.check()  # unreachable, not a hub, refused token: one line, before listening
        _log(f"launching through JupyterHub {version} at {hub.base} (users {serve.hub_user_prefix}*)")
        return engine, lambda store, changes: HubLaunches(store, engine, settings, serve, store.daemon_id(), changes, _log, hub)
    if serve.launch_engine is None:
        return engine, lambda store, changes: Launches(store, engine, settings, serve, store.daemon_id(), changes, _log)
    launch_engine = DockerEngine.connect(address=serve.launch_engine)
    if launch_engine.remote_host and settings.launch.ip.startswith("127."):
        raise UsageError(f"c.R2env.ip = {settings.launch.ip!r} publishes the servers on the loopback of {launch_engine.remote_host}, the launch engine's machine",
                         f"set c.R2env.ip = \"0.0.0.0\" (every interface of {launch_engine.remote_host}) or one of its addresses")
    if serve.block_host_network and not launch_engine.host.startswith("unix://"):
        raise UsageError(f"c.Serve.block_host_network: the launch engine at {launch_engine.host} is not on this machine, so the daemon cannot firewall its bridge",
                         "add the rules of docs/serve.md on that engine's host and set c.Serve.block_host_network = False")
    _log(f"building on {engine.host}, launching on {launch_engine.host}")
    copy = functools.partial(engine.copy_image_to, launch_engine)
    return launch_engine, lambda store, changes: Launches(store, launch_engine, settings, serve, store.daemon_id(), changes, _log, copy)


async def _run(store: Store, engine: DaemonEngine, settings: Settings, serve: ServeSettings, new_token: bool, out: TextIO,
               launch_engine: DaemonEngine | None = None, launches_for: LaunchesFor | None = None) -> None:
    changes = Changes()
    builds = Builds(store, settings, serve, lambda image: bool(engine.image_id(image)), changes, _log)
    launches = launches_for(store, changes) if launches_for else Launches(store, launch_engine or engine, settings, serve, store.daemon_id(), changes, _log)
    builds.recover()
    await asyncio.to_thread(launches.recover)
    failures = install_logging(sys.stderr)
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(loop_exception_handler(failures))
    try:
        runner, listener = await listen(make_app(store, builds, launches, changes, engine, serve.allowed_origins), serve, failures)
    except OSError as error:
        raise UsageError(f"cannot listen on {serve.host}:{serve.port}: {error.strerror or error}",
                         "choose another --port, or stop what uses it") from None
    # Only now, with the port taken: a token printed by a daemon that then could not listen would be lost in the noise.
    announce_token(store, serve, new_token, out)
    port = listener.sockets[0].getsockname()[1] if listener.sockets else serve.port
    host = f"[{serve.host}]" if ":" in serve.host else serve.host
    print(f"r2env serve: listening on http://{host}:{port}/ (state in {serve.state_dir})", file=out, flush=True)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    culling = asyncio.create_task(launches.cull_forever())
    await stop.wait()
    _log("stopping: running builds are stopped and will read as interrupted; notebook servers keep running")
    culling.cancel()
    await builds.close()
    listener.close()
    await runner.cleanup()
