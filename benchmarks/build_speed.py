#!/usr/bin/env python3
"""Build speed and image size: r2env against two hand-written minimal Dockerfiles, side by side.

    python benchmarks/build_speed.py [--example requirements] [--runs 1] [--locked] [--json FILE]

For one example repository (copied to a temporary directory, so the notebook edit never touches the
checkout) it measures, for three sides (r2env; a hand-written Dockerfile that installs with pip; one that
installs with uv as uv's Docker guide recommends):

* a cold build (BuildKit's layer cache and cache mounts pruned, all bench images removed first),
* a no-op rebuild (nothing changed),
* a rebuild after editing one notebook cell,
* the size of the final image (`docker image inspect`, field Size),

plus r2env's own overhead without building (`r2env plan --json`, `r2env dockerfile`, importing
r2env.cli). With --locked the example copy gets an r2env.lock first (`r2env lock`, untimed) and both
hand-written sides install the same exact pins with hashes, exported from that lock. It prints a table with
the ratios r2env/hand-pip and r2env/hand-uv and checks the targets of the build-speed issue. It is a
benchmark, not a test: a missed target still exits 0; a failed build exits 1.

Caution: `docker builder prune -af` clears the build cache of the whole daemon, not only ours. So before
each cold build the script waits until no other docker build, r2env build or integration test run is
going on, and it measures again (up to 3 times) when one ran alongside, or when the cache state was not
what the measurement needs (another client built the same steps, or pruned the cache meanwhile).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import r2env
from r2env.plan import DEFAULT_SERVER

try:
    from r2env.uv_installer import UV_VERSION  # the uv r2env installs with: the hand-written uv side uses the same
except ImportError:  # an r2env from before uv
    UV_VERSION = "0.13.9"

REPO_ROOT = Path(__file__).resolve().parent.parent
R2ENV_ROOT = Path(r2env.__file__).resolve().parent.parent  # the checkout of the r2env measured (installed editable)
DOCKER = "/usr/bin/docker"  # Debian's 20.10 client: BuildKit via DOCKER_BUILDKIT=1 (the one first on PATH has none)
HAND_IMAGE = "r2env-bench/hand"
HAND_UV_IMAGE = "r2env-bench/hand-uv"
R2ENV_IMAGE = "r2env-bench/r2env"
LOCKED_SERVER_FILE = "locked-server.txt"  # --locked: the hand-written sides' pins, exported from r2env.lock
LOCKED_REQUIREMENTS_FILE = "locked-requirements.txt"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
OVERHEAD_REPEATS = 5
MAX_ATTEMPTS = 3  # per measurement, when another docker client interferes (see measure())

# Targets from the build-speed issues: against the hand-written pip Dockerfile (cold build, size, rebuilds), and
# against the hand-written uv Dockerfile (cold build).
COLD_RATIO_TARGET = 0.8
SIZE_RATIO_TARGET = 1.0
REBUILD_SLACK_SECONDS = 0.35
COLD_RATIO_UV_TARGET = 1.0
OVERHEAD_TARGET_SECONDS = 1.0  # design.md: "r2env's own overhead ... well under a second"

# The natural minimal Dockerfile for a requirements.txt repository with JupyterLab, installing with pip.
#
# Cache treatment, chosen to be the same as r2env's generated Dockerfile (`r2env dockerfile <repo>`):
# BuildKit cache mounts for apt (/var/cache/apt, /var/lib/apt/lists) and for pip's download cache, so no
# cache ends up in a layer and the sizes compare like for like. For the cold builds this makes no
# difference to speed: `docker builder prune -af` empties cache mounts too. PIP_DISABLE_PIP_VERSION_CHECK
# is set as r2env sets it (it skips one request to PyPI per pip run). The debootstrapped debian:bookworm
# has no /etc/apt/apt.conf.d/docker-clean, so apt keeps its .debs in the cache mount without more ado.
# The CA bundle of the TLS-inspecting proxy is a BuildKit secret, readable only while pip runs.
HAND_APT = """\
RUN --mount=type=cache,target=/var/cache/apt,sharing=locked \\
    --mount=type=cache,target=/var/lib/apt/lists,sharing=locked \\
    apt-get update && \\
    apt-get install -y --no-install-recommends python3 python3-venv ca-certificates
"""
HAND_USER = """\
RUN useradd --create-home --shell /bin/bash --uid 1000 jovyan && \\
    install -d -o jovyan -g jovyan /srv/venv
USER jovyan
WORKDIR /home/jovyan
"""
HAND_CMD = """\
COPY --chown=jovyan:jovyan . .
CMD ["jupyter", "lab", "--ip=0.0.0.0", "--port=8888", "--no-browser"]
"""
PIP_RUN = """\
RUN --mount=type=secret,id=ca,mode=0444 \\
    --mount=type=cache,target=/tmp/pip-cache,uid=1000,gid=1000 \\
    PIP_CERT=/run/secrets/ca pip install {args}
"""
HAND_PIP_HEAD = "FROM debian:bookworm\n" + HAND_APT + HAND_USER + """\
ENV PATH=/srv/venv/bin:$PATH \\
    PIP_DISABLE_PIP_VERSION_CHECK=1 \\
    PIP_CACHE_DIR=/tmp/pip-cache
RUN python3 -m venv /srv/venv
"""

# The same repository the way uv's Docker guide (docs.astral.sh/uv/guides/integration/docker/) recommends, within
# this machine's limits (no image can be pulled, so not `COPY --from=ghcr.io/astral-sh/uv`): uv from the package
# index (`pip install uv==<r2env's version>` in a venv of a build stage), mounted into the steps that use it rather
# than copied (the guide's "if uv isn't needed in the final image" variant; r2env leaves uv out of the image too);
# `uv venv`; a cache mount for uv's cache at a fixed directory with UV_LINK_MODE=copy; UV_COMPILE_BYTECODE=1 (the
# guide's advice for images: pip compiles by default, uv does not); the server and the requirements installed in
# layers before the project's COPY. uv reads the proxy's CA bundle from SSL_CERT_FILE, pointed at the secret.
# The build stage starts with the same apt step as the final stage, so BuildKit runs it once for both (as it
# does for r2env's uv stage). `uv venv` puts no pip in the environment (r2env's and the pip side's have pip).
UV_BIN = "/opt/uv/bin/uv"
UV_RUN = """\
RUN --mount=type=secret,id=ca,mode=0444 \\
    --mount=type=cache,target=/tmp/uv-cache,uid=1000,gid=1000 \\
    --mount=type=bind,from=uv,source={uv_bin},target=/usr/local/bin/uv \\
    SSL_CERT_FILE=/run/secrets/ca uv pip install {{args}}
""".format(uv_bin=UV_BIN)
HAND_UV_HEAD = "FROM debian:bookworm AS uv\n" + HAND_APT + """\
RUN --mount=type=secret,id=ca,mode=0444 \\
    --mount=type=cache,target=/root/.cache/pip \\
    python3 -m venv /opt/uv && \\
    PIP_CERT=/run/secrets/ca /opt/uv/bin/pip install --disable-pip-version-check uv=={uv_version}

FROM debian:bookworm
""" + HAND_APT + HAND_USER + """\
ENV VIRTUAL_ENV=/srv/venv \\
    PATH=/srv/venv/bin:$PATH \\
    UV_CACHE_DIR=/tmp/uv-cache \\
    UV_LINK_MODE=copy \\
    UV_COMPILE_BYTECODE=1
RUN --mount=type=bind,from=uv,source={uv_bin},target=/usr/local/bin/uv \\
    uv venv /srv/venv
""".replace("{uv_bin}", UV_BIN)


def hand_dockerfile(tool: str, locked: bool, has_packages: bool = True) -> str:
    """The hand-written Dockerfile of one tool ("pip" or "uv"). Unlocked: `install <server>`, then COPY
    requirements*.txt and `install -r requirements.txt`. Locked: the same two layers from the files exported from
    r2env.lock, each installed with --require-hashes --no-deps (no resolution, exactly the lock's pins)."""
    head, run = (HAND_PIP_HEAD, PIP_RUN) if tool == "pip" else (HAND_UV_HEAD.format(uv_version=UV_VERSION), UV_RUN)
    if not locked:
        body = run.format(args=DEFAULT_SERVER) + "COPY --chown=jovyan:jovyan requirements*.txt ./\n" + run.format(args="-r requirements.txt")
    else:
        body = f"COPY --chown=jovyan:jovyan {LOCKED_SERVER_FILE} ./\n" + run.format(args=f"--require-hashes --no-deps -r {LOCKED_SERVER_FILE}")
        if has_packages:
            body += f"COPY --chown=jovyan:jovyan {LOCKED_REQUIREMENTS_FILE} ./\n" + run.format(args=f"--require-hashes --no-deps -r {LOCKED_REQUIREMENTS_FILE}")
    return head + body + HAND_CMD


def export_lock(repo: Path) -> tuple[str, str]:
    """r2env.lock's pins (read with r2env's own reader) as two hash-checked requirements files: the notebook
    server's closure, and the repository's packages not already in it."""
    from r2env.lock.lockfile import LOCK_FILE, parse_lock

    lock = parse_lock((repo / LOCK_FILE).read_text(encoding="utf-8"), LOCK_FILE)
    server = "".join(package.requirement_line() + "\n" for package in lock.server)
    packages = "".join(package.requirement_line() + "\n" for package in lock.packages)
    return server, packages


class BenchError(Exception):
    pass


@dataclass
class Timed:
    seconds: float
    returncode: int
    lines: list[tuple[float, str]] = field(default_factory=list)  # (seconds since start, line)

    def text(self) -> str:
        return "\n".join(line for _, line in self.lines)


def run_timed(argv: Sequence[str], env: dict[str, str] | None = None) -> Timed:
    """Run a command, timing it with perf_counter and stamping every output line."""
    lines: list[tuple[float, str]] = []
    start = time.perf_counter()
    process = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    assert process.stdout is not None
    for line in process.stdout:
        lines.append((time.perf_counter() - start, line.rstrip("\n")))
    returncode = process.wait()
    return Timed(time.perf_counter() - start, returncode, lines)


def run_quiet(argv: Sequence[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise BenchError(f"{' '.join(argv)} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
    return result


def median_time(argv: Sequence[str], repeats: int = OVERHEAD_REPEATS) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = subprocess.run(list(argv), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
        times.append(time.perf_counter() - start)
        if result.returncode != 0:
            raise BenchError(f"{' '.join(argv)} failed ({result.returncode}):\n{result.stderr}")
    return statistics.median(times), times


def r2env_command() -> list[str]:
    """The real console script. Prefer the one beside this interpreter: on PATH there may be a pyenv shim,
    which adds its own start-up time (measured separately)."""
    beside = Path(sys.executable).parent / "r2env"
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside)]
    found = shutil.which("r2env")
    if not found:
        raise BenchError("no r2env command found; install r2env (pip install -e .)")
    return [found]


# --- one side of the comparison -------------------------------------------------------------------

@dataclass
class Side:
    name: str  # "hand-pip", "hand-uv" or "r2env"
    image: str
    tool: str = ""  # hand-written sides: "pip" or "uv"; "" for r2env
    cold: list[float] = field(default_factory=list)
    noop: list[float] = field(default_factory=list)
    edit: list[float] = field(default_factory=list)
    size: list[int] = field(default_factory=list)
    prebuild: list[float] = field(default_factory=list)  # r2env: time until it hands over to docker build
    cached_steps: dict[str, list[int]] = field(default_factory=dict)
    step_times: list[dict[str, float]] = field(default_factory=list)  # cold: BuildKit's DONE times (r2env: from its output's timestamps)
    smoke: list[str] = field(default_factory=list)
    waits: list[float] = field(default_factory=list)  # seconds spent waiting for other builds before a cold build
    disturbed: list[str] = field(default_factory=list)  # measurements repeated because another docker client interfered

    @property
    def hand(self) -> bool:
        return bool(self.tool)


# Other users of the same daemon (this machine's integration tests, other builds) both disturb the figures
# (shared CPU, network and BuildKit vertices) and are disturbed by our prune: wait until they are done.
_BUSY = re.compile(r"(^|/)docker(\s+\S+)*\s+(build|buildx)\b|(^|/)r2env(\.cli)?\s+build\b|pytest.*\bintegration\b")
QUIET_SECONDS = 5.0
QUIET_TIMEOUT_SECONDS = 1800.0


def _is_ours(pid: int) -> bool:
    """Whether `pid` is this process or one of its descendants (our own builds)."""
    me = os.getpid()
    for _ in range(64):
        if pid == me:
            return True
        if pid <= 1:
            return False
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        pid = int(stat.rsplit(")", 1)[1].split()[1])  # field 4, after "pid (comm) state"
    return False


def other_builds() -> list[str]:
    """Command lines of docker builds, r2env builds and integration test runs that are not ours."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or _is_ours(int(entry.name)):
            continue
        try:
            words = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        line = " ".join(w.decode(errors="replace") for w in words if w)
        if line and _BUSY.search(line):
            found.append(f"{entry.name}: {line[:150]}")
    return found


def wait_for_quiet_daemon(waits: list[float]) -> None:
    start = time.perf_counter()
    quiet_since = start
    announced = False
    while time.perf_counter() - start < QUIET_TIMEOUT_SECONDS:
        busy = other_builds()
        now = time.perf_counter()
        if busy:
            quiet_since = now
            if not announced:
                print(f"  waiting for other builds on this machine to finish (up to {QUIET_TIMEOUT_SECONDS / 60:.0f} min): {busy[0]}", flush=True)
                announced = True
        elif now - quiet_since >= QUIET_SECONDS:
            break
        time.sleep(0.5)
    else:
        print("  warning: other builds are still running; measuring anyway", flush=True)
    waited = time.perf_counter() - start
    waits.append(waited)
    if announced:
        print(f"  waited {waited:.0f} s", flush=True)


class OverlapWatch:
    """Polls for other builds while one of ours runs; `seen` holds the first one found."""

    def __init__(self) -> None:
        self.seen = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            busy = other_builds()
            if busy and not self.seen:
                self.seen = busy[0]
            self._stop.wait(0.5)

    def __enter__(self) -> "OverlapWatch":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def reset_docker() -> None:
    """Truly cold: no bench image and no BuildKit cache (layer cache and cache mounts) left."""
    run_quiet([DOCKER, "image", "rm", "-f", HAND_IMAGE, HAND_UV_IMAGE, R2ENV_IMAGE], check=False)
    run_quiet([DOCKER, "builder", "prune", "-af"])


def copy_example(example: Path, scratch: Path, label: str) -> Path:
    destination = scratch / label / example.name
    shutil.copytree(example, destination)
    return destination


def edit_notebook(repo: Path, run: int, attempt: int = 1) -> None:
    """Change the source text of the notebook's first code cell (the result stays the same)."""
    path = repo / "analysis.ipynb"
    notebook = json.loads(path.read_text(encoding="utf-8"))
    cell = next(c for c in notebook["cells"] if c["cell_type"] == "code")
    cell["source"] = [f"# edited by benchmarks/build_speed.py, run {run}, attempt {attempt}\n", "from helpers import parse_sum\n", "\n", 'parse_sum("3 + 2 + 1")']
    path.write_text(json.dumps(notebook, indent=1) + "\n", encoding="utf-8")


def save_history(image: str, path: Path) -> None:
    """The image's layers (size and instruction): the next side's cold build removes the image, this record stays."""
    history = run_quiet([DOCKER, "history", "--no-trunc", "--format", "{{.Size}}\t{{.CreatedBy}}", image], check=False)
    path.write_text(history.stdout or history.stderr, encoding="utf-8")


def image_size(image: str) -> int:
    return int(run_quiet([DOCKER, "image", "inspect", "--format", "{{.Size}}", image]).stdout.strip())


def build_argv(side: Side, repo: Path, dockerfile: Path, r2env: list[str]) -> tuple[list[str], dict[str, str]]:
    env = dict(os.environ)
    if side.hand:
        env["DOCKER_BUILDKIT"] = "1"
        argv = [DOCKER, "build", "--progress=plain", "--secret", f"id=ca,src={CA_BUNDLE}", "-t", side.image, "-f", str(dockerfile), str(repo)]
        return argv, env
    # r2env finds the CA bundle itself (SSL_CERT_FILE / PIP_CERT / REQUESTS_CA_BUNDLE) and passes it as a secret.
    return [*r2env, "build", str(repo), "--image-name", side.image], env


_HAND_CACHED = re.compile(r"^#(\d+) CACHED$")
_HAND_STEP = re.compile(r"^#(\d+) \[(?:([\w-]+) )?\s*(\d+)/(\d+)\] (.*)$")
_HAND_DONE = re.compile(r"^#(\d+) DONE (\d+\.\d+)s$")
_R2ENV_STEP = re.compile(r"^\[build (\d+)/(\d+)\] (.*)$")
_R2ENV_HANDOVER = re.compile(r"^\[build\] building ")
_R2ENV_BUILT = re.compile(r"^built image ")


def cache_summary(side: Side, timed: Timed) -> tuple[int, int]:
    """(steps taken from the cache, steps) not counting FROM: BuildKit always reports the base as CACHED.

    A step is one vertex BuildKit shows: in a Dockerfile with two stages, an instruction both stages repeat after
    the same base (the apt step) is one vertex, shown once, under either stage's name. Hand-written sides key a step
    by its vertex number; r2env's output has no vertex numbers and no stage names, so there it is (step, of steps)."""
    cached: set[object] = set()
    steps: set[object] = set()
    if side.hand:
        for _, line in timed.lines:
            if (match := _HAND_STEP.match(line)) and int(match.group(3)) > 1:
                steps.add(match.group(1))
            elif (match := _HAND_CACHED.match(line)) and match.group(1) in steps:
                cached.add(match.group(1))
    else:
        current: tuple[int, int] | None = None
        for _, line in timed.lines:
            if match := _R2ENV_STEP.match(line):
                current = (int(match.group(1)), int(match.group(2)))
                if current[0] > 1:
                    steps.add(current)
            elif line.strip() == "(cached)" and current in steps:
                cached.add(current)
    return len(cached), len(steps)


def hand_step_times(timed: Timed) -> dict[str, float]:
    names: dict[str, str] = {}
    times: dict[str, float] = {}
    for _, line in timed.lines:
        if match := _HAND_STEP.match(line):
            stage = f"{match.group(2)} " if match.group(2) else ""
            names[match.group(1)] = f"[{stage}{match.group(3)}/{match.group(4)}] {match.group(5)}"
        elif (match := _HAND_DONE.match(line)) and match.group(1) in names:
            times[names[match.group(1)]] = float(match.group(2))
    return times


R2ENV_STEP_TIMES_TITLE = "step times, approximate (from the timestamps of r2env's output; a step's time includes waiting for a stage the next step mounts)"


def r2env_step_times(timed: Timed) -> dict[str, float]:
    """Approximate step times of an r2env build, from the timestamps of its output: r2env shows when a step starts
    (BuildKit's vertex header) but not BuildKit's DONE times. A step ends when the next step of the same stage
    (same "of steps") starts, or, for a stage's last step, at its last line of output. Good to a few tenths of a
    second; a step that ran beside another (the uv stage beside the user's steps) is not told apart."""
    starts: dict[tuple[int, int], tuple[float, str]] = {}
    last_line: dict[tuple[int, int], float] = {}
    current: tuple[int, int] | None = None
    for t, line in timed.lines:
        if match := _R2ENV_STEP.match(line):
            current = (int(match.group(1)), int(match.group(2)))
            starts.setdefault(current, (t, f"[{current[0]}/{current[1]}] {match.group(3)}"))
            last_line[current] = t
        elif current is not None and line.startswith("    "):
            last_line[current] = t
        elif _R2ENV_BUILT.match(line):
            current = None
    times: dict[str, float] = {}
    for (number, total), (start, label) in starts.items():
        if number == 1:
            continue
        later = [t for (n, m), (t, _) in starts.items() if m == total and n > number]
        end = min(later) if later else last_line[(number, total)]
        times[label] = max(end - start, 0.0)
    return times


@dataclass
class Built:
    seconds: float
    cached: int  # steps after FROM taken from the cache
    steps: int  # steps after FROM
    overlap: str  # another build that ran at the same time, or ""


def build(side: Side, kind: str, repo: Path, dockerfile: Path, r2env: list[str], log_dir: Path, run: int, attempt: int) -> Built:
    """One timed build."""
    argv, env = build_argv(side, repo, dockerfile, r2env)
    load = os.getloadavg()[0]
    print(f"  {side.name:8} {kind:5} build ...", end="", flush=True)
    with OverlapWatch() as watch:
        timed = run_timed(argv, env)
    log = log_dir / (f"run{run}-{side.name}-{kind}" + ("" if attempt == 1 else f"-attempt{attempt}") + ".log")
    log.write_text(f"$ {' '.join(argv)}\n" + "\n".join(f"{t:8.3f} {line}" for t, line in timed.lines) + "\n", encoding="utf-8")
    if timed.returncode != 0:
        tail = "\n".join(line for _, line in timed.lines[-30:])
        raise BenchError(f"{side.name} {kind} build failed ({timed.returncode}); log: {log}\n{tail}")
    cached, steps = cache_summary(side, timed)
    extra = ""
    if not side.hand:
        handover = next((t for t, line in timed.lines if _R2ENV_HANDOVER.match(line)), None)
        if handover is not None:
            extra = f", {handover:.2f} s before docker build"
            if not watch.seen:
                side.prebuild.append(handover)
    if kind == "cold" and not watch.seen and cached == 0:
        side.step_times.append(hand_step_times(timed) if side.hand else r2env_step_times(timed))
    print(f" {timed.seconds:7.2f} s ({cached}/{steps} steps after FROM cached{extra}; load average {load:.2f})", flush=True)
    return Built(timed.seconds, cached, steps, watch.seen)


def measure(side: Side, kind: str, repo: Path, dockerfile: Path, r2env: list[str], log_dir: Path, run: int) -> float:
    """A cold build (nothing from the cache), a no-op rebuild (everything from the cache) or a rebuild after
    a notebook edit (everything but the last COPY from the cache), measured again when another docker client
    interfered: built the same steps or ran at the same time (shared cores and network), or cleared the
    build cache meanwhile (`docker builder prune`)."""
    for attempt in range(1, MAX_ATTEMPTS + 1):
        if kind == "cold" or attempt > 1:
            wait_for_quiet_daemon(side.waits)
        if kind == "cold":
            reset_docker()
        if kind == "edit":
            edit_notebook(repo, run, attempt)
        built = build(side, kind, repo, dockerfile, r2env, log_dir, run, attempt)
        expected = {"cold": 0, "noop": built.steps, "edit": built.steps - 1}[kind]
        cache_ok = built.cached == expected
        if cache_ok and not built.overlap:
            side.cached_steps.setdefault(kind, []).append(built.cached)
            return built.seconds
        why = f"{built.cached}/{built.steps} steps cached (expected {expected})" if not cache_ok else f"ran alongside {built.overlap}"
        side.disturbed.append(f"run {run} {kind} attempt {attempt} ({built.seconds:.2f} s): {why}")
        print(f"  warning: disturbed by another docker client ({why[:120]})", flush=True)
        if attempt == MAX_ATTEMPTS and cache_ok:
            print(f"  keeping this {kind} figure after {MAX_ATTEMPTS} attempts; it may be too slow", flush=True)
            side.cached_steps.setdefault(kind, []).append(built.cached)
            return built.seconds
        if attempt < MAX_ATTEMPTS:
            print(f"  measuring {kind} again", flush=True)
    raise BenchError(f"{side.name} {kind} build never saw the expected cache state in {MAX_ATTEMPTS} attempts: is another build or prune running?")


def measure_side(side: Side, example: Path, scratch: Path, r2env: list[str], log_dir: Path, run: int, locked: bool) -> None:
    repo = copy_example(example, scratch, f"run{run}-{side.name}")
    dockerfile = scratch / f"run{run}-{side.name}" / "Dockerfile.hand"
    if side.hand:
        has_packages = True
        if locked:
            server, packages = export_lock(repo)
            has_packages = bool(packages)
            (repo / LOCKED_SERVER_FILE).write_text(server, encoding="utf-8")
            if has_packages:
                (repo / LOCKED_REQUIREMENTS_FILE).write_text(packages, encoding="utf-8")
        dockerfile.write_text(hand_dockerfile(side.tool, locked, has_packages), encoding="utf-8")
    side.cold.append(measure(side, "cold", repo, dockerfile, r2env, log_dir, run))
    side.noop.append(measure(side, "noop", repo, dockerfile, r2env, log_dir, run))
    side.edit.append(measure(side, "edit", repo, dockerfile, r2env, log_dir, run))
    side.size.append(image_size(side.image))
    save_history(side.image, log_dir / f"run{run}-{side.name}-history.txt")
    side.smoke.append(smoke_test(side))


def smoke_test(side: Side) -> str:
    """Not timed: the image has the server and both pins, so the comparison is like for like."""
    check = "jupyter lab --version && python -c 'import pyparsing, iniconfig; print(pyparsing.__version__, iniconfig.__file__)'"
    result = run_quiet([DOCKER, "run", "--rm", side.image, "bash", "-c", check], check=False)
    return "ok" if result.returncode == 0 else f"FAILED: {(result.stdout + result.stderr).strip()[-300:]}"


# --- overhead without building -------------------------------------------------------------------

def measure_overhead(example_copy: Path, r2env: list[str]) -> dict[str, dict[str, Any]]:
    figures: dict[str, dict[str, Any]] = {}
    commands = {
        "r2env plan --json": [*r2env, "plan", str(example_copy), "--json"],
        "r2env dockerfile": [*r2env, "dockerfile", str(example_copy)],
        "python -c 'import r2env.cli'": [sys.executable, "-c", "import r2env.cli"],
        "python -c 'pass' (baseline)": [sys.executable, "-c", "pass"],
        "r2env --version": [*r2env, "--version"],
    }
    shim = shutil.which("r2env")
    if shim and Path(shim).resolve() != Path(r2env[0]).resolve():
        commands[f"r2env --version via PATH ({shim})"] = [shim, "--version"]
    for label, argv in commands.items():
        median, times = median_time(argv)
        figures[label] = {"median_s": median, "runs_s": times}
    return figures


# --- report --------------------------------------------------------------------------------------

def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def report(hand: Side, hand_uv: Side, r2env: Side, overhead: dict[str, dict[str, Any]], smoke: dict[str, str]) -> dict[str, Any]:
    def medians(attribute: str, scale: float = 1.0) -> tuple[float, float, float]:
        pip_value, uv_value, r2env_value = (_median(getattr(side, attribute)) / scale for side in (hand, hand_uv, r2env))
        return pip_value, uv_value, r2env_value

    rows: list[tuple[str, float, float, float]] = [
        ("cold build (s)", *medians("cold")),
        ("no-op rebuild (s)", *medians("noop")),
        ("notebook-edit rebuild (s)", *medians("edit")),
        ("image size (MB)", *medians("size", 1e6)),
    ]
    print()
    header = (f"{'measurement':26} | {'hand-pip':>8} | {'hand-uv':>8} | {'r2env':>8} | {'r2env/pip':>9} | {'r2env/uv':>8} |"
              f" {'r2env-pip':>11} | {'r2env-uv':>11}")
    print(header)
    print("-" * len(header))
    for label, pip_value, uv_value, r2env_value in rows:
        unit = " MB" if "MB" in label else " s"
        print(f"{label:26} | {pip_value:8.2f} | {uv_value:8.2f} | {r2env_value:8.2f} | {_ratio(r2env_value, pip_value):9.2f} |"
              f" {_ratio(r2env_value, uv_value):8.2f} | {r2env_value - pip_value:+8.2f}{unit} | {r2env_value - uv_value:+8.2f}{unit}")
    if len(hand.cold) > 1:
        for label, attribute in (("cold", "cold"), ("no-op", "noop"), ("notebook edit", "edit")):
            per_run = ", ".join(f"{h:.2f}/{u:.2f}/{r:.2f}" for h, u, r in zip(getattr(hand, attribute), getattr(hand_uv, attribute), getattr(r2env, attribute)))
            print(f"  per run, hand-pip/hand-uv/r2env, {label}: {per_run}")
    print()
    print("r2env overhead without building (median of %d):" % OVERHEAD_REPEATS)
    for label, figure in overhead.items():
        print(f"  {label:60} {figure['median_s']:6.3f} s")
    if r2env.prebuild:
        print(f"  {'r2env build: start until it hands over to docker build':60} {_median(r2env.prebuild):6.3f} s (median over all r2env builds)")
    print()
    cold_ratio = _ratio(_median(r2env.cold), _median(hand.cold))
    size_ratio = _ratio(_median(r2env.size), _median(hand.size))
    noop_diff = _median(r2env.noop) - _median(hand.noop)
    edit_diff = _median(r2env.edit) - _median(hand.edit)
    cold_ratio_uv = _ratio(_median(r2env.cold), _median(hand_uv.cold))
    dockerfile_overhead = overhead["r2env dockerfile"]["median_s"]
    targets = [
        ("cold build ratio r2env/hand-pip", f"<= {COLD_RATIO_TARGET}", cold_ratio, cold_ratio <= COLD_RATIO_TARGET),
        ("image size ratio r2env/hand-pip", f"<= {SIZE_RATIO_TARGET}", size_ratio, size_ratio <= SIZE_RATIO_TARGET),
        ("no-op rebuild, r2env - hand-pip (s)", f"<= {REBUILD_SLACK_SECONDS}", noop_diff, noop_diff <= REBUILD_SLACK_SECONDS),
        ("notebook-edit rebuild, r2env - hand-pip (s)", f"<= {REBUILD_SLACK_SECONDS}", edit_diff, edit_diff <= REBUILD_SLACK_SECONDS),
        ("cold build ratio r2env/hand-uv", f"<= {COLD_RATIO_UV_TARGET}", cold_ratio_uv, cold_ratio_uv <= COLD_RATIO_UV_TARGET),
        ("(design.md) r2env dockerfile overhead (s)", f"< {OVERHEAD_TARGET_SECONDS}", dockerfile_overhead, dockerfile_overhead < OVERHEAD_TARGET_SECONDS),
    ]
    print("targets:")
    for label, goal, value, met in targets:
        print(f"  {'PASS' if met else 'MISS'}  {label:44} {goal:>7}   measured {value:.2f}")
    for side in (hand, hand_uv, r2env):
        for note in side.disturbed:
            print(f"note: {side.name} {note}")
    for name, result in smoke.items():
        print(f"smoke test ({name} image: jupyter lab --version, import the pins): {result}")
    for side in (hand, hand_uv, r2env):
        if side.step_times:
            print()
            how = "BuildKit step times" if side.hand else R2ENV_STEP_TIMES_TITLE
            print(f"{side.name} cold build, {how} (first undisturbed run):")
            for step, seconds in sorted(side.step_times[0].items(), key=lambda item: -item[1])[:6]:
                print(f"  {seconds:7.2f} s  {step[:110]}")
    return {
        "rows": {
            label: {
                "hand": h, "hand_uv": u, "r2env": r,
                "ratio": _ratio(r, h), "difference": r - h,
                "ratio_uv": _ratio(r, u), "difference_uv": r - u,
            }
            for label, h, u, r in rows
        },
        "targets": {label: {"goal": goal, "measured": value, "met": met} for label, goal, value, met in targets},
    }


def side_json(side: Side) -> dict[str, Any]:
    return {
        "image": side.image,
        "cold_s": side.cold,
        "noop_s": side.noop,
        "notebook_edit_s": side.edit,
        "size_bytes": side.size,
        "cached_steps": side.cached_steps,
        "remeasured": side.disturbed,
        "waited_for_other_builds_s": side.waits,
        **({"seconds_before_docker_build": side.prebuild} if side.prebuild else {}),
        **({"cold_step_times_s": side.step_times} if side.step_times else {}),
    }


def git_revision(root: Path, paths: Sequence[str]) -> str:
    """The commit of a checkout, marked dirty when `paths` have local changes (read-only git)."""
    head = run_quiet(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"], check=False).stdout.strip()
    dirty = run_quiet(["git", "-C", str(root), "status", "--porcelain", "--", *paths], check=False).stdout.strip()
    return (head or "unknown") + ("+dirty" if dirty else "")


def r2env_revision() -> str:
    """The commit of the r2env checkout measured (the one `import r2env` finds, whose console script builds)."""
    return git_revision(R2ENV_ROOT, ["r2env", "buildpacks"])


def resolve_example(name: str) -> Path:
    candidate = Path(name)
    if not candidate.is_dir():
        candidate = REPO_ROOT / name
    if not candidate.is_dir():
        candidate = REPO_ROOT / "examples" / name
    if not candidate.is_dir():
        raise BenchError(f"{name}: no such example (give a name under examples/ or a path)")
    for needed in ("requirements.txt", "analysis.ipynb"):
        if not (candidate / needed).is_file():
            raise BenchError(f"{candidate}: has no {needed}; the hand-written Dockerfile and the notebook edit need one")
    return candidate.resolve()


def lock_example(example: Path, scratch: Path, r2env: list[str]) -> Path:
    """--locked: a copy of the example with an r2env.lock, made once and untimed; every side's copy is taken from it."""
    source = copy_example(example, scratch, "locked-source")
    print(f"locking a copy of {example.name} with `r2env lock` (untimed) ...", flush=True)
    start = time.perf_counter()
    run_quiet([*r2env, "lock", str(source)])
    server, packages = export_lock(source)
    print(f"  locked in {time.perf_counter() - start:.0f} s: {server.count(chr(10))} server and {packages.count(chr(10))} repository pins", flush=True)
    return source


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--example", default="requirements", help="example under examples/ (or a path); default requirements")
    parser.add_argument("--runs", type=int, default=1, help="cold/no-op/edit sequences per side; medians are reported")
    parser.add_argument("--locked", action="store_true", help="lock the example copy first (r2env lock, untimed); the hand-written sides install the lock's pins with hashes")
    parser.add_argument("--json", metavar="FILE", help="write the figures as JSON")
    parser.add_argument("--log-dir", metavar="DIR", help="keep the build logs here (default: a new temporary directory)")
    arguments = parser.parse_args(argv)
    if arguments.runs < 1:
        parser.error("--runs must be at least 1")
    try:
        example = resolve_example(arguments.example)
        r2env = r2env_command()
        if not Path(CA_BUNDLE).is_file():
            raise BenchError(f"{CA_BUNDLE} is missing; the hand-written builds pass it to pip and uv as a secret")
        run_quiet([DOCKER, "image", "inspect", "debian:bookworm"])
    except BenchError as error:
        print(f"build_speed: {error}", file=sys.stderr)
        return 1
    log_dir = Path(arguments.log_dir or tempfile.mkdtemp(prefix="r2env-bench-logs-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    hand = Side("hand-pip", HAND_IMAGE, "pip")
    hand_uv = Side("hand-uv", HAND_UV_IMAGE, "uv")
    r2env_side = Side("r2env", R2ENV_IMAGE)
    sides = (hand, hand_uv, r2env_side)
    started = datetime.datetime.now().astimezone()
    revision = r2env_revision()
    mode = "locked (r2env.lock; hand-written sides install its pins with hashes)" if arguments.locked else "unlocked"
    print(f"example {example}, {mode}, {arguments.runs} run(s), server {DEFAULT_SERVER}, uv {UV_VERSION}, r2env {revision} at {R2ENV_ROOT} ({' '.join(r2env)}), logs in {log_dir}")
    dockerfiles: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="r2env-bench-") as scratch_name:
        scratch = Path(scratch_name)
        try:
            source = lock_example(example, scratch, r2env) if arguments.locked else example
            overhead = measure_overhead(copy_example(source, scratch, "overhead"), r2env)
            for run in range(1, arguments.runs + 1):
                # Rotate which side goes first, so none always runs on a warmer (or cooler) machine.
                shift = (run - 1) % len(sides)
                order = sides[shift:] + sides[:shift]
                print(f"run {run}: {', '.join(side.name for side in order)}")
                for side in order:
                    measure_side(side, source, scratch, r2env, log_dir, run, arguments.locked)
            for side in (hand, hand_uv):
                dockerfiles[side.name] = (scratch / f"run1-{side.name}" / "Dockerfile.hand").read_text(encoding="utf-8")
            if arguments.locked:
                (log_dir / "r2env.lock").write_text((source / "r2env.lock").read_text(encoding="utf-8"), encoding="utf-8")
            smoke = {side.name: "ok" if all(r == "ok" for r in side.smoke) else "; ".join(r for r in side.smoke if r != "ok") for side in sides}
        except BenchError as error:
            print(f"\nbuild_speed: {error}", file=sys.stderr)
            return 1
    summary = report(hand, hand_uv, r2env_side, overhead, smoke)
    for name, text in dockerfiles.items():
        (log_dir / f"Dockerfile.{name}").write_text(text, encoding="utf-8")
    print(f"\nlogs and the hand-written Dockerfiles: {log_dir}")
    if arguments.json:
        figures = {
            "date": started.isoformat(timespec="seconds"),
            "machine": {"cores": os.cpu_count(), "platform": platform.platform(), "docker": run_quiet([DOCKER, "version", "--format", "{{.Server.Version}}"]).stdout.strip()},
            "r2env_revision": revision,
            "r2env_checkout": str(R2ENV_ROOT),
            "benchmark_revision": git_revision(REPO_ROOT, ["benchmarks"]),
            "example": str(example),
            "locked": arguments.locked,
            "runs": arguments.runs,
            "server": DEFAULT_SERVER,
            "uv_version": UV_VERSION,
            "hand": side_json(hand),
            "hand_uv": side_json(hand_uv),
            "r2env": side_json(r2env_side),
            "overhead": overhead,
            "smoke_test": smoke,
            **summary,
            "hand_dockerfile": dockerfiles["hand-pip"],
            "hand_uv_dockerfile": dockerfiles["hand-uv"],
        }
        Path(arguments.json).write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
        print(f"figures written to {arguments.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
