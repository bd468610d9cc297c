"""One build, in its own process (`python -m r2env.serve.worker`), so the daemon can cancel it, time it out and
survive it. The job comes pickled on stdin (nothing from a client reaches a command line); events go out on stdout
as JSON lines, the last one {"result": …} or {"error": …}. The worker leads its own process group (the daemon
starts it so): cancelling kills the group, the docker CLI included, which makes BuildKit stop the build."""

from __future__ import annotations

import json
import os
import pickle
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from typing import IO, Any

from r2env.config import Settings
from r2env.errors import R2envError
from r2env.events import BuildEvent
from r2env.source import Checkout


@dataclass(frozen=True)
class Job:
    checkout: Checkout
    settings: Settings  # image_name set to the image this build makes


def _orphan_watchdog(parent: int) -> None:
    """A daemon killed with -9 cannot stop its builds: each worker notices and takes its process group down."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os.killpg(os.getpgrp(), signal.SIGKILL)


def _send(out: IO[str], record: dict[str, Any]) -> None:
    out.write(json.dumps(record) + "\n")
    out.flush()


def run_job(job: Job, out: IO[str]) -> int:
    from r2env import pipeline
    from r2env.engine import DockerEngine

    settings = job.settings
    try:
        for event in pipeline.build_checkout(job.checkout, settings, lambda: DockerEngine.connect(prefer_classic=settings.builder == "classic", address=settings.engine)):
            if isinstance(event, pipeline.BuildResult):
                _send(out, {"result": {"image": event.message, "image_id": event.image_id, "cached": event.cache_hit,
                                       "spec_digest": event.spec_digest}})
            else:
                _send(out, _event(event))
        return 0
    except R2envError as error:
        _send(out, {"error": error.message, "hint": error.hint, "details": error.details})
        return error.exit_code
    except Exception as error:  # a bug: the daemon's log gets the traceback, the client one line
        traceback.print_exc(file=sys.stderr)
        _send(out, {"error": f"internal error: {type(error).__name__}: {error}", "hint": "see the daemon's log; please report it"})
        return 1


def _event(event: BuildEvent) -> dict[str, Any]:
    return {"phase": event.phase.value, "kind": event.kind.value, "message": event.message,
            "progress": list(event.progress) if event.progress else None}


def main() -> int:
    threading.Thread(target=_orphan_watchdog, args=(os.getppid(),), daemon=True).start()
    # Run as __main__, this module's Job is not the class the daemon pickled: use the importable one.
    from r2env.serve import worker

    job = pickle.load(sys.stdin.buffer)
    assert isinstance(job, worker.Job)
    return worker.run_job(job, sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
