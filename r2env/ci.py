"""What a CI step reports: the JSON result, GitHub Actions' step outputs and job summary.

Pure formatting plus three small file writers; the CLI decides when to call them."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Mapping

from r2env.errors import LockError, UsageError
from r2env.lock.lockfile import Lock, parse_lock
from r2env.lock.diff import diff_locks
from r2env.pipeline import BuildResult

OUTPUT_KEYS = ("image", "digest", "spec_digest", "cache_hit", "pushed", "duration_s")


def result_record(result: BuildResult, duration_s: float) -> dict[str, Any]:
    """The documented JSON object: the six keys CI relies on, then details."""
    return {
        "image": result.message,
        "digest": result.digest or None,
        "spec_digest": result.spec_digest,
        "cache_hit": result.cache_hit,
        "pushed": result.pushed,
        "duration_s": round(duration_s, 2),
        "image_id": result.image_id or None,
        "tags": list(result.tags),
        "size_bytes": result.size,
    }


def write_atomically(path: Path, text: str) -> None:
    """Whole or not at all: a reader (the next CI step) never sees half a file."""
    path = path.expanduser()
    if not path.parent.is_dir():
        raise UsageError(f"{path}: its directory does not exist", "give --output-json a file in an existing directory")
    handle, scratch = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(scratch, path)
    except BaseException:
        Path(scratch).unlink(missing_ok=True)
        raise


def github_outputs(record: Mapping[str, Any]) -> str:
    """`name=value` lines for $GITHUB_OUTPUT (https://docs.github.com/actions/reference/workflow-commands-for-github-actions#setting-an-output-parameter)."""
    lines = []
    for key in OUTPUT_KEYS:
        value = record[key]
        text = "" if value is None else json.dumps(value) if isinstance(value, bool) else str(value)
        if "\n" in text:  # none of ours can; a value with a newline would need the heredoc form
            raise ValueError(f"output {key} has a newline")
        lines.append(f"{key}={text}")
    return "\n".join(lines) + "\n"


def previous_lock(checkout: Path, lock_file: str) -> Lock | None:
    """The lock as of the previous commit (HEAD~1), when git history has it: what the step summary compares with.
    In a pull request's merge commit HEAD~1 is the base branch, so the summary shows what the PR changes."""
    completed = subprocess.run(
        ["git", "-C", str(checkout), "show", f"HEAD~1:./{lock_file}"], capture_output=True, text=True, check=False, timeout=30,
    )
    if completed.returncode != 0:
        return None
    try:
        return parse_lock(completed.stdout, f"HEAD~1:{lock_file}")
    except LockError:
        return None


def _size(size: int) -> str:
    return f"{size / 1_000_000:.0f} MB" if size else "unknown"


def step_summary(record: Mapping[str, Any], result: BuildResult, previous: Lock | None) -> str:
    """Markdown for $GITHUB_STEP_SUMMARY: the image, whether anything was built, size, packages, lock changes."""
    planned = result.planned
    lock = planned.lock if planned else None
    built = "no: every layer came from a cache" if result.cache_hit else "yes"
    rows = [
        ("image", f"`{record['image']}`"),
        ("digest", f"`{record['digest']}`" if record["digest"] else "not pushed"),
        ("spec digest", f"`{record['spec_digest']}`"),
        ("built", built),
        ("pushed", ", ".join(f"`{tag}`" for tag in result.tags) if result.pushed else "no"),
        ("size", _size(result.size)),
        ("duration", f"{record['duration_s']} s"),
    ]
    if lock is not None:
        rows.append(("packages", f"{len(lock.server) + len(lock.packages)} Python, {len(lock.apt)} Debian (locked)"))
    elif planned is not None:
        declared = sum(len(names) for _, names in planned.spec.packages)
        rows.append(("packages", f"{declared} declared, not locked"))
    lines = ["### r2env build", "", "| | |", "| --- | --- |", *(f"| {name} | {value} |" for name, value in rows), ""]
    if lock is None:
        lines.append("No `r2env.lock`: the image follows the repository's unpinned declarations.")
    elif previous is None:
        lines.append("Lock changes: unknown (no previous commit with a lock; check out with `fetch-depth: 2` to see them).")
    else:
        changes = diff_locks(previous, lock)
        if not changes:
            lines.append("Lock changes since the previous commit: none.")
        else:
            lines += ["Lock changes since the previous commit:", "", "| change | kind | package | old | new |", "| --- | --- | --- | --- | --- |"]
            lines += [f"| {c.verb} | {c.kind} | {c.name} | {c.old or '-'} | {c.new or '-'} |" for c in changes]
    return "\n".join(lines) + "\n"


def report_to_github(record: Mapping[str, Any], result: BuildResult, env: Mapping[str, str]) -> None:
    """Append outputs and the job summary when GitHub Actions named the files (it sets both variables)."""
    if output := env.get("GITHUB_OUTPUT"):
        with open(output, "a", encoding="utf-8") as stream:
            stream.write(github_outputs(record))
    if summary := env.get("GITHUB_STEP_SUMMARY"):
        planned = result.planned
        lock_file = ""
        if planned is not None and planned.lock is not None:
            from r2env.lock.locking import lock_path

            lock_file = lock_path(planned.facts)
        previous = previous_lock(planned.checkout.path, lock_file) if planned is not None and lock_file else None
        with open(summary, "a", encoding="utf-8") as stream:
            stream.write(step_summary(record, result, previous))
