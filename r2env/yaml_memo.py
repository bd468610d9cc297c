"""Loaded YAML kept on disk by the sha256 of its text, for the large generated files every build reads again.

r2env.lock (88 kB of pins for a small repository) takes 0.12 s in ruamel.yaml's pure-Python loader, the one the
bounds of r2env/documents.py need; from JSON it takes 2 ms. The key is the text itself (and the loader's version),
so an edited file is a miss, never a stale hit. Only data JSON gives back exactly is kept (no dates, no integer
keys); anything unreadable in the memo is a miss. The memo is filled only by callers whose data passed their
checks, so a malformed file in a build daemon's queue fills nothing."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

import ruamel.yaml

KEEP = 64  # files kept: one per lock text seen recently; a few MB at most
Checked = TypeVar("Checked")


def load_checked(folder: Path | None, text: str, load: Callable[[str], Any], check: Callable[[Any], Checked]) -> Checked:
    """check(load(text)), with load skipped when the memo in `folder` has this text; kept there once it passed check."""
    remembered, data = recall(folder, text)
    if not remembered:
        data = load(text)
    checked = check(data)
    if not remembered:
        remember(folder, text, data)
    return checked


def _entry(folder: Path, text: str) -> Path:
    digest = hashlib.sha256(f"ruamel.yaml {ruamel.yaml.__version__}\0{text}".encode("utf-8", "surrogatepass")).hexdigest()
    return folder / f"{digest}.json"


def recall(folder: Path | None, text: str) -> tuple[bool, Any]:
    """(True, data) when this exact text was loaded before; (False, None) otherwise."""
    if folder is None:
        return False, None
    entry = _entry(folder, text)
    try:
        data = json.loads(entry.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return False, None
    try:
        os.utime(entry)  # recently used: the last to be pruned
    except OSError:
        pass
    return True, data


def remember(folder: Path | None, text: str, data: Any) -> None:
    """Keep what `text` loaded to; silently nothing when it cannot be kept exactly or the folder is not writable."""
    if folder is None:
        return
    try:
        encoded = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        if json.loads(encoded) != data:  # integer keys or tuples would come back as something else
            return
    except (TypeError, ValueError, RecursionError):
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=folder, suffix=".tmp", delete=False, encoding="utf-8") as scratch:
            scratch.write(encoded)
        os.replace(scratch.name, _entry(folder, text))  # whole or not there: a concurrent reader never sees half
        _prune(folder)
    except OSError:
        return


def _prune(folder: Path) -> None:
    entries = sorted(folder.glob("*.json"), key=lambda path: path.stat().st_mtime, reverse=True)
    for stale in entries[KEEP:]:
        stale.unlink(missing_ok=True)
    for scratch in folder.glob("*.tmp"):  # left by a process killed between writing and renaming
        if time.time() - scratch.stat().st_mtime > 3600:
            scratch.unlink(missing_ok=True)
