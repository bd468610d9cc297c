"""The command line: parse options, call one library function, format its events. Only here do we print and exit."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from pathlib import Path
from typing import Any, Iterable, NoReturn, Sequence

from traitlets import Bool, List
from traitlets.config import Configurable

from r2env import __version__
from r2env.config import LAUNCH_TRAITS, R2env, Settings, cli_traits, load_config
from r2env.errors import EXIT_INTERRUPTED, R2envError, UsageError
from r2env.events import Kind, format_event
from r2env.redact import redact, safe_line

# Options only `build` has: what happens after the image exists.
PUBLISH_FLAGS = ("push", "tag", "cache-from", "check-registry", "json", "output-json")
# Options of the build itself, not of the plan or its Dockerfile text.
BUILD_FLAGS = ("label", "build-arg")
# repo2docker's short flags (`repo2docker -e KEY=VALUE -E`).
SHORT_FLAGS = {"env": "-e", "editable": "-E"}
# `r2env jupyter-repo2docker ...` is `r2env-repo2docker ...` (r2env/repo2docker_cli.py).
REPO2DOCKER_NAMES = ("jupyter-repo2docker", "repo2docker", "r2env-repo2docker")


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors as one line (no usage block) that echoes only a redacted excerpt of the input."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {safe_line(message)}: see {self.prog} --help\n")


def _add_trait_flags(parser: argparse.ArgumentParser, names: Iterable[str], configurable: type[Configurable] = R2env) -> None:
    # --config is accepted after the command too; SUPPRESS keeps a value given before it.
    parser.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS, help="traitlets config file (default: ./r2env_config.py)")
    traits = cli_traits(configurable)
    section = configurable.__name__
    group = parser.add_argument_group(f"options (also settable as c.{section}.<name> in r2env_config.py)")
    for flag in names:
        trait = traits[flag]
        help_text = (trait.help or "").replace("%", "%%")
        dest = ("trait:" if configurable is R2env else f"{section}:") + flag.replace("-", "_")
        names = [SHORT_FLAGS[flag], f"--{flag}"] if flag in SHORT_FLAGS and configurable is R2env else [f"--{flag}"]
        if isinstance(trait, Bool):
            group.add_argument(*names, dest=dest, action="store_const", const="true", help=help_text)
        elif trait.metadata.get("repeat"):
            group.add_argument(*names, dest=dest, action="append", metavar=flag.replace("-", "_").upper(), help=help_text)
        else:
            metavar = "A,B,..." if isinstance(trait, List) else flag.replace("-", "_").upper()
            group.add_argument(*names, dest=dest, metavar=metavar, help=help_text)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="r2env", description="Turn a code repository into a reproducible, runnable environment image.")
    parser.add_argument("--version", action="version", version=f"r2env {__version__}")
    parser.add_argument("--config", metavar="FILE", help="traitlets config file (default: ./r2env_config.py if present)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    launch_flags = [name.replace("_", "-") for name in LAUNCH_TRAITS]
    all_flags = sorted(set(cli_traits()) - set(launch_flags))
    source_help = "a local directory, or anything git clone accepts (URL, file://, bare repository)"

    build = commands.add_parser("build", help="build the image for a repository")
    build.add_argument("source", help=source_help)
    _add_trait_flags(build, all_flags)
    # repo2docker's -e sets the environment of the container it runs after building; `r2env build` runs none,
    # so the flag is accepted only to say where it belongs (hidden: it is not a build option).
    build.add_argument("-e", "--env", dest="run_env", action="append", help=argparse.SUPPRESS)

    plan = commands.add_parser("plan", help="print the image spec without building")
    plan.add_argument("source", help=source_help)
    plan.add_argument("--json", action="store_true", help="print the spec as JSON")
    _add_trait_flags(plan, [f for f in all_flags if f not in ("no-cache", "builder", "image-name", "relock", "appendix", *PUBLISH_FLAGS, *BUILD_FLAGS)])

    dockerfile = commands.add_parser("dockerfile", help="print the Dockerfile that would be built")
    dockerfile.add_argument("source", help=source_help)
    _add_trait_flags(dockerfile, [f for f in all_flags if f not in ("no-cache", "image-name", "relock", *PUBLISH_FLAGS, *BUILD_FLAGS)])

    lock = commands.add_parser("lock", help="resolve every package the image will contain into r2env.lock")
    lock.add_argument("source", nargs="?", default=".", help="a local directory (default: .)")
    mode = lock.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="exit 8 when r2env.lock is missing or stale (for CI); resolves nothing")
    mode.add_argument("--dry-run", action="store_true", help="resolve afresh and show what would change; write nothing")
    mode.add_argument("--diff", nargs=2, metavar=("OLD", "NEW"), help="show what changed between two lock files")
    _add_trait_flags(lock, [f for f in all_flags if f not in ("no-cache", "builder", "image-name", "relock", "appendix", *PUBLISH_FLAGS, *BUILD_FLAGS)])

    launch = commands.add_parser(
        "launch", help="build if needed, then start JupyterLab (or, after --, a command) in the image",
        usage="r2env launch [options] SOURCE_OR_IMAGE [-- COMMAND ...]",
    )
    launch.add_argument("source", metavar="SOURCE_OR_IMAGE", help=source_help + "; or a local image")
    _add_trait_flags(launch, sorted([f for f in all_flags if f not in PUBLISH_FLAGS] + launch_flags))

    ps = commands.add_parser("ps", help="list the containers r2env launched")
    ps.add_argument("--all", action="store_true", help="include stopped ones")
    stop = commands.add_parser("stop", help="stop and remove containers r2env launched")
    stop.add_argument("containers", nargs="*", metavar="ID", help="container id (a unique prefix is enough)")
    stop.add_argument("--all", action="store_true", help="stop every container r2env launched")

    from r2env.serve.config import Serve

    serve = commands.add_parser("serve", help="run the build-and-launch daemon: an HTTP API and a web page (see docs/serve.md)")
    serve.add_argument("--new-token", action="store_true", help="replace the generated API token with a new one, printed once")
    # Tokens are never flags: command lines are visible to every user of the machine (c.Serve.token or R2ENV_SERVE_TOKEN,
    # c.Serve.hub_api_token or JUPYTERHUB_API_TOKEN).
    _add_trait_flags(serve, sorted(set(cli_traits(Serve)) - {"token", "hub-api-token"}), Serve)

    base = commands.add_parser("base", help="manage base images")
    base_commands = base.add_subparsers(dest="base_command", required=True, metavar="ACTION")
    bootstrap = base_commands.add_parser("bootstrap", help="build a Debian base image from a mirror with debootstrap")
    bootstrap.add_argument("--suite", default="bookworm", choices=["bookworm", "trixie"])
    bootstrap.add_argument("--force", action="store_true", help="bootstrap again even if the image exists")
    _add_trait_flags(bootstrap, ["mirror", "cache-dir"])
    return parser


def _settings(arguments: argparse.Namespace) -> Settings:
    overrides: dict[str, str | list[str]] = {
        key.split(":", 1)[1]: value for key, value in vars(arguments).items() if key.startswith("trait:") and value is not None
    }
    return load_config(arguments.config, overrides)


def _connect(settings: Settings) -> Any:
    from r2env.engine import DockerEngine

    # docker-py is made (and the engine asked) at the first call that needs it: a build starts the docker CLI first.
    return lambda: DockerEngine.connect_on_first_use(prefer_classic=settings.builder == "classic", address=settings.engine)


def _run(arguments: argparse.Namespace) -> int:
    from r2env import pipeline

    if arguments.command == "base":
        return _bootstrap(arguments)
    if arguments.command == "build" and arguments.run_env:
        raise UsageError("-e/--env sets a container's environment, and `r2env build` runs no container",
                         "give it to `r2env launch -e KEY=VALUE` (which builds too), or set image environment in the repository's start script")
    if arguments.command in ("ps", "stop"):
        from r2env.launch.commands import list_launched, stop_launched

        return list_launched(arguments.all) if arguments.command == "ps" else stop_launched(arguments.containers, arguments.all)
    settings = _settings(arguments)
    if arguments.command == "serve":
        import os

        from r2env.serve.config import load_serve_config
        from r2env.serve.daemon import serve

        overrides = {key.split(":", 1)[1]: value for key, value in vars(arguments).items() if key.startswith("Serve:") and value is not None}
        return serve(settings, load_serve_config(arguments.config, overrides, os.environ), new_token=arguments.new_token)
    if arguments.command == "lock":
        return _lock(arguments, settings)
    if arguments.command == "launch":
        from r2env.launch.commands import launch_command

        return launch_command(arguments.source, tuple(arguments.run_command), settings)
    if arguments.command == "build":
        return _build(arguments, settings)
    planned = pipeline.plan_source(arguments.source, settings)
    if arguments.command == "dockerfile":
        text = pipeline.dockerfile_text(planned, buildkit=settings.builder != "classic")
        sys.stdout.write(pipeline.with_appendix(text, settings.publish.appendix))
    elif arguments.json:
        print(planned.spec.to_json())
    else:
        from r2env.summary import summarize

        print(summarize(planned.spec))
    return 0


def _build(arguments: argparse.Namespace, settings: Settings) -> int:
    import json
    import os
    import time

    from r2env import ci, pipeline

    started = time.monotonic()
    publishing = settings.publish
    # With --json, stdout carries only the result; the log goes to stderr.
    log = sys.stderr if publishing.json else sys.stdout
    result: pipeline.BuildResult | None = None
    # A failed step's last lines are repeated with the error on stderr, so the error stands on its own
    # where stdout (the streamed log) goes elsewhere, e.g. a CI log file.
    for event in pipeline.build(arguments.source, settings, _connect(settings)):
        if isinstance(event, pipeline.BuildResult):
            result = event
        elif event.kind is not Kind.RESULT:
            print(format_event(event), file=log, flush=True)
    assert result is not None
    record = ci.result_record(result, time.monotonic() - started)
    if publishing.output_json:
        ci.write_atomically(Path(publishing.output_json), json.dumps(record, indent=2) + "\n")
    ci.report_to_github(record, result, os.environ)
    pushed = f" (pushed, digest {result.digest})" if result.pushed and result.digest else ""
    print(f"built image {result.message}{pushed}", file=log, flush=True)
    if publishing.json:
        print(json.dumps(record), flush=True)
    return 0


def _lock(arguments: argparse.Namespace, settings: Settings) -> int:
    from r2env import pipeline
    from r2env.errors import LockError
    from r2env.lock.diff import diff_locks, format_diff, lock_counts
    from r2env.lock.locking import LockResult, load_lock_file, lock_path, refuse_dockerfile

    if arguments.diff:
        old, new = (Path(name) for name in arguments.diff)
        locks = []
        for path in (old, new):
            loaded = load_lock_file(path, str(path))  # through r2env/reading.py: a FIFO or binary file is one line
            if loaded is None:
                raise LockError(f"{path}: no such lock file", "give two r2env.lock files")
            locks.append(loaded)
        print(format_diff(diff_locks(*locks)))
        return 0
    if arguments.check:
        planned = pipeline.plan_source(arguments.source, settings)
        refuse_dockerfile(planned.spec)
        if planned.lock is None:
            raise LockError(f"{lock_path(planned.facts)} does not exist", "run `r2env lock` and commit the lock")
        print(f"{lock_path(planned.facts)} is up to date")
        return 0
    for event in pipeline.lock(arguments.source, settings, _connect(settings), write=not arguments.dry_run):
        if isinstance(event, LockResult):
            if event.previous is None:
                print(f"no previous lock; {lock_counts(event.lock)} locked")
            elif event.lock is not None:
                print(format_diff(diff_locks(event.previous, event.lock)))
            if not arguments.dry_run:
                print(f"locked {event.message}")
        else:
            print(format_event(event), flush=True)
    return 0


def _bootstrap(arguments: argparse.Namespace) -> int:
    from r2env.base import ensure_base
    from r2env.engine import DockerEngine

    settings = _settings(arguments)
    engine = DockerEngine.connect()
    reference = f"debian:{arguments.suite}"
    for event in ensure_base(engine, reference, settings.mirror, settings.cache_dir, rebootstrap=arguments.force):
        print(format_event(event), flush=True)
    print(f"base image {reference} is ready", flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    if words and words[0] in REPO2DOCKER_NAMES:
        # BinderHub's build pod gives its command as the container's args (binderhub/build.py, V1Container(args=
        # get_cmd())), after r2env's image's ENTRYPOINT: `r2env jupyter-repo2docker --ref=... URL`.
        from r2env import repo2docker_cli

        return repo2docker_cli.main(words[1:])
    # `r2env launch SOURCE -- COMMAND ...`: everything after -- is the command, never r2env's options.
    run_command = words[words.index("--") + 1:] if "--" in words else []
    words = words[: words.index("--")] if "--" in words else words
    arguments = _parser().parse_args(words)
    if run_command and arguments.command != "launch":
        print(f"r2env: error: only `r2env launch` takes a command after --", file=sys.stderr)
        return 2
    arguments.run_command = run_command
    try:
        return _run(arguments)
    except R2envError as error:
        # The one place errors are shown: credentials redacted, control characters escaped, long input cut to an
        # excerpt (r2env/redact.py), whatever the message was built from.
        if error.details:
            print("\n".join("    " + safe_line(redact(line)) for line in error.details.splitlines()), file=sys.stderr)
        print(f"r2env: error: {safe_line(str(error))}", file=sys.stderr, flush=True)
        return error.exit_code
    except KeyboardInterrupt:
        print("r2env: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return 0


def run() -> NoReturn:
    """The `r2env` command: main(), then a quick exit. When main() returns, everything is written and closed (files
    and temporary directories are closed by `with`, builds and pushes waited for); Python's own teardown of the ~600
    modules a build loads would still take about 40 ms, a tenth of a no-op rebuild (benchmarks/README.md)."""
    code = main()
    if threading.active_count() > 1:  # something still runs (a daemon's worker): let Python wait for it as usual
        sys.exit(code)
    logging.shutdown()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:
        pass  # the reader went away: nothing more to say to it
    os._exit(code)


if __name__ == "__main__":
    run()
