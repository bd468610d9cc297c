"""A worker for tests/test_fuzz.py: imports r2env once, then runs each case's `r2env.cli.main(argv)` in a forked
child with a time and memory limit, so a hang or a memory bomb is killed and reported instead of blocking the suite.

Protocol: one JSON object a line on stdin ({argv, cwd, env, out, timeout, drop}), one JSON answer a line on stdout
({rc, hang, seconds}); the child's stdout and stderr go to `out`.stdout and `out`.stderr. The worker is single-
threaded, so forking it is safe (forking pytest itself, which may hold threads, is not)."""

from __future__ import annotations

import json
import os
import resource
import select
import signal
import sys
import time
import traceback

TRACEBACK_EXIT = 70  # the child's exit code when main() raised instead of returning
MEMORY_LIMIT = 2 * 1024**3  # a YAML bomb ends in MemoryError (a traceback) instead of swapping the machine


def _child(job: dict[str, object]) -> None:
    os.setpgid(0, 0)  # its own process group: a hang is killed with every git or uv it started
    out = str(job["out"])
    stdout = os.open(out + ".stdout", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    stderr = os.open(out + ".stderr", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    stdin = os.open(os.devnull, os.O_RDONLY)
    os.dup2(stdin, 0)
    os.dup2(stdout, 1)
    os.dup2(stderr, 2)
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    if job.get("drop") and os.geteuid() == 0:
        # As a user root is not, so that mode 000 files are really unreadable.
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)
    os.chdir(str(job["cwd"]))
    os.environ.clear()
    os.environ.update({str(k): str(v) for k, v in dict(job["env"]).items()})  # type: ignore[call-overload]
    code = TRACEBACK_EXIT
    try:
        from r2env.cli import main

        result = main([str(word) for word in job["argv"]])  # type: ignore[union-attr]
        code = result if isinstance(result, int) else 1
    except SystemExit as exited:  # argparse
        code = exited.code if isinstance(exited.code, int) else (0 if exited.code is None else 1)
    except BaseException:
        traceback.print_exc()
        code = TRACEBACK_EXIT
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def run(job: dict[str, object]) -> dict[str, object]:
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:
        _child(job)
    pidfd = os.pidfd_open(pid)
    ready, _, _ = select.select([pidfd], [], [], float(job["timeout"]))  # type: ignore[arg-type]
    hang = not ready
    if hang:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _, status = os.waitpid(pid, 0)
    os.close(pidfd)
    if hang:  # whatever it started in its group goes too
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    signalled = os.WIFSIGNALED(status)
    return {"rc": os.waitstatus_to_exitcode(status), "hang": hang, "signalled": signalled and not hang,
            "seconds": round(time.monotonic() - started, 3)}


def _import_everything() -> None:
    """Every module r2env may import lazily, imported once before any fork: each case starts warm, and a case run
    as an unprivileged user need not read Python's files (root's site-packages may be closed to it)."""
    import importlib
    import pkgutil

    import buildpacks
    import r2env

    for package in (r2env, buildpacks):
        for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            importlib.import_module(module.name)
    for name in ("traitlets.log", "traitlets.config.loader", "ruamel.yaml", "tomllib", "json", "packaging.requirements",
                 "packaging.specifiers", "packaging.version", "docker", "encodings.idna", "encodings.utf_16"):
        try:
            importlib.import_module(name)
        except ImportError:
            pass


def serve() -> None:
    _import_everything()

    for line in sys.stdin:
        sys.stdout.write(json.dumps(run(json.loads(line))) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    serve()
