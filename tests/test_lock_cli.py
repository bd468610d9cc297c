"""`r2env lock` at argv level: what it writes, prints and exits with. The engine and uv are fakes (no Docker, no network)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Sequence

import pytest

import r2env.cli
from r2env import pipeline
from r2env.cli import main
from r2env.errors import SourceError
from r2env.lock.lockfile import dump_lock, parse_lock
from r2env.lock.making import make_lock
from r2env.source import Checkout

from fake_engine import BOOKWORM_ID, DEBIAN, FakeEngine

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "lock"
COMPILED = (FIXTURES / "compiled.txt").read_text()  # real uv output: jupyter-core (the server) + requests, platformdirs, -e .
UV_CONFLICT = (FIXTURES / "uv-conflict.txt").read_text()
SERVER = "jupyter-core==5.7.2"


@dataclass
class FakeRunner:
    """`uv pip compile` with canned output (recorded from the real uv)."""

    compiled: str = COMPILED
    returncode: int = 0
    stderr: str = ""
    calls: list[list[str]] = field(default_factory=list)

    def __call__(self, argv: Sequence[str], cwd: Path) -> subprocess.CompletedProcess[str]:
        self.calls.append(list(argv))
        assert list(argv[:3]) == ["uv", "pip", "compile"], argv
        return subprocess.CompletedProcess(list(argv), self.returncode, "" if self.returncode else self.compiled, self.stderr)


@pytest.fixture
def engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeEngine:
    """A working directory with an r2env_config.py (a small server, a private cache) and the fake engine connected."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "r2env_config.py").write_text(f"c.R2env.server_requirement = {SERVER!r}\nc.R2env.cache_dir = {str(tmp_path / 'cache')!r}\n")
    fake = FakeEngine(images={"debian:bookworm": BOOKWORM_ID})
    monkeypatch.setattr(r2env.cli, "_connect", lambda settings: lambda: fake)
    return fake


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> FakeRunner:
    fake = FakeRunner()
    monkeypatch.setattr("r2env.lock.making.make_lock", partial(make_lock, runner=fake))
    return fake


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    (root / "requirements.txt").write_text("requests==2.32.3\nplatformdirs\n")
    (root / "apt.txt").write_text("jq\n")
    (root / "analysis.ipynb").write_text("{}\n")
    return root


def one_line_error(captured: Any) -> str:
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err
    return str(lines[0])


def test_lock_writes_r2env_lock_and_check_then_says_up_to_date(
    repo: Path, engine: FakeEngine, runner: FakeRunner, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["lock", str(repo)]) == 0
    out = capsys.readouterr().out
    path = repo / "r2env.lock"
    lock = parse_lock(path.read_text(), "r2env.lock")
    assert [p.name for p in lock.server] == ["jupyter-core", "platformdirs", "traitlets"]
    assert [p.name for p in lock.packages] == ["certifi", "charset-normalizer", "idna", "requests", "urllib3"]
    assert lock.apt["jq"] == "1.6-2.1" and lock.base.id == BOOKWORM_ID
    assert "no previous lock; 8 Python and 11 Debian packages locked" in out
    assert out.rstrip().endswith(f"locked {path}")
    assert main(["lock", "--check", str(repo)]) == 0
    assert capsys.readouterr().out == "r2env.lock is up to date\n"


def test_lock_defaults_to_the_current_directory(repo: Path, engine: FakeEngine, runner: FakeRunner, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    (repo / "r2env_config.py").write_text(f"c.R2env.server_requirement = {SERVER!r}\n")
    monkeypatch.chdir(repo)
    assert main(["lock"]) == 0
    assert (repo / "r2env.lock").is_file()
    assert main(["lock", "--check"]) == 0


def test_check_after_editing_requirements_exits_8_naming_the_file(
    repo: Path, engine: FakeEngine, runner: FakeRunner, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["lock", str(repo)]) == 0
    capsys.readouterr()
    (repo / "requirements.txt").write_text("requests==2.32.4\nplatformdirs\n")
    calls = len(runner.calls)
    assert main(["lock", "--check", str(repo)]) == 8
    captured = capsys.readouterr()
    error = one_line_error(captured)
    assert error.startswith("r2env: error: r2env.lock is stale: requirements.txt changed")
    assert "`r2env lock`" in error
    assert captured.out == ""
    assert len(runner.calls) == calls  # --check resolves nothing


def test_check_after_changing_the_server_option_exits_8(repo: Path, engine: FakeEngine, runner: FakeRunner,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lock", str(repo)]) == 0
    capsys.readouterr()
    assert main(["lock", "--check", "--server-requirement", "jupyter-core==5.7.1", str(repo)]) == 8
    assert "the option server-requirement changed" in one_line_error(capsys.readouterr())


def test_check_without_a_lock_exits_8(repo: Path, engine: FakeEngine, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lock", "--check", str(repo)]) == 8
    error = one_line_error(capsys.readouterr())
    assert "r2env.lock does not exist" in error and "r2env lock" in error


def test_a_notebook_or_postbuild_edit_keeps_the_lock_up_to_date(repo: Path, engine: FakeEngine, runner: FakeRunner,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    (repo / "postBuild").write_text("#!/bin/sh\necho hi\n")
    assert main(["lock", str(repo)]) == 0
    (repo / "analysis.ipynb").write_text('{"cells": []}\n')
    (repo / "postBuild").write_text("#!/bin/sh\necho hello\n")
    assert main(["lock", "--check", str(repo)]) == 0


def test_adding_a_postbuild_keeps_the_lock_fresh_as_node_is_pinned_by_r2env(repo: Path, engine: FakeEngine, runner: FakeRunner,
                                                                            capsys: pytest.CaptureFixture[str]) -> None:
    from r2env.node_installer import NODE_WHEEL_HASHES
    assert main(["lock", str(repo)]) == 0
    capsys.readouterr()
    (repo / "postBuild").write_text("#!/bin/sh\nnpm install --global semver\n")
    assert main(["lock", "--check", str(repo)]) == 0  # no Debian package more to resolve
    capsys.readouterr()
    assert main(["dockerfile", str(repo)]) == 0
    assert f"--hash=sha256:{NODE_WHEEL_HASHES[0]}" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("corrupt", "fragment"),
    [
        ("version: 1\nbase: [unclosed\n", "r2env.lock line 3: invalid YAML"),
        ("version: 7\n", "r2env.lock: lock format 7 is not 1"),
        ("version: 1\ninputs: {digest: x, files: {}}\n", "r2env.lock: base: is missing"),
    ],
)
@pytest.mark.parametrize("command", [["lock", "--check"], ["plan"], ["dockerfile"]])
def test_a_corrupt_lock_exits_8_with_one_line(
    repo: Path, engine: FakeEngine, capsys: pytest.CaptureFixture[str], command: list[str], corrupt: str, fragment: str
) -> None:
    (repo / "r2env.lock").write_text(corrupt)
    assert main([*command, str(repo)]) == 8
    captured = capsys.readouterr()
    assert fragment in one_line_error(captured)
    assert captured.out == ""


def test_a_hand_edited_lock_exits_8(repo: Path, engine: FakeEngine, runner: FakeRunner, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lock", str(repo)]) == 0
    capsys.readouterr()
    path = repo / "r2env.lock"
    lock = parse_lock(path.read_text(), "r2env.lock")
    path.write_text(path.read_text().replace(lock.inputs["requirements.txt"], "sha256:" + "0" * 64))
    assert main(["lock", "--check", str(repo)]) == 8
    assert "hand-edited" in one_line_error(capsys.readouterr())


def test_dry_run_prints_the_diff_and_writes_nothing(repo: Path, engine: FakeEngine, runner: FakeRunner,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lock", str(repo)]) == 0
    before = (repo / "r2env.lock").read_bytes()
    capsys.readouterr()
    runner.compiled = COMPILED.replace("requests==2.32.3", "requests==2.32.4").replace("urllib3==2.8.0", "urllib3==2.7.0")
    engine.debian["jq"] = {**DEBIAN["jq"], "jq": "1.6-2.1+deb12u1"}
    assert main(["lock", "--dry-run", str(repo)]) == 0
    out = capsys.readouterr().out
    table = out[out.index("kind"):].splitlines()
    assert table[0].split() == ["kind", "package", "old", "new"]
    assert ["changed", "apt", "jq", "1.6-2.1", "1.6-2.1+deb12u1"] in [row.split() for row in table]
    assert ["upgraded", "python", "requests", "2.32.3", "2.32.4"] in [row.split() for row in table]
    assert ["downgraded", "python", "urllib3", "2.8.0", "2.7.0"] in [row.split() for row in table]
    assert table[-1] == "1 upgraded, 1 downgraded, 1 changed"
    assert "locked " not in out and "wrote " not in out
    assert (repo / "r2env.lock").read_bytes() == before
    assert not list(repo.glob("*.tmp"))


def test_dry_run_without_a_lock_writes_nothing(repo: Path, engine: FakeEngine, runner: FakeRunner, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lock", "--dry-run", str(repo)]) == 0
    assert "no previous lock" in capsys.readouterr().out
    assert not (repo / "r2env.lock").exists()


def test_relocking_unchanged_inputs_says_no_changes(repo: Path, engine: FakeEngine, runner: FakeRunner,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lock", str(repo)]) == 0
    before = (repo / "r2env.lock").read_bytes()
    capsys.readouterr()
    assert main(["lock", str(repo)]) == 0
    assert "no changes" in capsys.readouterr().out.splitlines()
    assert (repo / "r2env.lock").read_bytes() == before


def test_diff_prints_the_table_of_two_lock_files(repo: Path, engine: FakeEngine, runner: FakeRunner, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lock", str(repo)]) == 0
    old = tmp_path / "old.lock"
    old.write_bytes((repo / "r2env.lock").read_bytes())
    (repo / "requirements.txt").write_text("requests==2.32.3\n")
    runner.compiled = COMPILED.replace("traitlets==5.16.1", "traitlets==5.17.0")
    assert main(["lock", str(repo)]) == 0
    capsys.readouterr()
    assert main(["lock", "--diff", str(old), str(repo / "r2env.lock")]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[1:] == [line for line in out.splitlines()[1:] if line]
    assert ["upgraded", "python", "traitlets", "5.16.1", "5.17.0"] in [row.split() for row in out.splitlines()]
    assert out.splitlines()[-1] == "1 upgraded"
    assert main(["lock", "--diff", str(old), str(old)]) == 0
    assert capsys.readouterr().out == "no changes\n"


def test_diff_of_a_missing_or_corrupt_file_exits_8(tmp_path: Path, engine: FakeEngine, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bad.lock").write_text("version: [\n")
    assert main(["lock", "--diff", str(tmp_path / "missing.lock"), str(tmp_path / "bad.lock")]) == 8
    assert "missing.lock: no such lock file" in one_line_error(capsys.readouterr())
    assert main(["lock", "--diff", str(tmp_path / "bad.lock"), str(tmp_path / "bad.lock")]) == 8
    error = one_line_error(capsys.readouterr())
    assert "bad.lock line 2: invalid YAML" in error  # the flow sequence is cut off at the end of the file


def test_a_resolver_failure_writes_nothing_and_keeps_the_old_lock(repo: Path, engine: FakeEngine, runner: FakeRunner,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lock", str(repo)]) == 0
    before = (repo / "r2env.lock").read_bytes()
    capsys.readouterr()
    (repo / "requirements.txt").write_text("requests==2.32.3\nurllib3<1\n")
    runner.returncode, runner.stderr = 1, UV_CONFLICT
    assert main(["lock", str(repo)]) == 8
    error = one_line_error(capsys.readouterr())
    assert error.startswith("r2env: error: cannot resolve the Python packages: error: No solution found")
    assert "you require urllib3<1" in error
    assert (repo / "r2env.lock").read_bytes() == before
    assert sorted(p.name for p in repo.iterdir()) == ["analysis.ipynb", "apt.txt", "r2env.lock", "requirements.txt"]


def test_an_unknown_debian_package_writes_nothing(repo: Path, engine: FakeEngine, runner: FakeRunner,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    (repo / "apt.txt").write_text("jq\nnosuchpkg-zz\n")
    assert main(["lock", str(repo)]) == 8
    error = one_line_error(capsys.readouterr())
    assert "nosuchpkg-zz" in error and "E: Unable to locate package" in error
    assert not (repo / "r2env.lock").exists()


def test_missing_uv_exits_8_saying_so(repo: Path, engine: FakeEngine, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    def no_uv(argv: Sequence[str], cwd: Path) -> subprocess.CompletedProcess[str]:
        raise FileNotFoundError(2, "No such file or directory", "uv")

    monkeypatch.setattr("r2env.lock.making.make_lock", partial(make_lock, runner=no_uv))
    assert main(["lock", str(repo)]) == 8
    assert "uv is not installed" in one_line_error(capsys.readouterr())


def test_a_dockerfile_repository_cannot_be_locked(tmp_path: Path, engine: FakeEngine, runner: FakeRunner,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """The user should hear that r2env does not lock Dockerfile builds (LockError, exit 8), not about a base image:
    a Dockerfile build's spec has no base image of r2env's."""
    root = tmp_path / "docker"
    root.mkdir()
    (root / "Dockerfile").write_text("FROM debian:bookworm\n")
    assert main(["lock", str(root)]) == 8
    assert "does not lock Dockerfile builds" in one_line_error(capsys.readouterr())
    assert not (root / "r2env.lock").exists() and runner.calls == []


def test_check_of_a_dockerfile_repository_does_not_ask_for_a_lock_that_cannot_be_made(
    tmp_path: Path, engine: FakeEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    """`lock --check` must not tell a Dockerfile repository to run `r2env lock`, which refuses Dockerfile builds."""
    root = tmp_path / "docker"
    root.mkdir()
    (root / "Dockerfile").write_text("FROM debian:bookworm\n")
    code = main(["lock", "--check", str(root)])
    error = one_line_error(capsys.readouterr()) if code else ""
    assert code == 0 or "Dockerfile" in error


def test_a_locked_repository_plans_and_renders_the_locked_install(repo: Path, engine: FakeEngine, runner: FakeRunner,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lock", str(repo)]) == 0
    capsys.readouterr()
    assert main(["dockerfile", str(repo)]) == 0
    dockerfile = capsys.readouterr().out
    assert 'uv pip install --python "$NB_PYTHON_PREFIX/bin/python" --compile-bytecode --require-hashes --no-deps -r /tmp/r2env-server.txt' in dockerfile
    assert "'requests==2.32.3 --hash=sha256:55365417734eb18255590a9ff9eb97e9e1da868d4ccd6402399eaf68af20a760" in dockerfile
    assert "jq=1.6-2.1" in dockerfile


# --- where a lock may not be written ------------------------------------------------------------------------------


def fake_clone(clone: Path) -> Any:
    """fetch() for a URL, as if `git clone` worked: a checkout in r2env's cache."""
    calls: list[str] = []

    def fetch(source: str, ref: str, cache_dir: Path, *args: Any) -> Checkout:
        calls.append(source)
        return Checkout(clone, source, "0" * 40, ref)

    fetch.calls = calls  # type: ignore[attr-defined]
    return fetch


def test_lock_of_a_url_refuses_to_write(tmp_path: Path, engine: FakeEngine, runner: FakeRunner, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    clone = tmp_path / "cache" / "checkouts" / "0123456789abcdef"
    clone.mkdir(parents=True)
    (clone / "requirements.txt").write_text("requests==2.32.3\n")
    monkeypatch.setattr(pipeline, "fetch", fake_clone(clone))
    assert main(["lock", "https://example.org/x.git"]) == 8
    error = one_line_error(capsys.readouterr())
    assert error.startswith("r2env: error: https://example.org/x.git: r2env writes r2env.lock into the repository")
    assert "local checkout" in error
    assert not (clone / "r2env.lock").exists()


def test_lock_of_a_url_refuses_before_cloning(tmp_path: Path, engine: FakeEngine, runner: FakeRunner, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """Offline (as here), the clone fails: the user should hear that a URL cannot be locked, not that it cannot be cloned,
    and online nothing should be cloned, bootstrapped and resolved only to be refused."""

    def offline(source: str, ref: str, cache_dir: Path, *args: Any) -> Checkout:
        raise SourceError(f"{source}: git clone failed: fatal: unable to access '{source}': Could not resolve host: example.org",
                          "check the URL and that you can access it")

    monkeypatch.setattr(pipeline, "fetch", offline)
    assert main(["lock", "https://example.org/x.git"]) == 8
    assert "writes r2env.lock into the repository" in one_line_error(capsys.readouterr())
    assert runner.calls == []


def test_dry_run_of_a_url_resolves_without_writing(tmp_path: Path, engine: FakeEngine, runner: FakeRunner, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    clone = tmp_path / "cache" / "checkouts" / "0123456789abcdef"
    clone.mkdir(parents=True)
    (clone / "requirements.txt").write_text("requests==2.32.3\n")
    monkeypatch.setattr(pipeline, "fetch", fake_clone(clone))
    assert main(["lock", "--dry-run", "https://example.org/x.git"]) == 0
    assert "no previous lock" in capsys.readouterr().out
    assert not (clone / "r2env.lock").exists()


def git(*argv: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.org", "-c", "init.defaultBranch=main", *argv],
                   check=True, capture_output=True)


def test_lock_of_a_bare_repository_refuses_to_write_into_r2envs_clone(
    repo: Path, tmp_path: Path, engine: FakeEngine, runner: FakeRunner, capsys: pytest.CaptureFixture[str]
) -> None:
    git("init", "-q", str(repo))
    git("-C", str(repo), "add", "-A")
    git("-C", str(repo), "commit", "-qm", "init")
    bare = tmp_path / "origin.git"
    git("clone", "-q", "--bare", str(repo), str(bare))
    assert main(["lock", str(bare)]) == 8
    assert "writes r2env.lock into the repository" in one_line_error(capsys.readouterr())
    assert not list((tmp_path / "cache").rglob("r2env.lock"))


def test_lock_at_a_ref_refuses_to_write(repo: Path, tmp_path: Path, engine: FakeEngine, runner: FakeRunner,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    git("init", "-q", str(repo))
    git("-C", str(repo), "add", "-A")
    git("-C", str(repo), "commit", "-qm", "init")
    git("-C", str(repo), "tag", "v1")
    assert main(["lock", "--ref", "v1", str(repo)]) == 8
    assert "writes r2env.lock into the repository" in one_line_error(capsys.readouterr())
    assert not (repo / "r2env.lock").exists()
    assert not list((tmp_path / "cache").rglob("r2env.lock"))


def test_lock_of_a_missing_directory_exits_3(tmp_path: Path, engine: FakeEngine, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lock", str(tmp_path / "nowhere")]) == 3
    assert "no such directory" in one_line_error(capsys.readouterr())


def test_written_lock_is_the_dumped_lock(repo: Path, engine: FakeEngine, runner: FakeRunner) -> None:
    assert main(["lock", str(repo)]) == 0
    text = (repo / "r2env.lock").read_text()
    assert dump_lock(parse_lock(text, "r2env.lock")) == text
    assert text.startswith("# r2env.lock") and "`r2env lock" in text.splitlines()[1]
