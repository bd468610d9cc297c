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
