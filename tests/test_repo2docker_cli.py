"""r2env-repo2docker at the argv level, with BinderHub's exact command lines and a fake engine.

The command lines are those BinderHub builds (jupyterhub/binderhub, binderhub/build.py, Build.get_r2d_cmd_options
and get_cmd): `--ref=REF --image=NAME --no-clean --no-run --json-logs --user-name=jovyan --user-id=1000`, then
`--appendix TEXT` when c.BinderHub.appendix is set, `--push` with a push secret, `--build-memory-limit BYTES` with
a memory limit, c.BinderHub's repo2docker_extra_args, and the repository URL last. BinderHub reads stdout and
stderr together and treats each line as JSON (binderhub/build_local.py, LocalRepo2dockerBuild._handle_log)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from r2env import repo2docker_cli
from r2env.engine import DockerEngine

from fake_engine import FakeEngine
from git_repos import git

# repo2docker's phases (repo2docker/app.py R2dState) that a BinderHub build can see.
R2D_PHASES = {"fetching", "building", "pushing", "failed"}


def binderhub_argv(ref: str, image: str, repo_url: str, *, appendix: str = "", push: bool = False,
                   memory_limit: int = 0, extra: tuple[str, ...] = ()) -> list[str]:
    """binderhub/build.py get_r2d_cmd_options + get_cmd, minus the program name."""
    options = [f"--ref={ref}", f"--image={image}", "--no-clean", "--no-run", "--json-logs", "--user-name=jovyan", "--user-id=1000"]
    if appendix:
        options += ["--appendix", appendix]
    if push:
        options.append("--push")
    if memory_limit:
        options += ["--build-memory-limit", str(memory_limit)]
    return [*options, *extra, repo_url]


@pytest.fixture
def origin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """A git repository with a requirements.txt (its file:// URL and commit); the cache in tmp_path; no config file."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))  # the default cache (~/.cache/r2env) lands here
    repo = tmp_path / "origin"
    repo.mkdir()
    git("init", "-q", cwd=repo)
    (repo / "requirements.txt").write_text("numpy==1.26.4\n")
    git("add", ".", cwd=repo)
    git("commit", "-q", "-m", "first", cwd=repo)
    return f"file://{repo}", git("rev-parse", "HEAD", cwd=repo)


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> FakeEngine:
    fake = FakeEngine()
    monkeypatch.setattr(DockerEngine, "connect", classmethod(lambda cls, prefer_classic=False, address=None: fake))
    return fake


def run(argv: list[str]) -> tuple[int, list[dict[str, object]]]:
    out = io.StringIO()
    code = repo2docker_cli.run(argv, out)
    # BinderHub's rule: every line is one JSON object (a non-JSON line becomes phase "unknown").
    return code, [json.loads(line) for line in out.getvalue().splitlines()]


def test_binderhub_command_line_builds_with_its_user_and_image(origin: tuple[str, str], engine: FakeEngine) -> None:
    url, commit = origin
    code, lines = run(binderhub_argv(commit, "r2env-test/binder-abc:" + commit, url))
    assert code == 0
    assert {line["phase"] for line in lines} <= R2D_PHASES
    assert all(set(line) == {"phase", "message"} and str(line["message"]).endswith("\n") for line in lines)
    phases = [line["phase"] for line in lines]
    assert phases[0] == "fetching" and phases[-1] == "building"  # fetch first, repo2docker's order
    assert lines[-1]["message"] == f"Successfully built image r2env-test/binder-abc:{commit}\n"
    request = engine.requests[-1]
    assert request.tag == f"r2env-test/binder-abc:{commit}"
    assert request.labels["org.r2env.source.commit"] == commit
    dockerfile = engine.dockerfiles[-1]
    assert 'NB_USER="jovyan"' in dockerfile and 'NB_UID="1000"' in dockerfile


def test_appendix_push_memory_limit_and_extra_args_are_mapped(origin: tuple[str, str], engine: FakeEngine) -> None:
    url, commit = origin
    image = f"registry.example.org/binder/r2env-abc:{commit[:12]}"
    argv = binderhub_argv(commit, image, url, appendix="RUN echo appended > /tmp/appendix", push=True, memory_limit=2 * 1024**3,
                          extra=("--label", "org.example.team=data", "--cache-from", "registry.example.org/binder/r2env-abc:old",
                                 "--subdir", ".", "--target-repo-dir", "/srv/repo"))
    code, lines = run(argv)
    assert code == 0, lines
    request = engine.requests[-1]
    assert request.memory == "2147483648"
    assert request.labels["org.example.team"] == "data"
    assert request.cache_from == ("registry.example.org/binder/r2env-abc:old",)
    assert "RUN echo appended > /tmp/appendix" in engine.dockerfiles[-1]
    assert "/srv/repo" in engine.dockerfiles[-1]
    assert ("push", image) in engine.calls
    phases = [line["phase"] for line in lines]
    # pushing comes last, after building, as repo2docker reports it
    assert phases.index("pushing") > phases.index("building") and phases[-1] == "pushing"
    assert "digest" not in lines[-1] and "pushed" in str(lines[-1]["message"])


def test_repo2docker_action_command_line(origin: tuple[str, str], engine: FakeEngine) -> None:
    # repo2docker-action (jupyterhub/repo2docker-action, create_docker_image.sh) runs
    # jupyter-repo2docker --no-run --user-id 1000 --user-name jovyan --image-name NAME --cache-from NAME [--push] PATH
    # (with another user, so the mapping shows)
    url, _ = origin
    out = io.StringIO()
    code = repo2docker_cli.run(["--no-run", "--user-id", "1234", "--user-name", "alice", "--image-name", "r2env-test/action:latest",
                   "--cache-from", "r2env-test/action:latest", url], out)
    assert code == 0
    assert out.getvalue().splitlines()[-1] == "Successfully built image r2env-test/action:latest"  # text without --json-logs
    assert engine.requests[-1].tag == "r2env-test/action:latest"
    assert engine.requests[-1].cache_from == ("r2env-test/action:latest",)
    assert 'NB_USER="alice"' in engine.dockerfiles[-1] and 'NB_UID="1234"' in engine.dockerfiles[-1]


@pytest.mark.parametrize("option", ["--editable", "--publish-all", "--volume", "--Repo2Docker.platform", "--imag", "--no-clea"])
def test_unknown_repo2docker_options_are_refused_by_name(origin: tuple[str, str], engine: FakeEngine, option: str) -> None:
    url, commit = origin
    code, lines = run(binderhub_argv(commit, "r2env-test/x:1", url, extra=(option, "value")))
    assert code == 2
    assert len(lines) == 1 and lines[0]["phase"] == "failed"
    assert f"{option} is a repo2docker option r2env does not take" in str(lines[0]["message"])
    assert engine.requests == []


def test_refusal_without_json_logs_is_one_line_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    assert repo2docker_cli.main(["--debug", "https://example.org/repo"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "r2env-repo2docker: error: --debug is a repo2docker option r2env does not take: see r2env-repo2docker --help for the repo2docker options r2env takes\n"


@pytest.mark.parametrize(("extra", "words"), [
    (("--engine", "podman"), "--engine podman: r2env builds with Docker only"),
    (("--build-memory-limit", "lots"), "--build-memory-limit 'lots' is not a size"),
    (("--target-repo-dir", "etc"), "--target-repo-dir 'etc'"),
    (("--label", "no-equals"), "is not KEY=VALUE"),
])
def test_bad_values_fail_as_one_json_line(origin: tuple[str, str], engine: FakeEngine, extra: tuple[str, ...], words: str) -> None:
    url, commit = origin
    code, lines = run(binderhub_argv(commit, "r2env-test/x:1", url, extra=extra))
    assert code == 2
    assert [line["phase"] for line in lines] == ["failed"] and words in str(lines[0]["message"])
    assert engine.requests == []


def test_a_repo2docker_config_file_is_refused(origin: tuple[str, str], engine: FakeEngine, tmp_path: Path) -> None:
    url, commit = origin
    config = tmp_path / "repo2docker_config.py"
    config.write_text("c.Repo2Docker.user_id = 1000\n")
    code, lines = run(binderhub_argv(commit, "r2env-test/x:1", url, extra=("--config", str(config))))
    assert code == 2 and "sets c.Repo2Docker.*" in str(lines[-1]["message"])


def test_build_failure_is_a_failed_line(origin: tuple[str, str], engine: FakeEngine) -> None:
    url, _ = origin
    code, lines = run(binderhub_argv("no-such-ref", "r2env-test/x:1", url))
    assert code == 3
    assert lines[-1]["phase"] == "failed" and "no-such-ref" in str(lines[-1]["message"])


def test_git_credential_env_becomes_a_credential_helper(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    environ = {"GIT_CREDENTIAL_ENV": "username=someone\npassword=s3cret", "GIT_CONFIG_COUNT": "1",
               "GIT_CONFIG_KEY_0": "core.x", "GIT_CONFIG_VALUE_0": "y"}
    repo2docker_cli._git_credentials(environ)
    assert environ["GIT_CONFIG_COUNT"] == "2" and environ["GIT_CONFIG_KEY_1"] == "credential.helper"
    assert "s3cret" not in environ["GIT_CONFIG_VALUE_1"]  # the helper reads the variable; the secret is in no config
    # git itself runs the helper and gets the credentials back
    answer = subprocess.run(["git", "credential", "fill"], input="protocol=https\nhost=example.org\n\n", capture_output=True,
                            text=True, env={**os.environ, **environ, "GIT_TERMINAL_PROMPT": "0"}, check=True, cwd=tmp_path)
    assert "username=someone" in answer.stdout and "password=s3cret" in answer.stdout


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).with_name("r2env-repo2docker")
    assert script.exists(), "pip install -e . installs the r2env-repo2docker console script"
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=False)
    assert result.returncode == 0 and "--json-logs" in result.stdout and "--image-name" in result.stdout


def test_a_failed_steps_last_lines_precede_the_failed_line(origin: tuple[str, str], engine: FakeEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    from r2env.errors import BuildError

    def failing_build(request: object) -> object:
        raise BuildError("build step failed: RUN pip install -r requirements.txt", "fix the step", details="ERROR: No matching distribution\nexit code: 1")
        yield  # a generator, as the engine's build is

    monkeypatch.setattr(engine, "build", failing_build)
    url, commit = origin
    code, lines = run(binderhub_argv(commit, "r2env-test/x:1", url))
    assert code == 5
    assert lines[-3:] == [{"phase": "building", "message": "    ERROR: No matching distribution\n"},
                          {"phase": "building", "message": "    exit code: 1\n"},
                          {"phase": "failed", "message": "r2env: error: build step failed: RUN pip install -r requirements.txt: fix the step\n"}]
