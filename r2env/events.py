"""The one event type that engines and the pipeline yield, and every front end formats."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Phase(str, Enum):
    FETCH = "fetch"
    INSPECT = "inspect"
    PLAN = "plan"
    BASE = "base"
    BUILD = "build"
    LAUNCH = "launch"
    DONE = "done"


class Kind(str, Enum):
    INFO = "info"
    STEP = "step"  # a build step started: message names it, progress says how far
    LOG = "log"  # output of a running step
    CACHED = "cached"
    RESULT = "result"


@dataclass(frozen=True)
class BuildEvent:
    phase: Phase
    kind: Kind
    message: str
    progress: tuple[int, int] | None = None  # (step, of steps) when known


def format_event(event: BuildEvent) -> str:
    """One line of a build log, as the command line and the daemon's text log show it."""
    if event.kind is Kind.STEP:
        step, total = event.progress or (0, 0)
        text = event.message if len(event.message) <= 160 else event.message[:157] + "..."
        return f"[{event.phase.value} {step}/{total}] {text}"
    if event.kind is Kind.LOG:
        return f"    {event.message}"
    if event.kind is Kind.CACHED:
        return "    (cached)"
    return f"[{event.phase.value}] {event.message}"
