"""fetch: a local directory as it is, or anything `git clone` accepts, checked out at a ref."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

from r2env.errors import SourceError

Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]

_REMOTE = re.compile(r"^([a-z][a-z0-9+.-]*://|[\w.-]+@[\w.-]+:)", re.IGNORECASE)


def run_git(argv: Sequence[str]) -> "subprocess.CompletedProcess[str]":
    return subprocess.run(["git", *argv], capture_output=True, text=True, check=False)


@dataclass(frozen=True)
class Checkout:
    path: Path
    url: str  # what the user named (a path or a URL)
    commit: str  # "" when the directory is not a git checkout
    ref: str
    subdir: str = ""  # the folder of the repository `path` is (--subdir); url and commit name the whole repository


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "no output"


def is_remote(source: str) -> bool:
    return bool(_REMOTE.match(source))


def _head_commit(path: Path, git: Runner) -> str:
    result = git(["-C", str(path), "rev-parse", "--verify", "--quiet", "HEAD^{commit}"])
    return result.stdout.strip() if result.returncode == 0 else ""


def _is_bare(path: Path, git: Runner) -> bool:
    return git(["-C", str(path), "rev-parse", "--is-bare-repository"]).stdout.strip() == "true"


def fetch(source: str, ref: str, cache_dir: Path, git: Runner = run_git) -> Checkout:
    """Return a checkout. A local directory without --ref is used in place (uncommitted edits included)."""
    hint = "give a path to a repository or a git URL"
    if not source.strip():
        raise SourceError("the source is empty", hint + " (`.` for the current directory)")
    try:
        local = Path(source).expanduser()
        # stat once here: a name longer than NAME_MAX or PATH_MAX is the user's error, not a traceback later.
        exists = local.exists() if not is_remote(source) else False
    except RuntimeError:  # pathlib's "Could not determine home directory." for ~nosuchuser
        raise SourceError(f"{source}: no such user's home directory", hint) from None
    except OSError as error:
        raise SourceError(f"{source}: {error.strerror or error}", hint) from None
    if not is_remote(source):
        if not exists:
            raise SourceError(f"{source}: no such directory", hint)
        if local.is_dir() and not ref and not _is_bare(local, git):
            # A work tree's HEAD, or "" outside git (or in a repository without commits yet).
            return Checkout(local.resolve(), str(local.resolve()), _head_commit(local, git), "")
        if not local.is_dir():
            raise SourceError(f"{source}: not a directory", "give a path to a repository or a git URL")
        source = str(local.resolve())
    return _clone(source, ref, cache_dir, git)


def subdirectory(checkout: Checkout, subdir: str) -> Checkout:
    """The checkout narrowed to `subdir` (already checked: relative, no `..`; see r2env/options.py), which becomes
    the repository's root for detection and the build context, as repo2docker's --subdir."""
    if not subdir:
        return checkout
    path = checkout.path.joinpath(*subdir.split("/"))
    hint = "give a folder that exists in the repository" + (f" at {checkout.ref}" if checkout.ref else "")
    # realpath, as r2env.repo.leads_outside: a link may not take the build context outside what was fetched.
    real = Path(os.path.realpath(path))
    if not real.is_relative_to(os.path.realpath(checkout.path)):
        raise SourceError(f"--subdir {subdir} leads outside the repository (to {real}) through a symbolic link", hint)
    try:
        is_dir = real.is_dir()
    except OSError as error:  # a name longer than NAME_MAX
        raise SourceError(f"--subdir {subdir}: {error.strerror or error}", hint) from None
    if not is_dir:
        raise SourceError(f"--subdir {subdir}: no such folder in {checkout.url}", hint)
    return replace(checkout, path=real, subdir=subdir)


def _clone(url: str, ref: str, cache_dir: Path, git: Runner) -> Checkout:
    key = hashlib.sha256(url.encode()).hexdigest()[:16]
    destination = cache_dir / "checkouts" / key
    if (destination / ".git").is_dir():
        fetched = git(["-C", str(destination), "fetch", "--quiet", "--tags", "--force", "origin", "+refs/heads/*:refs/remotes/origin/*"])
        if fetched.returncode != 0:
            raise SourceError(f"{url}: git fetch failed: {_last_line(fetched.stderr)}", "check the URL and your network")
    else:
        destination.parent.mkdir(parents=True, exist_ok=True)
        # After "--" git reads the URL as a URL even when it starts with '-' ("-u<command>@host:x" is otherwise
        # -u, that is --upload-pack=<command>): see gitcli(7).
        cloned = git(["clone", "--quiet", "--no-checkout", "--", url, str(destination)])
        if cloned.returncode != 0:
            raise SourceError(f"{url}: git clone failed: {_last_line(cloned.stderr)}", "check the URL and that you can access it")
    target = ref or "HEAD"
    commit = ""
    for candidate in (f"origin/{target}", target) if ref else ("origin/HEAD", "HEAD"):
        resolved = git(["-C", str(destination), "rev-parse", "--verify", "--quiet", "--end-of-options", f"{candidate}^{{commit}}"])
        if resolved.returncode == 0:
            commit = resolved.stdout.strip()
            break
    if not commit:
        raise SourceError(f"{url}: unknown ref {ref!r}", "give a branch, tag or commit that exists in the repository")
    checked_out = git(["-C", str(destination), "checkout", "--quiet", "--force", "--detach", commit])
    if checked_out.returncode != 0:
        raise SourceError(f"{url}: cannot check out {target}: {_last_line(checked_out.stderr)}", "check the ref")
    git(["-C", str(destination), "clean", "-qfdx"])
    return Checkout(destination, url, commit, ref)
