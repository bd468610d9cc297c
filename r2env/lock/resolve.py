"""Resolving a lock: Python packages with uv (for the image's Python and platform, not the host's), Debian
packages by simulating apt in the base image. Side effects go through an injected runner and the engine."""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Mapping, Sequence

from packaging.utils import canonicalize_name

from r2env.errors import LockError, UsageError
from r2env.lock.lockfile import LockedPackage

if TYPE_CHECKING:
    from r2env.engine import Engine

Runner = Callable[[Sequence[str], Path], "subprocess.CompletedProcess[str]"]

# The newest manylinux tag each suite's glibc satisfies (bookworm: glibc 2.36, trixie: 2.41; uv knows up to 2.40).
_MANYLINUX = {"bookworm": "manylinux_2_36", "trixie": "manylinux_2_40"}


def run_tool(argv: Sequence[str], cwd: Path, env: Mapping[str, str] | None = None) -> "subprocess.CompletedProcess[str]":
    command = list(argv)
    if command[0] == "uv" and not shutil.which("uv", path=(env or os.environ).get("PATH")):
        # The uv that r2env depends on is installed beside it even when its bin directory is not on PATH
        # (a virtual environment run without activating it).
        command[0] = _installed_uv() or "uv"
    try:
        return subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False, env=env)
    except FileNotFoundError:
        raise UsageError(f"{command[0]} is not installed or not on PATH", f"install it (pip install {command[0]}) or put it on PATH") from None
    except OSError as error:
        raise UsageError(f"cannot run {command[0]}: {error.strerror}", "check that this user may run it, or reinstall it") from None


def _installed_uv() -> str:
    try:
        from uv import find_uv_bin

        return str(find_uv_bin())
    except (ImportError, FileNotFoundError):
        return ""


def target_platform(suite: str, machine: str = "") -> str:
    arch = {"arm64": "aarch64", "amd64": "x86_64"}.get(machine or platform.machine(), machine or platform.machine())
    return f"{arch}-{_MANYLINUX.get(suite, 'manylinux_2_36')}"


@dataclass(frozen=True)
class Resolution:
    packages: tuple[LockedPackage, ...]
    parents: dict[str, frozenset[str]]  # package -> who requires it ("" for a top-level requirement)


_ENTRY = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)\s*(?:;\s*(.*?))?\s*\\?$")
_HASH = re.compile(r"^\s+--hash=(sha256:[0-9a-f]{64})")
_VIA_ONE = re.compile(r"^\s+# via (.+)$")
_VIA_MANY = re.compile(r"^\s+#\s+(\S.*)$")


def parse_compiled(text: str) -> Resolution:
    """Parse `uv pip compile --generate-hashes` output (pip-compile's format): pins, hashes and `# via` parents."""
    packages: list[LockedPackage] = []
    parents: dict[str, set[str]] = {}
    current: tuple[str, str, str] | None = None
    hashes: list[str] = []
    in_via = False

    def flush() -> None:
        if current:
            packages.append(LockedPackage(current[0], current[1], tuple(hashes), current[2]))

    for line in text.splitlines():
        if match := _ENTRY.match(line):
            flush()
            current, hashes, in_via = (str(canonicalize_name(match.group(1))), match.group(2), match.group(3) or ""), [], False
            parents[current[0]] = set()
        elif line.startswith(("-e ", "file:", "./", "/")) or (line and not line.startswith((" ", "#")) and " @ " in line):
            flush()  # a local or direct reference: installed from the repository, not locked
            current, hashes, in_via = None, [], False
        elif (match := _HASH.match(line)) and current:
            hashes.append(match.group(1))
        elif (match := _VIA_ONE.match(line)) and current:
            parents[current[0]].add(_parent(match.group(1)))
        elif line.strip() == "# via" and current:
            in_via = True
        elif in_via and (match := _VIA_MANY.match(line)) and current:
            parents[current[0]].add(_parent(match.group(1)))
    flush()
    return Resolution(tuple(packages), {name: frozenset(p) for name, p in parents.items()})


def _parent(text: str) -> str:
    text = text.strip()
    return "" if text.startswith(("-r ", "-c ")) else str(canonicalize_name(text.split()[0]))


def server_closure(resolution: Resolution, server_names: Iterable[str]) -> frozenset[str]:
    """Everything the server needs: its requirements and, transitively, what they require."""
    closure = {str(canonicalize_name(name)) for name in server_names}
    changed = True
    while changed:
        changed = False
        for name, parents in resolution.parents.items():
            if name not in closure and parents & closure:
                closure.add(name)
                changed = True
    return frozenset(closure)


def _failure(result: "subprocess.CompletedProcess[str]") -> str:
    lines = [line.strip() for line in (result.stderr or result.stdout).splitlines() if line.strip()]
    return " ".join(lines[:6]) or f"exit status {result.returncode}"


def resolve_python(
    requirements: Sequence[str],
    repo: Path,
    python_version: str,
    suite: str,
    index_url: str = "",
    extra_index_url: str = "",
    runner: Runner = run_tool,
) -> Resolution:
    """Resolve requirement lines (may include `-r FILE`, `-c FILE`, `-e .`, relative to the repository root)."""
    with tempfile.TemporaryDirectory(prefix="r2env-resolve-") as scratch:
        source = Path(scratch) / "r2env-resolve.in"
        source.write_text("\n".join(requirements) + "\n", encoding="utf-8")
        argv = [
            "uv", "pip", "compile", str(source), "--generate-hashes", "--no-header", "--quiet", "--no-config",
            "--python-version", python_version, "--python-platform", target_platform(suite),
        ]
        argv += ["--index-url", index_url] if index_url else []
        argv += ["--extra-index-url", extra_index_url] if extra_index_url else []
        try:
            result = runner(argv, repo)
        except FileNotFoundError:
            raise LockError("uv is not installed, and r2env resolves Python packages with it", "pip install uv") from None
    if result.returncode != 0:
        raise LockError(f"cannot resolve the Python packages: {_failure(result)}", "fix the requirements named above")
    return parse_compiled(result.stdout)


_INST = re.compile(r"^Inst (\S+) (?:\[\S+\] )?\((\S+) ")


def parse_apt_simulation(text: str) -> dict[str, str]:
    return {match.group(1): match.group(2) for line in text.splitlines() if (match := _INST.match(line))}


def resolve_apt(engine: "Engine", base_image: str, packages: Sequence[str]) -> dict[str, str]:
    """The exact versions apt would install in the base image: the whole closure, not only what was asked."""
    if not packages:
        return {}
    names = " ".join(packages)
    script = f"apt-get update -qq >/dev/null && apt-get install -s -q --no-install-recommends {names}"
    code, output = engine.run(base_image, ["bash", "-c", script])
    if code != 0:
        lines = [line for line in output.splitlines() if line.startswith(("E:", "W:"))] or output.splitlines()[-3:]
        raise LockError(f"cannot resolve the Debian packages {names}: {' '.join(lines)}", "check apt.txt's package names")
    return parse_apt_simulation(output)
