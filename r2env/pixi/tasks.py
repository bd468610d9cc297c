"""pixi tasks as `r2env launch --task NAME` runs them: the task's command, after the tasks it depends on (each once,
in dependency order), each from the manifest's folder (or its `cwd`) with its `env`, in the image's environment.
https://pixi.sh/latest/workspace/advanced_tasks/ describes what pixi does; r2env runs the same commands with bash."""

from __future__ import annotations

import posixpath
import shlex

from r2env.errors import SpecError
from r2env.parsers.pixi import PixiManifest, PixiTask


def _ordered(tasks: dict[str, PixiTask], name: str, path: str) -> list[PixiTask]:
    order: list[PixiTask] = []
    visiting: list[str] = []

    def visit(current: str) -> None:
        if current in visiting:
            raise SpecError(f"{path}: tasks depend on each other in a cycle ({' -> '.join([*visiting, current])})", "remove one depends-on")
        if any(t.name == current for t in order):
            return
        if current not in tasks:
            raise SpecError(f"{path}: task {visiting[-1]!r} depends on {current!r}, which the environment does not define", "fix depends-on")
        visiting.append(current)
        for dependency in tasks[current].depends_on:
            visit(dependency)
        visiting.pop()
        order.append(tasks[current])

    visit(name)
    return order


def task_script(manifest: PixiManifest, environment: str, name: str) -> str:
    """The bash script running task `name` of `environment`; the container starts in the repository's folder."""
    chosen = manifest.environment(environment)
    chosen.task(name, manifest.path)  # an unknown task: one line listing the environment's tasks
    tasks = {t.name: t for t in chosen.tasks}
    folder = posixpath.dirname(manifest.path) or "."
    lines = ["set -e"]
    for task in _ordered(tasks, name, manifest.path):
        if not task.command:
            continue
        where = posixpath.normpath(posixpath.join(folder, task.cwd)) if task.cwd else folder
        exports = "".join(f"export {key}={shlex.quote(value)}; " for key, value in task.env if key.isidentifier())
        lines.append(f"( cd {shlex.quote(where)} && {exports}{task.command} )")
    return "\n".join(lines)


def task_command(manifest: PixiManifest, environment: str, name: str) -> tuple[str, ...]:
    return ("bash", "-c", task_script(manifest, environment, name))
