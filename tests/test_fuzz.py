"""Fuzzing r2env's inputs (issue 17): malformed declaration files and hostile option values, run through
`r2env.cli.main` with no engine, each case in a forked child with a time and memory limit (tests/fuzz_worker.py).

Every case must end cleanly: no traceback, no hang, nothing written or changed in the repository or the working
directory, and either exit 0 (when the input is acceptable) or a non-zero exit with exactly one line on stderr.
Cases whose input is invalid must be refused (never exit 0) by a line naming the file or the option; a bad option
value must be refused with exit 2 before the engine is asked (here the engine is unreachable: reaching it is exit 7).

Fixed seed and bounded in CI (about 1,000 cases). Longer runs, e.g. as a benchmark:

    R2ENV_FUZZ_CASES=5000 R2ENV_FUZZ_BUDGET=3600 python3 -m pytest tests/test_fuzz.py -p no:cacheprovider

R2ENV_FUZZ_CASES is the number of random mutations of valid declaration files (default 150), R2ENV_FUZZ_SEED the
seed (default 17), R2ENV_FUZZ_TIMEOUT the seconds a case may take before it counts as a hang (default 5; the slowest clean case takes under 2),
R2ENV_FUZZ_BUDGET the seconds the whole suite may take (default 150; cases not run by then fail the test).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import queue
import random
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence, Union

import pytest

from r2env.cli import BUILD_FLAGS, PUBLISH_FLAGS
from r2env.config import LAUNCH_TRAITS, R2env, cli_traits
from r2env.serve.config import Serve
from traitlets import Bool, Float, Int, List

from fuzz_worker import TRACEBACK_EXIT

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
SEED = int(os.environ.get("R2ENV_FUZZ_SEED", "17"))
RANDOM_CASES = int(os.environ.get("R2ENV_FUZZ_CASES", "150"))
TIMEOUT = float(os.environ.get("R2ENV_FUZZ_TIMEOUT", "5"))
BUDGET = float(os.environ.get("R2ENV_FUZZ_BUDGET", "150"))
SERVER = "jupyter-core==5.7.2"
CONFIG = f"c.R2env.server_requirement = {SERVER!r}\n"
PWNED = "touch pwned"  # a command an injection would run: it would create `pwned` in the working directory


@dataclass(frozen=True)
class Fifo:
    pass


@dataclass(frozen=True)
class Link:
    target: str


@dataclass(frozen=True)
class Folder:
    pass


@dataclass(frozen=True)
class Unreadable:
    data: bytes


Content = Union[bytes, Fifo, Link, Folder, Unreadable]


@dataclass(frozen=True)
class Case:
    """One run of `r2env ARGV`. `{repo}` and `{cwd}` in argv are the case's repository and working directory."""

    name: str
    argv: tuple[str, ...]
    template: str = ""  # an examples/ folder copied as the repository ("" = an empty one)
    files: tuple[tuple[str, Content], ...] = ()  # written over the template (paths relative to the repository)
    cwd_files: tuple[tuple[str, Content], ...] = ()  # written into the working directory (r2env_config.py)
    must_refuse: bool = False  # the input is invalid: exit 0 is a defect, and the line must name one of `names`
    names: tuple[str, ...] = ()
    drop: bool = False  # run as an unprivileged user (a mode 000 file is readable by root)
    exit_2: bool = False  # an option check: the refusal is exit 2, before the engine


@dataclass
class Outcome:
    case: Case
    rc: int
    verdict: str  # clean, traceback, hang, accepted, unclear, engine, changed
    detail: str = ""
    seconds: float = 0.0


# --- running cases ------------------------------------------------------------------------------------------

class Workers:
    """Worker processes (tests/fuzz_worker.py), one per core, each running one case at a time."""

    def __init__(self, count: int) -> None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
        self.idle: queue.Queue[subprocess.Popen[str]] = queue.Queue()
        self.all = [
            subprocess.Popen([sys.executable, str(Path(__file__).with_name("fuzz_worker.py"))], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
            for _ in range(count)
        ]
        for worker in self.all:
            self.idle.put(worker)

    def run(self, job: dict[str, object]) -> dict[str, object]:
        worker = self.idle.get()
        try:
            assert worker.stdin is not None and worker.stdout is not None
            worker.stdin.write(json.dumps(job) + "\n")
            worker.stdin.flush()
            answer: dict[str, object] = json.loads(worker.stdout.readline())
            return answer
        finally:
            self.idle.put(worker)

    def close(self) -> None:
        for worker in self.all:
            assert worker.stdin is not None
            worker.stdin.close()
            worker.wait(timeout=30)
            assert worker.stdout is not None
            worker.stdout.close()


def _write(path: Path, content: Content) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, Fifo):
        os.mkfifo(path)
    elif isinstance(content, Link):
        os.symlink(content.target, path)
    elif isinstance(content, Folder):
        path.mkdir()
        (path / "inside").write_text("a folder where a file belongs\n")
    else:
        path.write_bytes(content.data)
        path.chmod(0)


def tree_digest(root: Path) -> str:
    """Names, types, modes, link targets and contents of everything under `root`, never opening a FIFO or device."""
    digest = hashlib.sha256()
    for folder, folders, files in os.walk(root):
        folders.sort()
        for name in sorted(folders + files):
            path = Path(folder) / name
            info = path.lstat()
            digest.update(f"{path.relative_to(root)}\0{info.st_mode}\0{info.st_size}\0".encode())
            if stat.S_ISLNK(info.st_mode):
                digest.update(os.readlink(path).encode())
            elif stat.S_ISREG(info.st_mode):
                with open(path, "rb") as handle:
                    for block in iter(lambda: handle.read(1 << 20), b""):
                        digest.update(block)
    return digest.hexdigest()


def run_case(case: Case, index: int, base: Path, workers: Workers, lock_text: bytes) -> Outcome:
    place = base / f"{index:05d}"
    repo, cwd, home = place / "repo", place / "cwd", place / "home"
    if case.template == "lockrepo":
        _lock_repo(repo, lock_text)
    elif case.template:
        shutil.copytree(EXAMPLES / case.template, repo, symlinks=True)
    else:
        repo.mkdir(parents=True)
    cwd.mkdir()
    home.mkdir()
    home.chmod(0o777)
    for name, content in case.files:
        _write(repo / name, content)
    for name, content in case.cwd_files:
        _write(cwd / name, content)
    before = (tree_digest(repo), tree_digest(cwd))
    argv = [word.replace("{repo}", str(repo)).replace("{cwd}", str(cwd)) for word in case.argv]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8",
           "DOCKER_HOST": f"unix://{place}/no-engine.sock", "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0"}
    answer = workers.run({"argv": argv, "cwd": str(cwd), "env": env, "out": str(place / "run"), "timeout": TIMEOUT, "drop": case.drop})
    with open(place / "run.stderr", "rb") as handle:
        err = handle.read(1 << 20).decode("utf-8", "replace")
    outcome = judge(case, int(answer["rc"]), err, bool(answer["hang"]), bool(answer["signalled"]),
                    before != (tree_digest(repo), tree_digest(cwd)))
    outcome.seconds = float(answer["seconds"])  # type: ignore[arg-type]
    for path in place.rglob("*"):
        if not path.is_symlink() and path.is_file():
            path.chmod(0o644)
    shutil.rmtree(place)
    return outcome


def judge(case: Case, rc: int, err: str, hang: bool, signalled: bool, changed: bool) -> Outcome:
    lines = err.splitlines()
    first = lines[0][:300] if lines else ""
    if hang:
        return Outcome(case, rc, "hang", f"still running after {TIMEOUT:g} s")
    if signalled or rc == TRACEBACK_EXIT or "Traceback (most recent call last)" in err:
        last = [line for line in lines if line and not line.startswith(" ")][-1:] or ["killed by a signal"]
        return Outcome(case, rc, "traceback", last[0][:300])
    if changed:
        return Outcome(case, rc, "changed", "the repository or working directory changed")
    if rc == 0:
        return Outcome(case, rc, "accepted", "exit 0 for invalid input") if case.must_refuse else Outcome(case, rc, "clean")
    if len(lines) != 1:
        return Outcome(case, rc, "unclear", f"{len(lines)} lines on stderr: {first!r}")
    if len(lines[0]) > 1200:
        return Outcome(case, rc, "unclear", f"a line of {len(lines[0]):,} characters")
    if case.must_refuse:
        if case.exit_2 and rc == 7:
            return Outcome(case, rc, "engine", "reached the engine instead of refusing the option")
        if case.exit_2 and rc != 2:
            return Outcome(case, rc, "unclear", f"exit {rc}, not 2: {first!r}")
        if case.names and not any(name in lines[0] for name in case.names):
            return Outcome(case, rc, "unclear", f"does not name {case.names[0]}: {first!r}")
    return Outcome(case, rc, "clean")


def run_all(cases: Sequence[Case], lock_text: bytes) -> tuple[list[Outcome], int]:
    base = Path(tempfile.mkdtemp(prefix="r2env-fuzz-"))
    base.chmod(0o755)  # the unprivileged runs must reach their repositories
    workers = Workers(max(2, os.cpu_count() or 2))
    deadline = time.monotonic() + BUDGET
    skipped = 0
    lock = threading.Lock()

    def one(item: tuple[int, Case]) -> Outcome | None:
        nonlocal skipped
        if time.monotonic() > deadline:
            with lock:
                skipped += 1
            return None
        return run_case(item[1], item[0], base, workers, lock_text)

    try:
        with ThreadPoolExecutor(len(workers.all)) as pool:
            outcomes = [outcome for outcome in pool.map(one, enumerate(cases)) if outcome is not None]
    finally:
        workers.close()
        shutil.rmtree(base, ignore_errors=True)
    return outcomes, skipped


def report(title: str, outcomes: Sequence[Outcome], skipped: int) -> str:
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome.verdict] = counts.get(outcome.verdict, 0) + 1
    slowest = max((o.seconds for o in outcomes), default=0.0)
    lines = [f"{title}: {len(outcomes)} cases run ({skipped} not run within {BUDGET:g} s), seed {SEED}: "
             + ", ".join(f"{verdict} {count}" for verdict, count in sorted(counts.items())) + f"; slowest {slowest:.2f} s"]
    for outcome in outcomes:
        if outcome.verdict != "clean":
            lines.append(f"  {outcome.verdict:9} exit {outcome.rc:3}  {outcome.case.name}: {outcome.detail}")
    return "\n".join(lines)


def _lock_repo(repo: Path, lock_text: bytes) -> None:
    shutil.copytree(EXAMPLES / "requirements", repo, symlinks=True)
    (repo / "r2env.lock").write_bytes(lock_text)


@pytest.fixture(scope="module")
def lock_text(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A valid r2env.lock for examples/requirements, made with a fake engine and a recorded uv answer (as
    tests/test_lock_cli.py does), for the lock-file cases to break."""
    from functools import partial

    import r2env.cli
    from r2env import pipeline
    from r2env.lock.making import make_lock

    from fake_engine import BOOKWORM_ID, FakeEngine
    from test_lock_cli import FakeRunner

    work = tmp_path_factory.mktemp("fuzz-lock")
    repo = work / "repo"
    shutil.copytree(EXAMPLES / "requirements", repo)
    (work / "r2env_config.py").write_text(CONFIG + f"c.R2env.cache_dir = {str(work / 'cache')!r}\n")
    fake = FakeEngine(images={"debian:bookworm": BOOKWORM_ID})
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(work)
        patch.setattr(r2env.cli, "_connect", lambda settings: lambda: fake)
        patch.setattr("r2env.lock.making.make_lock", partial(make_lock, runner=FakeRunner()))
        with contextlib.redirect_stdout(io.StringIO()):
            assert r2env.cli.main(["lock", str(repo)]) == 0
    return (repo / "r2env.lock").read_bytes()


@dataclass(frozen=True)
class CondaLocked:
    """examples/environment-yml locked with fake tools: the r2env.lock and the conda-lock.yml it refers to."""

    lock: object  # r2env.lock.lockfile.Lock
    conda_lock: bytes

    def files(self, content: Content) -> tuple[tuple[str, Content], ...]:
        """conda-lock.yml replaced by `content`, and an r2env.lock whose digest matches it whenever it is text, so
        that the broken file reaches the conda-lock parser (a digest mismatch would only say the lock is stale)."""
        from dataclasses import replace

        from r2env.lock.lockfile import dump_lock, file_digest

        lock = self.lock
        if isinstance(content, bytes):
            with contextlib.suppress(UnicodeDecodeError):
                lock = replace(lock, conda=replace(lock.conda, digest=file_digest(content.decode("utf-8"))))  # type: ignore[attr-defined]
        return (("binder/conda-lock.yml", content), ("binder/r2env.lock", dump_lock(lock).encode()))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def conda_locked(tmp_path_factory: pytest.TempPathFactory) -> CondaLocked:
    import test_conda_lock

    repo = tmp_path_factory.mktemp("fuzz-conda") / "repo"
    shutil.copytree(EXAMPLES / "environment-yml", repo)
    assert test_conda_lock.SERVER == SERVER  # the lock's server option must be the one CONFIG sets
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("r2env.conda.locking.shutil.which", test_conda_lock.which)
        patch.setattr("r2env.lock.making.conda_platform", lambda: "linux-64")
        lock, text, _ = test_conda_lock.lock_repo(repo)
    return CondaLocked(lock, text.encode())


# --- generating cases: option values -------------------------------------------------------------------------

CONTROL_VALUES = (f"x\nRUN {PWNED}", "\x00", "\x1b[2J", "a\rb")
OTHER_VALUES = ("", "a b", "nan", "-1", "9" * 5000, "~nosuchuser-r2env/x", "https://user:pa55word@127.0.0.1:9/x",
                "/dev/null", "UPPER::x", "../../etc", "z" * 100_000)
# Values each option must refuse beyond control characters and non-numbers (its grammar: r2env/option_checks.py).
REFUSED = {
    "user-name": {"", "a b", "-1", "9" * 5000, "~nosuchuser-r2env/x", "https://user:pa55word@127.0.0.1:9/x", "/dev/null", "UPPER::x", "../../etc", "z" * 100_000},
    "base-image": {"a b", "~nosuchuser-r2env/x", "https://user:pa55word@127.0.0.1:9/x", "/dev/null", "UPPER::x", "../../etc", "-1"},
    "server-requirement": {"", "a b", "~nosuchuser-r2env/x", "/dev/null", "UPPER::x", "../../etc", "-1", "https://user:pa55word@127.0.0.1:9/x"},
    "image-name": {"a b", "UPPER::x", "../../etc", "~nosuchuser-r2env/x", "https://user:pa55word@127.0.0.1:9/x", "/dev/null", "-1", "z" * 100_000},
    "ip": set(OTHER_VALUES),
    "memory": set(OTHER_VALUES) - {""},
    "cache-dir": {"~nosuchuser-r2env/x"},
    "host": set(OTHER_VALUES) - {"nan"},
    "state-dir": {"~nosuchuser-r2env/x", "/dev/null"},
}
NUMBER_REFUSED = {"nan", "9" * 5000, "", "a b", "~nosuchuser-r2env/x", "https://user:pa55word@127.0.0.1:9/x", "/dev/null",
                  "UPPER::x", "../../etc", "z" * 100_000}
NEGATIVE_REFUSED = {"user-id", "port", "cpus", "launch-timeout", "max-builds", "max-launches", "build-timeout", "resolve-timeout"}
MULTI_LINE = {"appendix"}  # Dockerfile instructions: a newline is its grammar


def _verb(flag: str) -> tuple[str, ...]:
    launch = {name.replace("_", "-") for name in LAUNCH_TRAITS}
    if flag in launch:
        return ("launch", "{repo}")
    if flag in (*PUBLISH_FLAGS, *BUILD_FLAGS, "image-name", "no-cache", "relock", "appendix"):
        return ("build", "{repo}")
    return ("dockerfile", "{repo}")


def option_cases() -> Iterator[Case]:
    sections = [(R2env, "R2env", _verb), (Serve, "Serve", lambda flag: ("serve",))]
    for configurable, section, verb in sections:
        for flag, trait in sorted(cli_traits(configurable).items()):
            if flag == "token":
                continue  # never a flag (tests/test_serve_config.py)
            names = (f"--{flag}", flag.replace("-", "_"))
            numeric = isinstance(trait, (Int, Float))
            if not isinstance(trait, Bool):
                for value in CONTROL_VALUES + OTHER_VALUES:
                    refuse = ((value in CONTROL_VALUES and flag not in MULTI_LINE) or value in REFUSED.get(flag, set())
                              or (numeric and value in NUMBER_REFUSED) or (value == "-1" and flag in NEGATIVE_REFUSED))
                    yield Case(f"{section} --{flag} {value[:30]!r}", (*verb(flag), f"--{flag}", value), template="requirements",
                               cwd_files=(("r2env_config.py", CONFIG.encode()),), must_refuse=refuse,
                               names=(*names, "image name") if flag == "image-name" else names, exit_2=refuse)
            # The same mistake in the config file names the file and the trait, never a flag the user did not give.
            bad = {Bool: "'maybe'", Int: "'abc'", Float: "float('nan')", List: "5"}.get(type(trait), repr(f"x\nRUN {PWNED}"))
            if flag in MULTI_LINE:
                bad = "5"
            name = flag.replace("-", "_")
            yield Case(f"r2env_config.py c.{section}.{name} = {bad}", verb(flag), template="requirements",
                       cwd_files=(("r2env_config.py", f"{CONFIG}c.{section}.{name} = {bad}\n".encode()),),
                       must_refuse=True, names=(f"r2env_config.py: c.{section}.{name}",), exit_2=True)
    yield Case("r2env_config.py unknown trait", ("dockerfile", "{repo}"), template="requirements",
               cwd_files=(("r2env_config.py", b"c.R2env.cpu = 2\n"),), must_refuse=True, names=("c.R2env.cpu",), exit_2=True)


def argument_cases() -> Iterator[Case]:
    """Sources and the argument checks of every verb."""
    sources = ["-oProxyCommand=" + PWNED, "--upload-pack=" + PWNED, f"ext::sh -c {PWNED.replace(' ', '% ')}", "file:///nonexistent/r2env",
               "z" * 100_000, "/" + "/".join(["d" * 250] * 20), "~nosuchuser-r2env/x", "/dev/null", "/dev/zero", "/proc/self/mem",
               "https://user:pa55word@127.0.0.1:9/x.git", "user:pa55word@127.0.0.1:x.git", "\x00", f"x\n{PWNED}", "", "-"]
    for verb in ("plan", "dockerfile", "build", "launch"):
        for source in sources:
            yield Case(f"{verb} source {source[:30]!r}", (verb, source), must_refuse=True, names=())
    yield Case("lock --check outside", ("lock", "--check", "/dev/null"), must_refuse=True)
    for words in (("ps", "--all"), ("stop", "z" * 100_000), ("stop", f"x\n{PWNED}"), ("stop", "--all"), ("ps", "--bogus"),
                  ("base", "bootstrap", "--suite", "sid"), ("base", "bootstrap", "--mirror", "\x00"), ("base", "bootstrap", "--cache-dir", "~nosuchuser-r2env"),
                  ("plan", "{repo}", "--", "echo"), ("lock", "--check", "--diff", "a", "b"), ("lock", "--diff", "{repo}/missing", "{repo}/missing"),
                  ("lock", "--diff", "/dev/null", "/dev/zero"), ("lock", "--diff", "{repo}", "{repo}"), ("lock", "--diff", "z" * 5000, "x"),
                  ("plan", "--config", "/dev/zero", "{repo}"), ("plan", "--config", "{repo}", "{repo}"), ("plan", "--config", "z" * 5000, "{repo}"),
                  ("serve", "--new-token", "--port", "x"), ("nosuchverb",), ()):
        yield Case(f"argv {' '.join(w[:20] for w in words)!r}", words, template="requirements", must_refuse=True)


# --- generating cases: declaration files --------------------------------------------------------------------

def _yaml_bomb() -> bytes:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in range(1, 10):
        previous = chr(ord("a") + level - 1)
        name = chr(ord("a") + level)
        lines.append(f"{name}: &{name} [{', '.join(['*' + previous] * 9)}]")
    return ("\n".join(lines) + "\ndependencies: *j\n").encode()


YAML_EXTRA = {
    "alias bomb": _yaml_bomb(),
    "deep nesting": b"dependencies: " + b"[" * 100_000,
    "a list at the top": b"- a\n- b\n",
    "a number for a mapping": b"dependencies: 5\nname: 7\n",
    "a 10 MB comment": b"# " + b"x" * 10_000_000 + b"\ndependencies: [python=3.11]\n",
}
TOML_EXTRA = {
    "deep nesting": b"a = " + b"[" * 100_000,
    "wrong types": b"project = 5\ntool = 'x'\npackage = 5\nmetadata = []\n",
    "a string for a table": b"[project]\nname = 5\ndependencies = 'numpy'\nrequires-python = 3\n",
}
JSON_EXTRA = {
    "deep nesting": b"[" * 100_000,
    "a list for a mapping": b'{"_meta": [], "default": []}',
    "wrong hash types": b'{"_meta": {"requires": {"python_version": "3.11"}}, "default": {"x": {"version": "==1.0", "hashes": ["md5:0", 5, "sha256:zz"]}}}',
    "a version on two lines": b'{"_meta": {"requires": {"python_version": "3.11"}}, "default": {"x": {"version": "==1.0\\nRUN touch pwned", "hashes": ["sha256:' + b"a" * 64 + b'"]}}}',
}
REQUIREMENTS_EXTRA = {
    "an include cycle": b"-r requirements.txt\nnumpy==1.26.0\n",
    "an include outside": b"-r ../../../../../../etc/passwd\n",
    "a missing include": b"-r no-such-file.txt\n",
    "a variable": b"numpy==$VERSION\n",
    "backticks": b"numpy==`touch pwned`\n",
    "an editable outside": b"-e ../x\n",
    "a file: URL outside": b"x @ file:../x\n",
    "a missing local path": b"./no-such-dir\n",
}
# Hostile but valid: pip accepts each of these, so r2env must too (quickly: no hang on the long runs).
REQUIREMENTS_VALID = {
    "a bare URL": b"https://example.org/x-1.0-py3-none-any.whl\n",
    "100,000 spaces": b"numpy==1.26.0" + b" " * 100_000 + b"\n",
    "100,000 tabs": b"\t" * 100_000 + b"\n",
    "a 5,000-digit version": b"numpy==" + b"1" * 5000 + b"\n",
}
# Pipfile's own tables with wrong types (the TOML of other formats' tables is not read from a Pipfile).
PIPFILE_EXTRA = {
    "deep nesting": TOML_EXTRA["deep nesting"],
    "wrong types": b"packages = 5\nrequires = 'x'\nsource = 5\n",
    "a string for a table": b"[packages]\nnumpy = 5\n[requires]\npython_version = 3\n",
}
APT_EXTRA = {
    "shell characters": b"jq; touch pwned\n$(touch pwned)\n",
    "a 10 MB file": b"jq\n" * 3_400_000,
    "an option": b"-o APT::Get::AllowUnauthenticated=true\n",
}
RUNTIME_EXTRA = {"a 5,000-digit version": b"python-3." + b"9" * 5000 + b"\n", "two lines": b"python-3.11\nRUN touch pwned\n"}


def _lock_extra(valid: bytes) -> dict[str, bytes]:
    text = valid.decode()
    import re

    version = re.search(r"version: ['\"]?([0-9][^'\"\s]*)", text.split("packages:", 1)[-1])
    hashed = re.search(r"sha256:[0-9a-f]{64}", text)
    extra = {
        "alias bomb": _yaml_bomb(),
        "deep nesting": b"version: 1\nbase: " + b"[" * 100_000,
        "a list at the top": b"- 1\n- 2\n",
        "wrong types": text.replace("version: 1", "version: [1]", 1).encode(),
        "mirror of a wrong type": (text + "mirror: [1, 2]\n").encode(),
        "r2env-version of a wrong type": (text + "r2env-version: {a: 1}\n").encode(),
    }
    if version:
        start, end = version.span(1)
        part = text.index("packages:") if "packages:" in text else 0
        start, end = start + part, end + part
        extra["a version on two lines"] = (text[:start] + '"' + version.group(1) + f'\\nRUN {PWNED}"' + text[end:]).encode()
        extra["a garbage version"] = (text[:start] + '"!!not a version"' + text[end:]).encode()
    if hashed:
        extra["a non-hex hash"] = text.replace(hashed.group(), "sha256:" + "z" * 64, 1).encode()
        extra["a quoted hash"] = text.replace(hashed.group(), "sha256:'" + "a" * 62 + "'", 1).encode()
    return extra


# Each declaration file, the example repository it is read in, and its format-specific breakages.
TARGETS: list[tuple[str, str, dict[str, bytes]]] = [
    ("requirements", "requirements.txt", REQUIREMENTS_EXTRA),
    ("requirements", "requirements-extra.txt", {"an include cycle": b"-r requirements.txt\n"}),
    ("hashed-requirements", "requirements.txt", {"a short hash": b"numpy==1.26.0 --hash=sha256:abc\n"}),
    ("runtime-trixie", "runtime.txt", RUNTIME_EXTRA),
    ("binder-folder", "binder/apt.txt", APT_EXTRA),
    ("binder-folder", "binder/requirements.txt", {}),
    ("pipfile-lock", "Pipfile.lock", JSON_EXTRA),
    ("pipfile-lock", "Pipfile", PIPFILE_EXTRA),
    ("pyproject", "pyproject.toml", TOML_EXTRA),
    ("poetry-lock", "poetry.lock", {**TOML_EXTRA, "a version on two lines": b'[metadata]\nlock-version = "2.1"\n[[package]]\nname = "x"\nversion = "1.0\\nRUN touch pwned"\ngroups = ["main"]\nfiles = [{file = "x.whl", hash = "sha256:' + b"a" * 64 + b'"}]\n'}),
    ("uv-lock", "uv.lock", TOML_EXTRA),
    ("environment-yml", "binder/environment.yml", YAML_EXTRA),
    ("lockrepo", "r2env.lock", {}),
]
VERBS = (("dockerfile", "{repo}"), ("plan", "{repo}"), ("lock", "--check", "{repo}"))


def _generic(valid: bytes, rng: random.Random) -> Iterator[tuple[str, Content, bool]]:
    """(name, content, must be refused) for any text file."""
    yield "empty", b"", False
    yield "binary garbage", bytes(rng.getrandbits(8) for _ in range(4096)), True
    yield "invalid UTF-8", b"\xcd\xff\xfe" + valid, True
    yield "UTF-16", valid.decode("utf-8").encode("utf-16"), True
    yield "a NUL byte", valid[: len(valid) // 2] + b"\x00" + valid[len(valid) // 2:], True
    yield "a UTF-8 BOM", b"\xef\xbb\xbf" + valid, False
    yield "CRLF line ends", valid.replace(b"\n", b"\r\n"), False
    yield "truncated", valid[: len(valid) // 2], False
    yield "a 12 MB file", valid + b"\n" + (b"#" + b"x" * 1023 + b"\n") * 12_000, True
    yield "a FIFO", Fifo(), True
    yield "/dev/zero", Link("/dev/zero"), True
    yield "/proc/self/mem", Link("/proc/self/mem"), True
    yield "a folder", Folder(), True
    yield "unreadable", Unreadable(valid), True
    yield "a link outside", Link("/etc/passwd"), True
    yield "a dangling link", Link("no-such-target"), False


def file_cases(lock_text: bytes) -> Iterator[Case]:
    rng = random.Random(SEED)
    for template, target, extra in TARGETS:
        valid = lock_text if target == "r2env.lock" else (EXAMPLES / template / target).read_bytes()
        if target == "r2env.lock":
            extra = _lock_extra(lock_text)
        base_name = Path(target).name
        mutations = [*_generic(valid, rng), *((name, content, True) for name, content in extra.items()),
                     *((name, content, False) for name, content in (REQUIREMENTS_VALID.items() if target == "requirements.txt" and template == "requirements" else ()))]
        for name, content, refuse in mutations:
            for verb in VERBS:
                yield Case(f"{template}/{target}: {name} [{verb[0]}{' ' + verb[1] if verb[1] != '{repo}' else ''}]", verb,
                           template=template, files=((target, content),), cwd_files=(("r2env_config.py", CONFIG.encode()),),
                           must_refuse=refuse, names=(base_name,), drop=isinstance(content, Unreadable))
            if target == "r2env.lock":
                yield Case(f"r2env.lock: {name} [lock --diff]", ("lock", "--diff", "{repo}/r2env.lock", "{repo}/r2env.lock"), template=template,
                           files=((target, content),), must_refuse=refuse and name not in ("CRLF line ends", "a UTF-8 BOM"), names=(base_name,),
                           drop=isinstance(content, Unreadable))
    # Random mutations of valid files: bytes flipped, inserted or cut. Not necessarily invalid: only clean.
    targets = [(template, target) for template, target, _ in TARGETS]
    for number in range(RANDOM_CASES):
        template, target = targets[number % len(targets)]
        data = bytearray(lock_text if target == "r2env.lock" else (EXAMPLES / template / target).read_bytes())
        for _ in range(rng.randint(1, 8)):
            position = rng.randrange(max(1, len(data)))
            action = rng.choice(("flip", "insert", "cut", "special"))
            if action == "flip" and data:
                data[position] = rng.getrandbits(8)
            elif action == "insert":
                data[position:position] = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 16)))
            elif action == "cut":
                del data[position:position + rng.randint(1, 64)]
            else:
                data[position:position] = rng.choice([b"\n", b"\x00", b"\r", b"'", b'"', b"[", b"{", b"&a", b"*a", b"\\", b"\t", b"-r ", b"=="])
        verb = VERBS[number % len(VERBS)]
        yield Case(f"{template}/{target}: random mutation {number} [{verb[0]}]", verb, template=template, files=((target, bytes(data)),),
                   cwd_files=(("r2env_config.py", CONFIG.encode()),), names=(Path(target).name,))
    # The config file itself: r2env_config.py in the working directory.
    for name, content, refuse in _generic(CONFIG.encode(), rng):
        if isinstance(content, (Fifo, Link, Folder, Unreadable)) or name in ("a 12 MB file", "a link outside"):
            # Not a regular file: ./r2env_config.py is ignored unless --config names it. A config file is the
            # user's own Python: a long one, or one that is a link, is theirs to have.
            refuse = False
        yield Case(f"r2env_config.py: {name}", ("dockerfile", "{repo}"), template="requirements", cwd_files=(("r2env_config.py", content),),
                   must_refuse=refuse, names=("r2env_config.py",), drop=isinstance(content, Unreadable))
        yield Case(f"--config FILE: {name}", ("dockerfile", "--config", "{cwd}/given.py", "{repo}"), template="requirements",
                   cwd_files=(("given.py", content),),
                   must_refuse=refuse or isinstance(content, (Fifo, Folder, Unreadable)) or name in ("/dev/zero", "/proc/self/mem", "a dangling link"),
                   names=("given.py",), drop=isinstance(content, Unreadable))


# --- the tests ----------------------------------------------------------------------------------------------

def _assert_clean(title: str, outcomes: Sequence[Outcome], skipped: int) -> None:
    text = report(title, outcomes, skipped)
    print(text)
    failures = [outcome for outcome in outcomes if outcome.verdict != "clean"]
    assert not failures and not skipped, text


def conda_lock_cases(locked: CondaLocked) -> Iterator[Case]:
    """conda-lock.yml, read when a conda repository's r2env.lock refers to it (plan, dockerfile, lock --check)."""
    rng = random.Random(SEED)
    valid = locked.conda_lock
    text = valid.decode()
    extra = {
        "alias bomb": _yaml_bomb(),
        "deep nesting": b"version: 1\npackage: " + b"[" * 100_000,
        "a list at the top": b"- 1\n- 2\n",
        "a list for metadata": text.replace("metadata:\n", "metadata: []\nold-metadata:\n", 1).encode(),
        "a version on two lines": text.replace("  version: 1.0.0\n", f'  version: "1.0.0\\nRUN {PWNED}"\n', 1).encode(),
        "a non-hex hash": re.sub(r"sha256: [0-9a-f]{64}", "sha256: " + "z" * 64, text, count=1).encode(),
        "a URL with a newline": re.sub(r"url: (\S+)", lambda m: f'url: "{m.group(1)}\\nRUN {PWNED}"', text.split("package:", 1)[1], count=1).join(
            [text.split("package:", 1)[0] + "package:", ""]).encode(),
    }
    mutations = [*_generic(valid, rng), *((name, content, True) for name, content in extra.items())]
    for name, content, refuse in mutations:
        for verb in VERBS:
            yield Case(f"environment-yml/binder/conda-lock.yml: {name} [{verb[0]}{' ' + verb[1] if verb[1] != '{repo}' else ''}]", verb,
                       template="environment-yml", files=locked.files(content), cwd_files=(("r2env_config.py", CONFIG.encode()),),
                       must_refuse=refuse, names=("conda-lock.yml",), drop=isinstance(content, Unreadable))
    for number in range(RANDOM_CASES // 3):
        data = bytearray(valid)
        for _ in range(rng.randint(1, 8)):
            position = rng.randrange(len(data))
            data[position:position] = rng.choice([b"\n", b"\x00", b"'", b'"', b"[", b"{", b"&a", b"*a", b"\t", b": ", b"- "])
        verb = VERBS[number % len(VERBS)]
        yield Case(f"environment-yml/binder/conda-lock.yml: random mutation {number} [{verb[0]}]", verb, template="environment-yml",
                   files=locked.files(bytes(data)), cwd_files=(("r2env_config.py", CONFIG.encode()),), names=("conda-lock.yml",))


def test_fuzz_options_and_arguments(lock_text: bytes) -> None:
    """Every option with hostile values (flags and r2env_config.py), sources and the argument checks of every verb."""
    cases = [*option_cases(), *argument_cases()]
    assert len({case.name for case in cases}) == len(cases)
    assert len(cases) >= 600
    _assert_clean("options and arguments", *run_all(cases, lock_text))


def test_fuzz_declaration_files(lock_text: bytes) -> None:
    """Every declaration file r2env reads, broken in every way we know, and mutated at random."""
    cases = list(file_cases(lock_text))
    assert len(cases) >= 600
    _assert_clean("declaration files", *run_all(cases, lock_text))


def test_fuzz_conda_lock(lock_text: bytes, conda_locked: CondaLocked) -> None:
    """conda-lock.yml, broken in every way we know and mutated at random; first a control: the valid pair plans."""
    control = run_all([Case("environment-yml: the valid lock", ("plan", "{repo}"), template="environment-yml",
                            files=conda_locked.files(conda_locked.conda_lock), cwd_files=(("r2env_config.py", CONFIG.encode()),))], lock_text)
    assert [outcome.verdict for outcome in control[0]] == ["clean"] and control[0][0].rc == 0, report("control", *control)
    cases = list(conda_lock_cases(conda_locked))
    assert len(cases) >= 60
    _assert_clean("conda-lock.yml", *run_all(cases, lock_text))
