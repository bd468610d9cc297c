"""repo2docker's build options, checked once where the configuration is read: --target-repo-dir, --subdir,
--label, --build-arg, and r2env's --channel-map. Pure: the strings in, plain values out, a UsageError with the rule otherwise."""

from __future__ import annotations

import posixpath
import re
from typing import Iterable, Mapping, Sequence

from r2env.errors import UsageError

# Characters Docker reads literally in WORKDIR, COPY and ENV: no `$` (variable substitution), no spaces
# (COPY's plain form splits on them), no quotes.
_SAFE_PATH = re.compile(r"^/[A-Za-z0-9._+@/-]*$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Top-level directories of the Filesystem Hierarchy Standard: the repository may live below some of them,
# never in one (`install -d -o USER` would hand it to the notebook user, COPY would write over it).
_FHS_TOP = frozenset({"bin", "boot", "dev", "etc", "home", "lib", "lib32", "lib64", "libx32", "media", "mnt", "opt",
                      "proc", "root", "run", "sbin", "srv", "sys", "tmp", "usr", "var"})
# Below these nothing of the user's belongs: system files, root's home (mode 0700), or what the container
# runtime mounts over at start (/dev, /proc, /sys, /run).
_NOTHING_BELOW = frozenset({"bin", "boot", "dev", "etc", "lib", "lib32", "lib64", "libx32", "proc", "root", "run", "sbin", "sys"})
_STANDARD_CHILDREN = frozenset({"bin", "sbin", "lib", "lib64", "libexec", "include", "share", "src", "games", "etc", "man",
                                "cache", "log", "tmp", "spool", "mail", "lock", "local", "backups", "opt"})
# Names that can travel as environment variables (r2env/engine.py keeps values out of argv that way).
_ARG_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Build args the plan sets itself (repo2docker's template declares exactly these): they come from options.
_PLANNED_ARGS = {"NB_USER": "--user-name", "NB_UID": "--user-id", "REPO_DIR": "--target-repo-dir"}
OWN_LABEL_PREFIX = "org.r2env."
_LABEL_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")


def check_repo_dir(path: str, *env_prefixes: str) -> str:
    """`path` when it can hold the repository in the image; else a UsageError naming the rule."""
    rule = "give an absolute, normalised path of letters, digits and . _ - + @, outside the system directories, e.g. /srv/repo"
    if not path.startswith("/") or _CONTROL.search(path) or not _SAFE_PATH.match(path) or posixpath.normpath(path) != path:
        raise UsageError(f"--target-repo-dir {path!r} is not an absolute, normalised path of plain characters", rule)
    parts = path.strip("/").split("/")
    if path == "/" or (len(parts) == 1 and parts[0] in _FHS_TOP) or parts[0] in _NOTHING_BELOW:
        raise UsageError(f"--target-repo-dir {path} is a system directory", rule)
    if parts[0] in ("usr", "var") and (len(parts) == 2 and parts[1] in _STANDARD_CHILDREN
                                       or parts[:2] == ["usr", "local"] and len(parts) == 3 and parts[2] in _STANDARD_CHILDREN):
        raise UsageError(f"--target-repo-dir {path} is a system directory", rule)
    for env_prefix in env_prefixes:
        if path == env_prefix or path.startswith(env_prefix + "/") or env_prefix.startswith(path + "/"):
            raise UsageError(f"--target-repo-dir {path} overlaps the Python environment at {env_prefix}", rule)
    return path


def check_subdir(subdir: str) -> str:
    """The repository-relative folder to build from, normalised ("" for the root); a UsageError when it is
    absolute or climbs out with `..` (whether it exists is for after fetching: r2env/source.py)."""
    rule = "give a folder inside the repository, relative to its root, e.g. --subdir analysis"
    if _CONTROL.search(subdir):
        raise UsageError(f"--subdir {subdir!r} contains control characters", rule)
    if subdir.startswith("/"):
        raise UsageError(f"--subdir {subdir} is an absolute path", rule)
    parts = [part for part in subdir.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise UsageError(f"--subdir {subdir} contains ..", rule)
    return "/".join(parts)


def _pairs(option: str, items: Iterable[str]) -> Iterable[tuple[str, str, str]]:
    for item in items:
        key, equals, value = item.partition("=")
        if _CONTROL.search(item.replace("\t", "")):
            raise UsageError(f"{option} {key!r}: contains a newline or control character", f"give {option} KEY=VALUE on one line")
        yield key, equals, value


def parse_labels(items: Iterable[str]) -> tuple[tuple[str, str], ...]:
    """--label KEY=VALUE, in order (a later one wins). r2env's own keys name what the image was built from."""
    labels: dict[str, str] = {}
    for key, equals, value in _pairs("--label", items):
        if not equals or not key:
            raise UsageError(f"--label {key or '=' + value!r} is not KEY=VALUE", "give --label KEY=VALUE, e.g. --label org.example.team=data")
        if not _LABEL_KEY.match(key):
            raise UsageError(f"--label {key!r}: a label key is letters, digits and . _ / -", "e.g. --label org.example.team=data")
        if key.startswith(OWN_LABEL_PREFIX):
            raise UsageError(f"--label {key}: {OWN_LABEL_PREFIX}* labels are r2env's own", "choose a key in your own namespace, e.g. org.example.team")
        labels[key] = value
    return tuple(labels.items())


def parse_build_args(items: Iterable[str], host_env: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """--build-arg KEY=VALUE, or KEY alone for r2env's own environment's value (as `docker build` does),
    which keeps a secret out of every command line."""
    args: dict[str, str] = {}
    for key, equals, value in _pairs("--build-arg", items):
        if not _ARG_NAME.match(key):
            raise UsageError(f"--build-arg {key!r}: a build arg name is letters, digits and _", "give --build-arg KEY=VALUE or --build-arg KEY")
        if key in _PLANNED_ARGS:
            raise UsageError(f"--build-arg {key} is set by r2env from {_PLANNED_ARGS[key]}", f"use {_PLANNED_ARGS[key]}")
        if not equals:
            if key not in host_env:
                raise UsageError(f"--build-arg {key}: {key} is not set in this environment", f"export {key}, or give --build-arg {key}=VALUE")
            value = host_env[key]
        args[key] = value
    return tuple(args.items())


def parse_channel_map(entries: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """--channel-map FROM=TO pairs (r2env/conda/packages.py map_url applies them), without trailing slashes."""
    pairs = []
    for entry in entries:
        source, _, target = entry.partition("=")
        if not source.strip() or not target.strip():
            raise UsageError(f"--channel-map {entry!r} is not FROM=TO", "write e.g. https://conda.anaconda.org/conda-forge=file:///srv/mirror/conda-forge")
        pairs.append((source.strip().rstrip("/"), target.strip().rstrip("/")))
    return tuple(pairs)
