"""The command line of `r2env launch`, `ps` and `stop`: build when given a repository, start, print, clean up."""

from __future__ import annotations

import os
import signal
import sys
from dataclasses import replace
from pathlib import Path
from types import FrameType

from r2env.config import Settings
from r2env.launch.container import LAUNCH_LABEL, SOURCE_LABEL
from r2env.errors import UsageError, EXIT_INTERRUPTED, LaunchError
from r2env.events import Kind, format_event
from r2env.launch.launcher import Exited, Ready, container_request, free_port, host_identity, new_token, run, server_url
from r2env.source import is_remote


def _local_dir(text: str) -> Path | None:
    """`text` as a local directory, or None (also when it cannot be a path here: too long, ~nosuchuser)."""
    try:
        local = Path(text).expanduser()
        return local if local.is_dir() else None
    except (OSError, RuntimeError):
        return None


def _is_source(text: str) -> bool:
    try:
        return is_remote(text) or Path(text).expanduser().exists()
    except (OSError, RuntimeError):
        return True  # then fetching says what is wrong with it, in one line


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM stops the container the way Ctrl-C does


def _task_command(source: str, task: str, command: tuple[str, ...], settings: Settings) -> tuple[str, ...]:
    """`--task NAME`: the pixi task of the repository's environment, as a command like any other."""
    from r2env import pipeline
    from r2env.errors import UsageError
    from r2env.pixi.tasks import task_command

    if command:
        raise UsageError("--task and a command after -- both say what to run", "give one of them")
    if not _is_source(source):
        raise UsageError(f"--task {task}: {source} is not a repository, and tasks come from its pixi manifest", "give the repository")
    planned = pipeline.plan_source(source, settings)
    if planned.facts.pixi is None or planned.spec.buildpacks[:1] != ("pixi",):
        raise UsageError(f"--task {task}: {source} is not built as a pixi project, and tasks are pixi's", "give a repository with pixi.toml and pixi.lock")
    return task_command(planned.facts.pixi, settings.plan.pixi_environment, task)


def launch_command(source: str, command: tuple[str, ...], settings: Settings) -> int:
    from r2env import pipeline
    from r2env.engine import DockerEngine

    if settings.launch.task:
        command = _task_command(source, settings.launch.task, command, settings)
    options = replace(settings.launch, command=command)
    local = _local_dir(source)
    # With --subdir, the image holds that folder at its repository path: mount the same folder over it.
    editable_dir = local.resolve().joinpath(*settings.subdir.split("/")) if local is not None and not settings.ref else None
    uid, gid = host_identity()
    # Bad options fail now, before a build that may take minutes.
    container_request("", {}, options, token="", editable_dir=editable_dir, cwd=Path.cwd(), uid=uid, gid=gid, host_env=os.environ)
    engine = DockerEngine.connect(prefer_classic=settings.builder == "classic", address=settings.engine)
    if engine.remote_host and options.ip.startswith("127."):
        # Ports are published on the engine's machine: its loopback is not this machine's.
        raise UsageError(f"--ip {options.ip} publishes the server on the loopback of {engine.remote_host}, the engine's machine, which this machine cannot reach",
                         f"give --ip 0.0.0.0 (every interface of {engine.remote_host}) or an address of {engine.remote_host}")
    if _is_source(source):
        image = ""
        for built in pipeline.build(source, settings, lambda: engine):
            if built.kind is Kind.RESULT:
                image = built.message
            else:
                print(format_event(built), flush=True)
    elif engine.image_id(source):
        image, editable_dir = source, None
    else:
        raise LaunchError(f"{source} is neither a directory, a git URL nor a local image", "give a repository, or build the image first with `r2env build`")
    if not options.port:
        options = replace(options, port=free_port(options.ip))
    request = container_request(
        image, engine.image_config(image), options, token=new_token(), source=source, editable_dir=editable_dir,
        cwd=Path.cwd(), uid=uid, gid=gid, host_env=os.environ,
    )
    previous = signal.signal(signal.SIGTERM, _terminate)
    events = run(engine, request, options)
    try:
        for event in events:
            if isinstance(event, Ready):
                print(f"[launch] JupyterLab is ready: {event.url}", flush=True)
                if options.detach:
                    print(f"[launch] container {event.container_id[:12]} keeps running; stop it with `r2env stop {event.container_id[:12]}`", flush=True)
            elif isinstance(event, Exited):
                print(f"[launch] container {event.container_id[:12]} exited with code {event.code}", flush=True)
                return event.code
            else:
                print(format_event(event), flush=True)
        if options.detach and command:
            print("[launch] the command runs detached; see `r2env ps`", flush=True)
        return 0
    except KeyboardInterrupt:
        events.close()  # stops and removes the container
        print("[launch] stopped; the container is removed", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED if command else 0
    finally:
        events.close()
        signal.signal(signal.SIGTERM, previous)


def list_launched(include_stopped: bool) -> int:
    from r2env.engine import DockerEngine

    engine = DockerEngine.connect()
    rows = [("CONTAINER", "STATUS", "URL", "SOURCE")]
    for info in sorted(engine.containers(LAUNCH_LABEL), key=lambda i: i.created):
        if info.status != "running" and not include_stopped:
            continue
        status = info.status if info.status == "running" else f"{info.status} ({info.exit_code})"
        url = server_url(info) if info.labels.get(LAUNCH_LABEL) == "server" and info.host_port and info.status == "running" else "-"
        rows.append((info.id[:12], status, url, info.labels.get(SOURCE_LABEL, info.image)))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[3])
    return 0


def stop_launched(prefixes: list[str], stop_all: bool) -> int:
    from r2env.engine import DockerEngine

    if not prefixes and not stop_all:
        raise LaunchError("no container given", "name one (see `r2env ps`) or use --all")
    engine = DockerEngine.connect()
    launched = engine.containers(LAUNCH_LABEL)
    chosen = list(launched) if stop_all else []
    for prefix in prefixes:
        matches = [info for info in launched if info.id.startswith(prefix)]
        if len(matches) != 1:
            found = "no container" if not matches else f"{len(matches)} containers"
            raise LaunchError(f"{found} launched by r2env match {prefix!r}", "see `r2env ps --all` for their ids")
        chosen.append(matches[0])
    for info in chosen:
        engine.stop_container(info.id)
        print(f"stopped and removed {info.id[:12]}", flush=True)
    return 0
