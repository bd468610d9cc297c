"""r2env's small root steps (creating the user, npm's or R's folders) ride along with a neighbouring step.

Each RUN is a step of its own: a container started, a layer written and exported, about 0.3 s of a cold build
apiece. These steps take a moment and change only with r2env or its options, so they join a neighbour whose
rerun costs as little: each other, or apt.txt's step (which reruns anyway when apt.txt is edited, and then
costs the moment they take). They never join r2env's own apt step (Node.js, R: half a minute to rerun) nor a
step the uv stage repeats. Only neighbours join, so every command still runs in the order the plan gave."""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

from r2env.apt_install import REPOSITORY_APT
from r2env.spec import Stage, Step


def _plain_root(step: Step) -> bool:
    """A root step of r2env's own that downloads nothing and runs nothing of the repository's."""
    return step.kind == "run" and step.user == "root" and not (step.caches or step.secrets or step.repository_code)


def _repository_apt(step: Step) -> bool:
    return step.kind == "run" and step.user == "root" and step.buildpack == REPOSITORY_APT and "apt" in step.caches


def hosts_entrypoint(step: Step) -> bool:
    """A step that may also write r2env's entrypoint (r2env/render.py): one whose rerun costs as little."""
    return _plain_root(step) or _repository_apt(step)


def _joinable(first: Step, second: Step) -> bool:
    # Two plain steps, or a plain step and apt.txt's (never apt.txt's step with itself).
    return (first.stage is Stage.SYSTEM and second.stage is Stage.SYSTEM and hosts_entrypoint(first) and hosts_entrypoint(second)
            and (_plain_root(first) or _plain_root(second)))


def _joined(first: Step, second: Step) -> Step:
    # The step that downloads (apt.txt's) gives the result its buildpack, secrets, caches and packages; a plain step
    # has none of them.
    lead, other = (second, first) if _plain_root(first) and not _plain_root(second) else (first, second)
    return replace(lead, description=f"{lead.description}; {other.buildpack}: {other.description}", script=f"{first.script} && {second.script}")


def fold_plain_steps(steps: Sequence[Step]) -> list[Step]:
    """`steps` with each plain root step of the system stage joined to a neighbour it may join."""
    folded: list[Step] = []
    for step in steps:
        if folded and _joinable(folded[-1], step):
            folded[-1] = _joined(folded[-1], step)
        else:
            folded.append(step)
    return folded
