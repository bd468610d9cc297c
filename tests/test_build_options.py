"""repo2docker's build options: --target-repo-dir, --subdir, --label, --build-arg, and -e/--env, at argv level
(exit code, one line on stderr), in the plan and the rendered Dockerfile, and on the fake engine's build request."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from r2env import cli
from r2env.cli import main
from r2env.config import load_config
from r2env.engine import BuildRequest, DockerEngine, _Cli
from r2env.errors import UsageError
from r2env.inspect import inspect
from r2env.lock.locking import current_inputs
from r2env.options import check_repo_dir, check_subdir, parse_build_args, parse_labels
from r2env.pipeline import build_labels, mask, plan_source
from r2env.render import render_dockerfile
from r2env.repo import DiskRepo

from fake_engine import BOOKWORM_ID, FakeEngine

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
PARITY = Path(__file__).resolve().parent.parent / "integration" / "parity"
GIT = ["git", "-c", "user.email=t@r2env.invalid", "-c", "user.name=t", "-c", "init.defaultBranch=main"]


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no ./r2env_config.py
    for variable in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "SSL_CERT_FILE", "PIP_CERT", "REQUESTS_CA_BUNDLE"):
        monkeypatch.delenv(variable, raising=False)


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    return lines[0]


def monorepo(root: Path) -> Path:
    """A repository whose root is a Dockerfile build and whose analysis/ folder is a requirements.txt one."""
    (root / "analysis").mkdir(parents=True)
    (root / "Dockerfile").write_text("FROM debian:bookworm\n")
    (root / "analysis" / "requirements.txt").write_text("tabulate==0.9.0\n")
    (root / "analysis" / "start").write_text("#!/bin/sh\nexec \"$@\"\n")
    return root


# --- --target-repo-dir -------------------------------------------------------------------------------


def test_target_repo_dir_moves_the_repository_but_not_home(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--json", str(PARITY / "target-repo-dir"), "--target-repo-dir", "/srv/repo"]) == 0
    spec = json.loads(capsys.readouterr().out)
    env = dict(spec["env"])
    assert spec["repo_dir"] == env["REPO_DIR"] == "/srv/repo"
    assert env["HOME"] == "/home/jovyan"
    start_env = [dict(step["env"]) for step in spec["steps"] if step["kind"] == "env" and step["buildpack"] == "start"]
    assert start_env == [{"R2ENV_START": "/srv/repo/start"}]


def test_target_repo_dir_reaches_workdir_copies_and_the_user_setup(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dockerfile", str(PARITY / "target-repo-dir"), "--target-repo-dir", "/srv/repo"]) == 0
    text = capsys.readouterr().out
    assert "WORKDIR /srv/repo\n" in text
    assert "COPY --chown=1000:1000 . /srv/repo/\n" in text
    assert 'COPY --chown=1000:1000 ["requirements.txt", "/srv/repo/requirements.txt"]' in text
    assert "install -d -o 1000 -g 1000 /srv/venv /srv/repo" in text  # created and owned by the user
    # The home stays (HOME, its .local/bin on PATH, useradd --create-home); nothing else goes there.
    assert 'HOME="/home/jovyan"' in text and "useradd --no-log-init --create-home" in text
    assert "/home/jovyan" not in text.replace('HOME="/home/jovyan"', "").replace("/home/jovyan/.local/bin", "")


def test_target_repo_dir_changes_the_spec_digest_but_not_the_lock_inputs(tmp_path: Path) -> None:
    default = plan_source(str(EXAMPLES / "requirements"), load_config(None, {"cache_dir": str(tmp_path)}))
    moved = plan_source(str(EXAMPLES / "requirements"), load_config(None, {"cache_dir": str(tmp_path), "target_repo_dir": "/srv/repo"}))
    assert default.spec.repo_dir == "/home/jovyan" and moved.spec.repo_dir == "/srv/repo"
    assert default.spec.digest != moved.spec.digest
    facts = inspect(DiskRepo(EXAMPLES / "requirements"))
    # Where the files go does not change which packages resolve (like --user-name): a lock stays fresh.
    default_options = load_config(None, {"cache_dir": str(tmp_path)}).plan
    moved_options = load_config(None, {"cache_dir": str(tmp_path), "target_repo_dir": "/srv/repo"}).plan
    assert current_inputs(EXAMPLES / "requirements", facts, moved_options) == current_inputs(EXAMPLES / "requirements", facts, default_options)


def test_a_dockerfile_repository_gets_repo_dir_as_a_build_arg_only_when_asked(tmp_path: Path) -> None:
    plain = plan_source(str(EXAMPLES / "dockerfile"), load_config(None, {"cache_dir": str(tmp_path)}))
    moved = plan_source(str(EXAMPLES / "dockerfile"), load_config(None, {"cache_dir": str(tmp_path), "target_repo_dir": "/srv/repo"}))
    assert "REPO_DIR" not in dict(plain.spec.build_args)
    assert dict(moved.spec.build_args)["REPO_DIR"] == "/srv/repo"


@pytest.mark.parametrize("path", ["/srv/repo", "/opt/project", "/work", "/home/other", "/usr/local/src/repo", "/var/lib/app"])
def test_repo_dirs_that_can_hold_a_repository(path: str) -> None:
    assert check_repo_dir(path, "/srv/venv") == path


@pytest.mark.parametrize(("path", "rule"), [
    ("srv/repo", "absolute"), ("/srv/repo/", "normalised"), ("/srv//repo", "normalised"), ("/srv/../etc", "normalised"),
    ("/srv/re po", "plain characters"), ("/srv/$HOME", "plain characters"), ("/srv/repo\n", "plain characters"),
    ("/", "system directory"), ("/usr", "system directory"), ("/etc", "system directory"), ("/bin", "system directory"),
    ("/etc/myrepo", "system directory"), ("/proc/repo", "system directory"), ("/root/repo", "system directory"),
    ("/usr/bin", "system directory"), ("/usr/local/bin", "system directory"), ("/var/log", "system directory"),
    ("/home", "system directory"), ("/srv", "system directory"), ("/srv/venv", "Python environment"),
    ("/srv/venv/lib", "Python environment"),
])
def test_repo_dirs_that_are_refused_name_the_rule(path: str, rule: str) -> None:
    with pytest.raises(UsageError, match="absolute, normalised") as raised:
        check_repo_dir(path, "/srv/venv")
    assert rule in raised.value.message


@pytest.mark.parametrize("path", ["/usr", "relative", "/srv/repo\x1b"])
def test_a_refused_target_repo_dir_exits_2_with_one_line(path: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", str(EXAMPLES / "requirements"), "--target-repo-dir", path]) == 2
    assert one_error_line(capsys).startswith("r2env: error: --target-repo-dir ")


def test_target_repo_dir_is_settable_in_the_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "r2env_config.py").write_text('c.R2env.target_repo_dir = "/srv/repo"\nc.R2env.subdir = "analysis"\n'
                                              'c.R2env.label = ["org.example.a=1"]\nc.R2env.build_arg = ["K=V"]\n')
    settings = load_config(None, {})
    assert settings.plan.target_repo_dir == "/srv/repo" and settings.subdir == "analysis"
    assert settings.labels == (("org.example.a", "1"),) and settings.build_args == (("K", "V"),)


# --- --subdir ------------------------------------------------------------------------------------------


def test_subdir_is_the_repository_root_for_detection(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = monorepo(tmp_path / "mono")
    assert main(["plan", "--json", str(repo), "--subdir", "analysis"]) == 0
    spec = json.loads(capsys.readouterr().out)
    assert spec["buildpacks"][0] == "python" and spec["dockerfile"] == ""
    assert main(["plan", "--json", str(repo)]) == 0
    assert json.loads(capsys.readouterr().out)["dockerfile"] == "Dockerfile"


def test_subdir_of_a_git_checkout_at_a_ref(tmp_path: Path) -> None:
    repo = monorepo(tmp_path / "mono")
    subprocess.run([*GIT, "init", "-q", str(repo)], check=True)
    subprocess.run([*GIT, "-C", str(repo), "add", "-A"], check=True)
    subprocess.run([*GIT, "-C", str(repo), "commit", "-qm", "one"], check=True)
    commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    planned = plan_source(f"file://{repo}", load_config(None, {"cache_dir": str(tmp_path / "cache"), "ref": "main", "subdir": "analysis"}))
    assert planned.checkout.path.name == "analysis" and planned.checkout.subdir == "analysis"
    assert (planned.checkout.url, planned.checkout.commit) == (f"file://{repo}", commit)
    labels = build_labels(planned)
    assert labels["org.r2env.source.url"] == f"file://{repo}" and labels["org.r2env.source.commit"] == commit
    assert labels["org.r2env.source.subdir"] == "analysis"


@pytest.mark.parametrize(("subdir", "code", "text"), [
    ("nowhere", 3, "--subdir nowhere: no such folder in "),
    ("/abs", 2, "--subdir /abs is an absolute path"),
    ("analysis/../..", 2, "--subdir analysis/../.. contains .."),
    ("..", 2, "--subdir .. contains .."),
    ("out", 3, "--subdir out leads outside the repository"),
    ("analysis/requirements.txt", 3, "no such folder"),
])
def test_a_bad_subdir_is_one_line(subdir: str, code: int, text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = monorepo(tmp_path / "mono")
    (tmp_path / "elsewhere").mkdir()
    (repo / "out").symlink_to(tmp_path / "elsewhere")
    assert main(["plan", str(repo), "--subdir", subdir]) == code
    assert text in one_error_line(capsys)


def test_a_link_inside_the_repository_is_a_valid_subdir(tmp_path: Path) -> None:
    repo = monorepo(tmp_path / "mono")
    (repo / "current").symlink_to("analysis")
    planned = plan_source(str(repo), load_config(None, {"cache_dir": str(tmp_path / "cache"), "subdir": "current"}))
    assert planned.checkout.path == (repo / "analysis").resolve()


def test_subdir_is_normalised() -> None:
    assert check_subdir("./analysis//data/") == "analysis/data"
    assert check_subdir("") == ""


def test_build_names_the_image_after_the_subdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    repo = monorepo(tmp_path / "mono")
    fake = FakeEngine(images={"debian:bookworm": BOOKWORM_ID})
    monkeypatch.setattr(cli, "_connect", lambda settings: lambda: fake)
    assert main(["build", str(repo), "--subdir", "analysis"]) == 0
    (request,) = fake.requests
    assert request.tag == "r2env-mono-analysis" and request.context == (repo / "analysis").resolve()
    assert request.labels["org.r2env.source.subdir"] == "analysis"


# --- --label --------------------------------------------------------------------------------------------


def test_labels_reach_the_build_request_and_not_the_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeEngine(images={"debian:bookworm": BOOKWORM_ID})
    monkeypatch.setattr(cli, "_connect", lambda settings: lambda: fake)
    source = str(EXAMPLES / "requirements")
    assert main(["build", source, "--label", "org.example.team=data", "--label", "empty=", "--label", "eq=a=b"]) == 0
    (request,) = fake.requests
    assert request.labels["org.example.team"] == "data" and request.labels["empty"] == "" and request.labels["eq"] == "a=b"
    plain = plan_source(source, load_config(None, {}))
    assert request.labels["org.r2env.spec-digest"] == plain.spec.digest  # labels are not part of the spec
    assert "org.example.team" not in render_dockerfile(plain.spec)


@pytest.mark.parametrize(("label", "text"), [
    ("novalue", "is not KEY=VALUE"), ("=value", "is not KEY=VALUE"), ("a=b\nc", "newline"),
    ("org.r2env.spec-digest=x", "r2env's own"), ("bad key=x", "a label key is"),
])
def test_a_malformed_label_exits_2_with_one_line(label: str, text: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["build", str(EXAMPLES / "requirements"), "--label", label]) == 2
    assert text in one_error_line(capsys)


def test_plan_takes_no_label() -> None:
    with pytest.raises(SystemExit):
        main(["plan", str(EXAMPLES / "requirements"), "--label", "a=b"])


def test_a_later_label_wins() -> None:
    assert parse_labels(["a=1", "b=2", "a=3"]) == (("a", "3"), ("b", "2"))


def test_a_changed_label_rebuilds_a_locked_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from r2env import pipeline

    settings = load_config(None, {"cache_dir": str(tmp_path), "label": ["org.example.a=2"]})
    planned = plan_source(str(EXAMPLES / "requirements"), settings)
    labels = build_labels(planned, settings.labels)
    fake = FakeEngine(images={"img": "sha256:" + "1" * 64}, labels={"img": {**labels, "org.example.a": "1"}})
    assert not pipeline._up_to_date(fake, "img", labels)
    fake.labels["img"]["org.example.a"] = "2"
    assert pipeline._up_to_date(fake, "img", labels)


# --- --build-arg -----------------------------------------------------------------------------------------


def test_build_args_reach_a_dockerfile_build_and_are_not_printed(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeEngine(images={"debian:bookworm": BOOKWORM_ID})
    monkeypatch.setattr(cli, "_connect", lambda settings: lambda: fake)
    monkeypatch.setenv("R2ENV_TEST_TOKEN", "from-the-environment")
    assert main(["build", str(EXAMPLES / "dockerfile"), "--build-arg", "GREETING=hello", "--build-arg", "R2ENV_TEST_TOKEN"]) == 0
    (request,) = fake.requests
    assert dict(request.build_args) == {"NB_USER": "jovyan", "NB_UID": "1000", "GREETING": "hello", "R2ENV_TEST_TOKEN": "from-the-environment"}
    captured = capsys.readouterr()
    assert "from-the-environment" not in captured.out + captured.err


def test_build_args_do_not_change_the_spec_digest_and_skip_the_up_to_date_shortcut(tmp_path: Path) -> None:
    with_arg = load_config(None, {"cache_dir": str(tmp_path), "build_arg": ["A=1"]})
    assert plan_source(str(EXAMPLES / "requirements"), with_arg).spec.digest == \
        plan_source(str(EXAMPLES / "requirements"), load_config(None, {"cache_dir": str(tmp_path)})).spec.digest


@pytest.mark.parametrize(("argument", "text"), [
    ("NOT_SET_ANYWHERE", "is not set in this environment"), ("bad-name=1", "a build arg name is"), ("=1", "a build arg name is"),
    ("NB_USER=x", "set by r2env from --user-name"), ("REPO_DIR=/x", "use --target-repo-dir"), ("A=b\nc", "newline"),
])
def test_a_malformed_build_arg_exits_2_with_one_line(argument: str, text: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["build", str(EXAMPLES / "requirements"), "--build-arg", argument]) == 2
    assert text in one_error_line(capsys)


def test_a_build_arg_by_name_takes_the_given_environment() -> None:
    assert parse_build_args(["A", "B=2"], {"A": "1"}) == (("A", "1"), ("B", "2"))


def test_buildkit_cli_gets_build_arg_values_through_its_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, object] = {}

    def stream(self: DockerEngine, argv: list[str], env: dict[str, str]) -> object:
        seen.update(argv=argv, env=env)
        return iter(())

    monkeypatch.setattr(DockerEngine, "_stream_buildkit", stream)
    monkeypatch.setenv("HTTP_PROXY", "http://user:pw@proxy:3128")
    engine = DockerEngine(None, None)  # the CLI environment is read here, after monkeypatching
    request = BuildRequest(context=tmp_path, dockerfile=tmp_path / "Dockerfile", tag="t", labels={},
                           build_args={"TOKEN": "s3cret", "HTTP_PROXY": "http://user:pw@proxy:3128", "DOCKER_HOST_ARG": "x", "weird-name": "v"},
                           secrets={})
    list(engine._build_buildkit(_Cli("/usr/bin/docker", "buildkit"), request))
    argv, env = seen["argv"], seen["env"]
    assert isinstance(argv, list) and isinstance(env, dict)
    assert "--build-arg=TOKEN" in argv and env["TOKEN"] == "s3cret"
    assert "--build-arg=HTTP_PROXY" in argv  # the same value the CLI already has: by name
    assert "--build-arg=DOCKER_HOST_ARG=x" in argv and "DOCKER_HOST_ARG" not in env  # a name the CLI reads itself
    assert "--build-arg=weird-name=v" in argv
    assert not any("s3cret" in word or "pw@" in word for word in argv)


def _buildkit_argv_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, build_args: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """The docker CLI's argv and environment for a build: a fake runner in place of the CLI."""
    seen: dict[str, Any] = {}

    def stream(self: DockerEngine, argv: list[str], env: dict[str, str]) -> object:
        seen.update(argv=argv, env=env)
        return iter(())

    monkeypatch.setattr(DockerEngine, "_stream_buildkit", stream)
    engine = DockerEngine(None, None)  # the CLI environment is read here, after monkeypatching
    request = BuildRequest(context=tmp_path, dockerfile=tmp_path / "Dockerfile", tag="t", labels={}, build_args=build_args, secrets={})
    list(engine._build_buildkit(_Cli("/usr/bin/docker", "buildkit"), request))
    return seen["argv"], seen["env"]


@pytest.mark.parametrize("docker_host", [None, "unix:///var/run/docker.sock"])
def test_a_proxy_build_arg_with_credentials_never_reaches_argv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, docker_host: str | None) -> None:
    # issue 17: `ps` shows every process's argv to every user of the machine.
    monkeypatch.setenv("HTTPS_PROXY", "http://env-user:ENV-PASSWORD@proxy.example:3128")
    monkeypatch.delenv("DOCKER_CONTEXT", raising=False)
    if docker_host:
        monkeypatch.setenv("DOCKER_HOST", docker_host)
    else:
        monkeypatch.delenv("DOCKER_HOST", raising=False)
    other = "http://arg-user:ARG-PASSWORD@other-proxy.example:3128"
    argv, env = _buildkit_argv_env(monkeypatch, tmp_path, {"HTTPS_PROXY": os.environ["HTTPS_PROXY"], "http_proxy": other})
    assert "--build-arg=HTTPS_PROXY" in argv and "--build-arg=http_proxy" in argv
    assert env["http_proxy"] == other  # a unix socket: the CLI itself uses no proxy
    assert not any("PASSWORD" in word for word in argv)


def test_a_differing_proxy_with_credentials_for_a_tcp_daemon_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", "tcp://docker.example:2376")
    monkeypatch.delenv("HTTPS_PROXY", raising=False)
    with pytest.raises(UsageError, match="--build-arg HTTPS_PROXY: a proxy with credentials"):
        _buildkit_argv_env(monkeypatch, tmp_path, {"HTTPS_PROXY": "http://u:SECRET@proxy.example:3128"})
    # Without credentials it is only an address: on the command line, the CLI's own proxy left alone.
    argv, env = _buildkit_argv_env(monkeypatch, tmp_path, {"HTTPS_PROXY": "http://proxy.example:3128"})
    assert "--build-arg=HTTPS_PROXY=http://proxy.example:3128" in argv and "HTTPS_PROXY" not in env


# --- -e/--env -----------------------------------------------------------------------------------------------


def test_build_refuses_env_and_points_to_launch(capsys: pytest.CaptureFixture[str]) -> None:
    for flag in ("-e", "--env"):
        assert main(["build", str(EXAMPLES / "requirements"), flag, "A=1"]) == 2
        line = one_error_line(capsys)
        assert "runs no container" in line and "r2env launch -e" in line


def test_launch_takes_e_and_E_as_repo2docker() -> None:
    arguments = cli._parser().parse_args(["launch", "x", "-e", "A=1", "--env", "B", "-E"])
    assert getattr(arguments, "trait:env") == ["A=1", "B"] and getattr(arguments, "trait:editable") == "true"



def test_the_build_log_hides_build_arg_values(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # BuildKit names a step with its build args substituted.
    fake = FakeEngine(images={"debian:bookworm": BOOKWORM_ID}, build_steps=(('RUN printf %s "s3cret-value" | sha256sum', False),))
    monkeypatch.setattr(cli, "_connect", lambda settings: lambda: fake)
    assert main(["build", str(EXAMPLES / "requirements"), "--build-arg", "TOKEN=s3cret-value", "--build-arg", "LEVEL=1"]) == 0
    out = capsys.readouterr().out
    assert "s3cret-value" not in out and 'RUN printf %s "***" | sha256sum' in out


def test_mask_leaves_short_values_alone() -> None:
    assert mask("a=1 token=abcdef abcdefgh", ("1", "abcdef", "abcdefgh")) == "a=1 token=*** ***"


def test_the_daemon_refuses_a_subdir_before_touching_the_engine(tmp_path: Path) -> None:
    from r2env.serve.config import load_serve_config
    from r2env.serve.daemon import serve

    settings = load_config(None, {"cache_dir": str(tmp_path), "subdir": "analysis"})
    with pytest.raises(UsageError, match="c.R2env.subdir = 'analysis' does not apply to the daemon"):
        serve(settings, load_serve_config(None, {"state_dir": str(tmp_path / "state")}, {}))
