"""`r2env-repo2docker`: a drop-in for `jupyter-repo2docker` as BinderHub and repo2docker-action call it.

BinderHub runs `jupyter-repo2docker --ref=REF --image=NAME --no-clean --no-run --json-logs --user-name=jovyan
--user-id=1000 [--appendix TEXT] [--push] [--build-memory-limit N] [extra args] REPO_URL` (binderhub/build.py,
Build.get_r2d_cmd_options and get_cmd) and reads stdout and stderr together, one JSON object per line
(binderhub/build_local.py, LocalRepo2dockerBuild._handle_log). So with --json-logs every line this prints, errors
included, is `{"phase": ..., "message": ...}` with repo2docker's phases (fetching, building, pushing, failed).
Options repo2docker has but r2env does not map are refused by name: a builder that ignored them would build
something else than what the operator asked for. Like r2env's CLI, only this module prints and exits."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace
from typing import IO, MutableMapping, NoReturn, Sequence

from r2env.errors import EXIT_INTERRUPTED, R2envError, UsageError
from r2env.events import BuildEvent, Kind, Phase, format_event
from r2env.redact import redact, safe_line

PROG = "r2env-repo2docker"
# repo2docker's phases (repo2docker/app.py R2dState); BinderHub counts "failed" (and the older "failure") as a failure.
FETCHING, BUILDING, PUSHING, RUNNING, FAILED = "fetching", "building", "pushing", "running", "failed"


class _Refused(Exception):
    """An option this entry point does not take, or a malformed one: one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _Refused(message)


def parser() -> argparse.ArgumentParser:
    # allow_abbrev=False: an unknown option must never be read as a prefix of a known one. BinderHub's `--image`
    # is repo2docker's `--image-name` abbreviated (argparse's prefix matching there), so both are spelled out here.
    p = _Parser(prog=PROG, allow_abbrev=False, add_help=True,
                description="Build a repository with r2env, taking jupyter-repo2docker's command-line options.")
    p.add_argument("repo", help="repository URL or local directory")
    p.add_argument("command", nargs=argparse.REMAINDER, help="command to run in the image (without --no-run)")
    p.add_argument("--ref", default="", help="branch, tag or commit to build")
    p.add_argument("--image-name", "--image", dest="image_name", default="", help="name (and tag) of the image")
    p.add_argument("--no-run", action="store_true", help="build only; without it the image is launched, as repo2docker does")
    p.add_argument("--no-build", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--no-clean", action="store_true", help="accepted: r2env keeps no build directory to clean")
    p.add_argument("--json-logs", action="store_true", help="one JSON object per line: {\"phase\", \"message\"}")
    p.add_argument("--user-name", default=None, help="name of the notebook user")
    p.add_argument("--user-id", default=None, help="uid of the notebook user")
    p.add_argument("--appendix", default=None, help="Dockerfile instructions appended to the build")
    p.add_argument("--push", action="store_true", help="push the image to the registry its name starts with")
    p.add_argument("--subdir", default=None, help="build from this folder of the repository")
    p.add_argument("--target-repo-dir", default=None, help="where the repository is copied in the image")
    p.add_argument("--build-memory-limit", default=None, help="memory limit of each build step (classic builder)")
    p.add_argument("--cache-from", action="append", default=[], help="image whose layers the build may reuse (repeatable)")
    p.add_argument("--label", action="append", default=[], help="image label KEY=VALUE (repeatable)")
    p.add_argument("--build-arg", action="append", default=[], help="build arg KEY=VALUE (repeatable)")
    p.add_argument("-e", "--env", action="append", default=[], help="KEY=VALUE in the launched container (repeatable)")
    p.add_argument("--config", default=None, help="an r2env_config.py (c.R2env.*), not a repo2docker config")
    p.add_argument("--engine", default="docker", help="container engine: only docker (r2env's engine honours DOCKER_HOST)")
    return p


def _overrides(arguments: argparse.Namespace) -> dict[str, str | list[str]]:
    """The r2env options (trait name -> command-line string) the repo2docker options stand for."""
    overrides: dict[str, str | list[str]] = {}
    for name in ("ref", "image_name", "user_name", "user_id", "appendix", "subdir", "target_repo_dir"):
        value = getattr(arguments, name)
        if value:
            overrides[name] = value
    for name in ("cache_from", "label", "build_arg", "env"):
        if getattr(arguments, name):
            overrides[name] = list(getattr(arguments, name))
    if arguments.push:
        overrides["push"] = "true"
    return overrides


def _refuse_repo2docker_config(config_file: str | None) -> None:
    from r2env.config import read_config_file

    if config_file and "Repo2Docker" in read_config_file(config_file):
        raise UsageError(f"{config_file} sets c.Repo2Docker.*: r2env-repo2docker reads an r2env_config.py",
                         "write the same settings as c.R2env.* (see docs/configuration.md)")


class _Log:
    """Where events go: repo2docker's JSON lines, or r2env's usual text."""

    def __init__(self, json_logs: bool, stream: IO[str]) -> None:
        self.json_logs = json_logs
        self.stream = stream
        self.pushing = False

    def line(self, phase: str, message: str, **extra: object) -> None:
        if self.json_logs:
            self.stream.write(json.dumps({"phase": phase, "message": message.rstrip("\n") + "\n", **extra}) + "\n")
        else:
            self.stream.write(message.rstrip("\n") + "\n")
        self.stream.flush()

    def event(self, event: BuildEvent) -> None:
        self.line(self.phase(event), format_event(event))

    def phase(self, event: BuildEvent) -> str:
        if event.phase is Phase.FETCH:
            return FETCHING
        # The publish step reports in the build phase ("pushing REF"); from the first push on, repo2docker says "pushing".
        if event.kind is Kind.INFO and event.message.startswith("pushing "):
            self.pushing = True
        return PUSHING if self.pushing else BUILDING


def _git_credentials(environ: MutableMapping[str, str]) -> None:
    """BinderHub passes a private repository's credentials as GIT_CREDENTIAL_ENV, in git-credential's output format
    (binderhub/build_local.py submit), as repo2docker reads them: a credential helper that prints the variable, set
    through git's GIT_CONFIG_COUNT environment (git 2.31+), so no file and no command line holds them."""
    if not environ.get("GIT_CREDENTIAL_ENV"):
        return
    index = int(environ.get("GIT_CONFIG_COUNT", "0") or 0)
    environ[f"GIT_CONFIG_KEY_{index}"] = "credential.helper"
    environ[f"GIT_CONFIG_VALUE_{index}"] = '!f() { test "$1" = get && printf "%s\\n" "$GIT_CREDENTIAL_ENV"; }; f'
    environ["GIT_CONFIG_COUNT"] = str(index + 1)


def run(argv: Sequence[str], stdout: IO[str]) -> int:
    json_logs = "--json-logs" in argv
    log = _Log(json_logs, stdout)
    try:
        try:
            arguments = parser().parse_args(list(argv))
        except _Refused as refused:
            raise UsageError(_refusal(str(refused)), f"see {PROG} --help for the repo2docker options r2env takes") from None
        return _build(arguments, log)
    except R2envError as error:
        # One line, in the log's own format: BinderHub shows it to the user, and a traceback would not be JSON.
        text = safe_line(redact(str(error)))
        if json_logs:
            # A failed step's last lines come first (as r2env's CLI prints them), then the one error line.
            for detail in error.details.splitlines() if error.details else ():
                log.line(BUILDING, "    " + safe_line(redact(detail)))
            log.line(FAILED, f"r2env: error: {text}")
        else:
            if error.details:
                print("\n".join("    " + safe_line(redact(line)) for line in error.details.splitlines()), file=sys.stderr)
            print(f"{PROG}: error: {text}", file=sys.stderr, flush=True)
        return error.exit_code
    except KeyboardInterrupt:
        log.line(FAILED, "r2env: interrupted") if json_logs else print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _refusal(message: str) -> str:
    if message.startswith("unrecognized arguments: "):
        unknown = message.split(": ", 1)[1].split()
        option = next((word for word in unknown if word.startswith("-")), unknown[0])
        return f"{option.split('=', 1)[0]} is a repo2docker option r2env does not take" if option.startswith("-") else f"unexpected argument {option!r}"
    return message


def _build(arguments: argparse.Namespace, log: _Log) -> int:
    from r2env import pipeline
    from r2env.config import load_config
    from r2env.engine import DockerEngine
    from r2env.option_checks import memory_bytes

    if arguments.engine != "docker":
        raise UsageError(f"--engine {arguments.engine}: r2env builds with Docker only", "leave --engine out, or give --engine docker")
    if arguments.no_build:
        raise UsageError("--no-build: r2env-repo2docker always builds", "leave --no-build out, or run `r2env launch IMAGE`")
    if arguments.no_run and arguments.command:
        raise UsageError(f"a command ({arguments.command[0]}) was given with --no-run", "leave out either the command or --no-run")
    _refuse_repo2docker_config(arguments.config)
    settings = load_config(arguments.config, _overrides(arguments))
    if arguments.build_memory_limit:
        # BinderHub passes bytes (str(memory_limit)); repo2docker also takes 2G-style sizes.
        if not memory_bytes(arguments.build_memory_limit.lower()):
            raise UsageError(f"--build-memory-limit {arguments.build_memory_limit!r} is not a size", "give bytes or a size such as 2g")
        settings = replace(settings, build_memory=arguments.build_memory_limit.lower())
    _git_credentials(os.environ)
    connect = lambda: DockerEngine.connect(prefer_classic=settings.builder == "classic", address=settings.engine)  # noqa: E731
    image = ""
    for event in pipeline.build(arguments.repo, settings, connect):
        if isinstance(event, pipeline.BuildResult):
            image = event.message
            pushed = f", pushed ({event.digest})" if event.pushed and event.digest else ""
            log.line(PUSHING if event.pushed else BUILDING, f"Successfully built image {image}{pushed}")
        elif event.kind is not Kind.RESULT:
            log.event(event)
    if arguments.no_run:
        return 0
    from r2env.launch.commands import launch_command

    log.line(RUNNING, f"launching {image}")
    return launch_command(image, tuple(arguments.command), settings)


def main(argv: Sequence[str] | None = None) -> int:
    return run(sys.argv[1:] if argv is None else argv, sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
