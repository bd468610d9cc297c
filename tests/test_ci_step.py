"""r2env as a CI step, without Docker: image references and credentials, the publish flow on the fake engine
(push, tags, --check-registry, --cache-from), the JSON result and GitHub outputs, exit codes per failure class,
and the GitHub Action's inputs → command lines."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest
from ruamel.yaml import YAML

from r2env import __version__, ci, cli, github_action, pipeline
from r2env.config import Settings, load_config
from r2env.engine import parse_buildkit_progress
from r2env.errors import BuildError, PushError, UsageError
from r2env.events import BuildEvent, Kind
from r2env.inspect import inspect
from r2env.lock.lockfile import Lock, LockedBase, LockedPackage, dump_lock
from r2env.lock.locking import current_inputs
from r2env.registry import Credentials, Reference, credentials_from_env, parse_reference
from r2env.repo import DiskRepo

from fake_engine import BOOKWORM_ID, DEBIAN, MIRROR, FakeEngine

ROOT = Path(__file__).resolve().parent.parent
SERVER = "jupyter-core==5.7.2"
REGISTRY = "registry.example:5000"
IMAGE = f"{REGISTRY}/team/app:v1"


# --- references and credentials ------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("ghcr.io/team/app:v1", Reference("ghcr.io/team/app", "v1", "ghcr.io")),
    ("127.0.0.1:5000/app", Reference("127.0.0.1:5000/app", "latest", "127.0.0.1:5000")),
    ("localhost/a/b:x.y-z", Reference("localhost/a/b", "x.y-z", "localhost")),
    ("team/app:v2", Reference("team/app", "v2", "docker.io")),
    ("app", Reference("app", "latest", "docker.io")),
])
def test_image_names_parse_like_docker(text: str, expected: Reference) -> None:
    assert parse_reference(text) == expected


@pytest.mark.parametrize("text", ["Team/App", "ghcr.io/app:", "ghcr.io/app@sha256:" + "a" * 64, "app:-v1", "a//b", ""])
def test_invalid_image_names_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError):
        parse_reference(text)


def test_credentials_come_from_both_variables_or_none_and_never_print() -> None:
    assert credentials_from_env("ghcr.io", {}) is None
    found = credentials_from_env("ghcr.io", {"R2ENV_REGISTRY_USERNAME": "ci", "R2ENV_REGISTRY_PASSWORD": "hunter2"})
    assert found == Credentials("ghcr.io", "ci", "hunter2") and "hunter2" not in repr(found)
    with pytest.raises(UsageError, match="R2ENV_REGISTRY_PASSWORD is not set"):
        credentials_from_env("ghcr.io", {"R2ENV_REGISTRY_USERNAME": "ci"})


# --- the publish flow on the fake engine --------------------------------------------------------------


@pytest.fixture
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no ./r2env_config.py
    for variable in ("SSL_CERT_FILE", "PIP_CERT", "REQUESTS_CA_BUNDLE", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy",
                     "R2ENV_REGISTRY_USERNAME", "R2ENV_REGISTRY_PASSWORD", "GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY"):
        monkeypatch.delenv(variable, raising=False)


def settings_with(tmp_path: Path, **overrides: str) -> Settings:
    return load_config(None, {"cache_dir": str(tmp_path / "cache"), "server_requirement": SERVER, **overrides})


def locked_repo(root: Path, settings: Settings, requirement: str = "iniconfig==2.0.0") -> Path:
    """A repository with an up-to-date r2env.lock, written directly (resolving is tested in test_locking.py)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "requirements.txt").write_text(requirement + "\n")
    facts = inspect(DiskRepo(root))
    apt = {name: version for wanted in ("ca-certificates", "python3", "python3-venv") for name, version in DEBIAN[wanted].items()}
    name, version = requirement.split("==")
    lock = Lock(__version__, current_inputs(root, facts, settings.plan), LockedBase("debian:bookworm", BOOKWORM_ID, "bookworm", MIRROR),
                "3.11", (LockedPackage("jupyter-core", "5.7.2", ("sha256:" + "1" * 64,)),),
                (LockedPackage(name, version, ("sha256:" + "2" * 64,)),), apt)
    (root / "r2env.lock").write_text(dump_lock(lock))
    return root


def run_build(source: Path, settings: Settings, engine: FakeEngine) -> tuple[list[BuildEvent], pipeline.BuildResult]:
    events = list(pipeline.build(str(source), settings, lambda: engine))
    result = events[-1]
    assert isinstance(result, pipeline.BuildResult)
    return events, result


def test_push_pushes_the_image_its_tags_and_the_key_tag(tmp_path: Path, clean_env: None) -> None:
    settings = settings_with(tmp_path, image_name=IMAGE, tag="latest,main", push="true")
    engine = FakeEngine()
    _, result = run_build(locked_repo(tmp_path / "repo", settings), settings, engine)
    pushed = [reference for call, reference in engine.calls if call == "push"]
    assert pushed[:3] == [IMAGE, f"{REGISTRY}/team/app:latest", f"{REGISTRY}/team/app:main"]
    assert len(pushed) == 4 and re.fullmatch(rf"{REGISTRY}/team/app:r2env-[0-9a-f]{{64}}", pushed[3])
    assert result.pushed and result.digest == engine.registry[IMAGE] and result.tags == tuple(pushed)
    assert engine.requests[0].inline_cache  # a pushed image carries its cache metadata for later --cache-from


def test_an_unlocked_image_gets_no_key_tag_and_check_registry_says_why(tmp_path: Path, clean_env: None) -> None:
    settings = settings_with(tmp_path, image_name=IMAGE, push="true", check_registry="true")
    engine = FakeEngine()
    events, result = run_build(ROOT / "examples" / "requirements", settings, engine)
    assert "--check-registry needs r2env.lock" in " ".join(e.message for e in events)
    assert [r for call, r in engine.calls if call == "push"] == [IMAGE] and result.pushed


def test_check_registry_skips_the_build_when_the_registry_has_the_key_tag(tmp_path: Path, clean_env: None) -> None:
    settings = settings_with(tmp_path, image_name=IMAGE, push="true")
    repo = locked_repo(tmp_path / "repo", settings)
    first = FakeEngine()
    run_build(repo, settings, first)
    # Another machine: an empty engine, the same registry.
    engine = FakeEngine(registry=dict(first.registry))
    later = settings_with(tmp_path, image_name=f"{REGISTRY}/team/app:v2", push="true", check_registry="true")
    events, result = run_build(repo, later, engine)
    assert engine.requests == []
    assert any("nothing to build" in e.message for e in events)
    assert result.cache_hit and result.pushed and result.digest == first.registry[IMAGE]
    assert [r for call, r in engine.calls if call == "push"] == [f"{REGISTRY}/team/app:v2"]
    # Once the tag points at it, a third run only asks the registry.
    engine.calls.clear()
    events, _ = run_build(repo, later, engine)
    assert not [call for call, _ in engine.calls if call in ("pull", "push", "build")]
    assert any("nothing to push" in e.message for e in events)


def test_check_registry_builds_when_the_repository_changed(tmp_path: Path, clean_env: None) -> None:
    settings = settings_with(tmp_path, image_name=IMAGE, push="true", check_registry="true")
    repo = locked_repo(tmp_path / "repo", settings)
    engine = FakeEngine()
    run_build(repo, settings, engine)
    (repo / "notebook.ipynb").write_text("{}\n")  # not a lock input: the lock stays fresh, the contents change
    events, result = run_build(repo, settings, FakeEngine(registry=dict(engine.registry)))
    assert any("has no image for this locked spec yet: building" in e.message for e in events)
    assert not result.cache_hit


def test_cache_from_and_credentials_reach_the_build_request(tmp_path: Path, clean_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("R2ENV_REGISTRY_USERNAME", "ci")
    monkeypatch.setenv("R2ENV_REGISTRY_PASSWORD", "hunter2")
    settings = settings_with(tmp_path, image_name=IMAGE, cache_from=f"{REGISTRY}/team/app:latest", push="true")
    engine = FakeEngine()
    run_build(ROOT / "examples" / "requirements", settings, engine)
    (request,) = engine.requests
    assert request.cache_from == (f"{REGISTRY}/team/app:latest",)
    assert request.credentials == Credentials(REGISTRY, "ci", "hunter2")
    assert engine.credentials_seen == [Credentials(REGISTRY, "ci", "hunter2")]


@pytest.mark.parametrize(("steps", "hit"), [
    ((("FROM debian:bookworm", False), ("RUN a", True), ("COPY . /home", True)), True),
    ((("FROM debian:bookworm", False), ("RUN a", True), ("COPY . /home", False)), False),
    ((), False),
])
def test_cache_hit_means_no_step_ran(tmp_path: Path, clean_env: None, steps: tuple[tuple[str, bool], ...], hit: bool) -> None:
    engine = FakeEngine(build_steps=steps)
    _, result = run_build(ROOT / "examples" / "requirements", settings_with(tmp_path), engine)
    assert result.cache_hit is hit and not result.pushed and result.digest == ""


def test_the_appendix_is_built_and_is_part_of_the_images_identity(tmp_path: Path, clean_env: None) -> None:
    settings = settings_with(tmp_path, appendix="RUN echo appended")
    repo = locked_repo(tmp_path / "repo", settings)
    engine = FakeEngine()
    run_build(repo, settings, engine)
    assert engine.dockerfiles[0].rstrip().endswith("# --appendix\nRUN echo appended")
    assert "org.r2env.appendix-digest" in engine.requests[0].labels
    run_build(repo, settings_with(tmp_path, appendix="RUN echo changed"), engine)
    assert len(engine.requests) == 2  # a different appendix is a different image: not "up to date"
    run_build(repo, settings_with(tmp_path, appendix="RUN echo changed"), engine)
    assert len(engine.requests) == 2


def test_an_appendix_goes_after_a_repositorys_own_dockerfile_without_touching_it(tmp_path: Path, clean_env: None) -> None:
    engine = FakeEngine()
    run_build(ROOT / "examples" / "dockerfile", settings_with(tmp_path, appendix="LABEL extra=1"), engine)
    (request,) = engine.requests
    assert request.dockerfile != ROOT / "examples" / "dockerfile" / "Dockerfile"
    assert engine.dockerfiles[0].startswith((ROOT / "examples" / "dockerfile" / "Dockerfile").read_text().rstrip("\n"))


def test_a_missing_cache_from_image_is_no_build_failure() -> None:
    output = """\
#4 importing cache manifest from 127.0.0.1:5000/team/app:latest
#4 ERROR: 127.0.0.1:5000/team/app:latest: not found
#5 [1/2] FROM docker.io/library/debian:bookworm
#6 [2/2] RUN true
#6 DONE 0.1s
"""
    events = list(parse_buildkit_progress(iter(output.splitlines())))
    assert events[0].message.startswith("no cache from 127.0.0.1:5000/team/app:latest: ")
    assert [e.kind for e in events[1:]] == [Kind.STEP, Kind.STEP]


# --- the command line: JSON result, GitHub files, exit codes ----------------------------------------------


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, clean_env: None) -> FakeEngine:
    engine = FakeEngine()
    monkeypatch.setattr(cli, "_connect", lambda settings: lambda: engine)
    return engine


def test_json_prints_only_the_result_on_stdout(fake: FakeEngine, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    target = tmp_path / "result.json"
    code = cli.main(["build", str(ROOT / "examples" / "requirements"), "--image-name", IMAGE, "--push", "--json", "--output-json", str(target)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    record = json.loads(captured.out)
    assert list(record)[:6] == ["image", "digest", "spec_digest", "cache_hit", "pushed", "duration_s"]
    assert record["image"] == IMAGE and record["digest"] == fake.registry[IMAGE] and record["pushed"] is True
    assert json.loads(target.read_text()) == record
    assert "[build" in captured.err and f"built image {IMAGE}" in captured.err


def test_github_outputs_and_summary_are_appended(fake: FakeEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    outputs, summary = tmp_path / "out", tmp_path / "summary.md"
    outputs.write_text("before=1\n")
    summary.write_text("# earlier step\n")
    monkeypatch.setenv("GITHUB_OUTPUT", str(outputs))
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    assert cli.main(["build", str(ROOT / "examples" / "requirements"), "--image-name", IMAGE, "--push"]) == 0
    lines = outputs.read_text().splitlines()
    assert lines[0] == "before=1" and [line.split("=", 1)[0] for line in lines[1:]] == list(ci.OUTPUT_KEYS)
    values = dict(line.split("=", 1) for line in lines[1:])
    assert values["image"] == IMAGE and values["digest"] == fake.registry[IMAGE]
    assert values["pushed"] == "true" and values["cache_hit"] == "false"
    text = summary.read_text()
    assert text.startswith("# earlier step\n### r2env build\n")
    assert f"| image | `{IMAGE}` |" in text and "| size | 376 MB |" in text and "not locked" in text


def test_the_summary_shows_what_changed_in_the_lock_since_the_previous_commit(tmp_path: Path, clean_env: None) -> None:
    settings = settings_with(tmp_path)
    repo = locked_repo(tmp_path / "repo", settings, "iniconfig==1.1.1")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "one"], check=True)
    locked_repo(repo, settings, "iniconfig==2.0.0")
    subprocess.run([*git, "commit", "-qam", "two"], check=True)
    _, result = run_build(repo, settings, FakeEngine())
    text = ci.step_summary(ci.result_record(result, 1.0), result, ci.previous_lock(repo, "r2env.lock"))
    assert "| upgraded | python | iniconfig | 1.1.1 | 2.0.0 |" in text
    assert "| packages | 2 Python, 8 Debian (locked) |" in text
    assert ci.previous_lock(tmp_path, "r2env.lock") is None  # no git history: "unknown", not an error


def test_output_json_is_written_whole_or_not_at_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "result.json"
    target.write_text("old\n")

    def broken(*_: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(ci.os, "replace", broken)
    with pytest.raises(OSError):
        ci.write_atomically(target, '{"new": true}\n')
    assert target.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["result.json"]
    with pytest.raises(UsageError):
        ci.write_atomically(tmp_path / "missing" / "result.json", "{}")


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


def test_exit_2_for_usage_errors_before_anything_is_fetched(fake: FakeEngine, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["build", "/nonexistent/repo", "--push"]) == 2
    assert one_error_line(capsys) == ("r2env: error: --push needs the image's registry name: "
                                      "give --image-name REGISTRY/NAME[:TAG], e.g. ghcr.io/myteam/analysis:v1")
    assert cli.main(["build", "/nonexistent/repo", "--image-name", "Bad/Name", "--push"]) == 2
    assert cli.main(["build", "/nonexistent/repo", "--image-name", IMAGE, "--tag=-bad"]) == 2
    assert fake.calls == []


def test_exit_5_for_a_failed_build(fake: FakeEngine, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def failing(request: Any) -> Iterator[BuildEvent]:
        raise BuildError("build step failed: RUN pip install", "fix the step and build again")
        yield  # a generator, like the real build

    monkeypatch.setattr(fake, "build", failing)
    assert cli.main(["build", str(ROOT / "examples" / "requirements"), "--image-name", IMAGE, "--push"]) == 5
    assert one_error_line(capsys).startswith("r2env: error: build step failed")
    assert not [call for call, _ in fake.calls if call == "push"]


def test_exit_8_for_a_stale_lock(fake: FakeEngine, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = locked_repo(tmp_path / "repo", settings_with(tmp_path))
    (repo / "requirements.txt").write_text("iniconfig==2.1.0\n")
    assert cli.main(["build", str(repo), "--server-requirement", SERVER, "--image-name", IMAGE, "--push"]) == 8
    assert "r2env.lock is stale: requirements.txt changed" in one_error_line(capsys)


def test_exit_9_for_a_refused_push_and_no_result_file(fake: FakeEngine, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fake.push_error = "pushing registry.example:5000/team/app:v1: the registry refused the credentials"
    target = tmp_path / "result.json"
    assert cli.main(["build", str(ROOT / "examples" / "requirements"), "--image-name", IMAGE, "--push", "--output-json", str(target)]) == 9
    assert one_error_line(capsys).startswith("r2env: error: pushing registry.example:5000/team/app:v1: the registry refused")
    assert not target.exists()


def test_exit_7_when_the_engine_is_unreachable(tmp_path: Path) -> None:
    # A subprocess, as a user runs it: docker-py leaves the socket of a failed connect for the garbage collector.
    import os
    import sys

    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock", "PYTHONPATH": str(ROOT)}
    completed = subprocess.run([sys.executable, "-m", "r2env.cli", "build", str(ROOT / "examples" / "requirements"),
                                "--image-name", IMAGE, "--push"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert completed.returncode == 7
    assert completed.stderr.strip().splitlines() == [
        f"r2env: error: cannot reach the Docker engine at unix://{tmp_path}/no-docker.sock (no such socket): "
        "start the Docker daemon (e.g. 'dockerd' or 'systemctl start docker') or set DOCKER_HOST"
    ]


def test_push_errors_name_the_failure_class() -> None:
    from r2env.engine import _push_error

    assert "refused the credentials" in str(_push_error("r.example/a:b", "unauthorized: authentication required"))
    assert "cannot reach the registry" in str(_push_error("r.example/a:b", 'Get "http://r.example/v2/": dial tcp: connection refused'))
    other = _push_error("r.example/a:b", "manifest invalid")
    assert isinstance(other, PushError) and other.exit_code == 9 and "manifest invalid" in str(other)


# --- the GitHub Action ------------------------------------------------------------------------------------

ACTION = YAML(typ="safe").load((ROOT / "action.yml").read_text())
GITHUB = {"GITHUB_WORKSPACE": "/w/repo", "GITHUB_SHA": "0123456789abcdef", "GITHUB_REPOSITORY": "Org/My-Repo"}


def test_action_yml_declares_exactly_the_inputs_the_step_reads() -> None:
    assert ACTION["runs"]["using"] == "composite"
    assert list(ACTION["inputs"]) == list(github_action.INPUTS)
    for name, (_, default) in github_action.INPUTS.items():
        assert str(ACTION["inputs"][name]["default"]) == default
    assert set(ACTION["outputs"]) >= {"image", "digest"}


def test_every_action_input_reaches_r2env_and_credentials_only_through_the_environment() -> None:
    step = next(step for step in ACTION["runs"]["steps"] if step.get("id") == "build")
    env = step["env"]
    consumed = {re.fullmatch(r"\$\{\{ inputs\.(\w+) \}\}", value).group(1) for value in env.values()}  # type: ignore[union-attr]
    assert consumed == set(github_action.INPUTS)
    assert env["R2ENV_REGISTRY_USERNAME"] == "${{ inputs.DOCKER_USERNAME }}"
    assert env["R2ENV_REGISTRY_PASSWORD"] == "${{ inputs.DOCKER_PASSWORD }}"
    assert "inputs." not in step["run"]  # no input is interpolated into the shell (script injection)
    read = {f"R2ENV_INPUT_{name}" for name in github_action.INPUTS} - {"R2ENV_INPUT_DOCKER_PASSWORD"}
    assert {key for key in env if key.startswith("R2ENV_INPUT_")} == read


def action_commands(**inputs: str) -> list[list[str]]:
    defaults = {name: default for name, (_, default) in github_action.INPUTS.items()}
    env = {f"R2ENV_INPUT_{name}": value for name, value in {**defaults, **inputs}.items()}
    return github_action.commands(github_action.inputs_from_env(env), GITHUB)


def test_action_defaults_push_the_sha_and_latest_tags_with_cache_and_registry_check() -> None:
    (build,) = action_commands(DOCKER_USERNAME="Alice")
    assert build == ["build", "/w/repo", "--image-name", "alice/my-repo:0123456789ab", "--tag", "latest",
                     "--cache-from", "alice/my-repo:latest", "--push", "--check-registry", "--json"]


def test_action_inputs_map_to_r2env_options() -> None:
    check, build = action_commands(
        IMAGE_NAME="team/app", DOCKER_REGISTRY="ghcr.io", NO_PUSH="true", ADDITIONAL_TAG="v1, stable",
        LATEST_TAG_OFF="yes", SUBDIR="env/", NOTEBOOK_USER="alice", APPENDIX="RUN echo hi", CHECK_LOCK="true",
        CHECK_REGISTRY="false", CACHE_FROM="ghcr.io/team/app:main",
    )
    assert check == ["lock", "--check", "/w/repo/env"]
    assert build == ["build", "/w/repo/env", "--image-name", "ghcr.io/team/app:0123456789ab", "--tag", "v1,stable",
                     "--cache-from", "ghcr.io/team/app:main", "--user-name", "alice", "--appendix", "RUN echo hi", "--json"]
    for command in (check, build):
        cli._parser().parse_args(command)  # the CLI accepts what the action runs


def test_an_image_name_with_a_registry_keeps_it_and_false_switches_are_off() -> None:
    (build,) = action_commands(IMAGE_NAME="quay.io/team/app", DOCKER_REGISTRY="ghcr.io", NO_PUSH="false", LATEST_TAG_OFF="false")
    assert build[3] == "quay.io/team/app:0123456789ab" and "--push" in build and build[5] == "latest"
