"""load_serve_config: `r2env serve`'s options (c.Serve.* < --flags; the token only from the config file or
R2ENV_SERVE_TOKEN), checked at start so a mistake stops the daemon with a UsageError instead of misbehaving later."""

from __future__ import annotations

from pathlib import Path

import pytest

from r2env.cli import main
from r2env.errors import UsageError
from r2env.serve.config import load_serve_config
from r2env.serve.sources import SourcePolicy


@pytest.fixture(autouse=True)
def isolated_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The config is read from ./r2env_config.py: run every test in an empty directory."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_defaults() -> None:
    settings = load_serve_config(None, {}, {})
    assert (settings.host, settings.port, settings.token) == ("127.0.0.1", 8585, "")
    assert settings.state_dir == Path("~/.local/share/r2env/serve").expanduser()
    assert (settings.max_builds, settings.max_launches) == (2, 10)
    assert (settings.build_timeout, settings.resolve_timeout, settings.cull_idle_timeout) == (3600.0, 300.0, 3600.0)
    assert settings.sources == SourcePolicy(("https",), ("github.com", "gitlab.com", "bitbucket.org", "codeberg.org"), False)


def test_flags_override_the_config_file(isolated_cwd: Path) -> None:
    (isolated_cwd / "r2env_config.py").write_text("c.Serve.port = 9000\nc.Serve.max_builds = 4\n")
    settings = load_serve_config(None, {"port": "9100", "allowed_schemes": "https, ssh"}, {})
    assert (settings.port, settings.max_builds) == (9100, 4)
    assert settings.sources.schemes == ("https", "ssh")


def test_a_config_file_sets_the_allowed_hosts_in_normal_form(tmp_path: Path) -> None:
    config = tmp_path / "site" / "serve_config.py"
    config.parent.mkdir()
    config.write_text("c.Serve.allowed_hosts = ['git.example.org', ' *.Example.COM ', '']\nc.Serve.allow_local_repos = True\n")
    sources = load_serve_config(str(config), {}, {}).sources
    assert sources.hosts == ("git.example.org", "*.example.com")
    assert sources.allow_local is True
    assert sources.allows_host("a.example.com") and not sources.allows_host("github.com")


@pytest.mark.parametrize(
    ("overrides", "message", "hint"),
    [
        ({"max_builds": "0"}, "--max-builds = 0: is not allowed", "1 or more"),
        ({"max_launches": "-1"}, "--max-launches = -1: is not allowed", "1 or more"),
        ({"build_timeout": "0"}, "--build-timeout = 0.0: is not allowed", "above 0"),
        ({"resolve_timeout": "-5"}, "--resolve-timeout = -5.0: is not allowed", "above 0"),
        # NaN compares false with everything: it must not slip past "<= 0" (a build would time out at once).
        ({"build_timeout": "nan"}, "--build-timeout = nan: is not a finite number", "give a number"),
        ({"resolve_timeout": "nan"}, "--resolve-timeout = nan: is not a finite number", "give a number"),
        ({"port": "65536"}, "--port = 65536: is not a port", "1-65535"),
        ({"port": "-1"}, "--port = -1: is not a port", "1-65535"),
        ({"port": "http"}, "--port 'http'", "r2env --help"),
        ({"max_builds": "two"}, "--max-builds 'two'", "r2env --help"),
        ({"allowed_origins": "binder.example.org"}, "allowed_origins: 'binder.example.org' is not a web origin", "scheme://host[:port]"),
        ({"allowed_origins": "https://binder.example.org/path"}, "is not a web origin", "https://binder.example.org, or *"),
    ],
)
def test_invalid_values_are_usage_errors_that_say_what_to_give(overrides: dict[str, str], message: str, hint: str) -> None:
    with pytest.raises(UsageError) as raised:
        load_serve_config(None, overrides, {})
    assert message in raised.value.message
    assert hint in raised.value.hint


def test_an_invalid_value_in_the_config_file_is_a_usage_error_too(isolated_cwd: Path) -> None:
    (isolated_cwd / "r2env_config.py").write_text("c.Serve.max_launches = 0\n")
    with pytest.raises(UsageError, match=r"r2env_config.py: c.Serve.max_launches = 0: is not allowed"):
        load_serve_config(None, {}, {})


def test_port_zero_means_any_free_port_and_a_negative_cull_timeout_never_culls() -> None:
    settings = load_serve_config(None, {"port": "0", "cull_idle_timeout": "-1"}, {})
    assert (settings.port, settings.cull_idle_timeout) == (0, 0.0)


FROM_ENV = "from-env-" + "e" * 32
FROM_CONFIG = "from-config-" + "c" * 32


@pytest.mark.parametrize(
    ("config_text", "environ", "token"),
    [
        ("", {}, ""),
        ("", {"R2ENV_SERVE_TOKEN": FROM_ENV}, FROM_ENV),
        (f"c.Serve.token = '{FROM_CONFIG}'\n", {"R2ENV_SERVE_TOKEN": FROM_ENV}, FROM_CONFIG),
        (f"c.Serve.token = '{FROM_CONFIG}'\n", {}, FROM_CONFIG),
    ],
)
def test_the_token_comes_from_the_config_file_else_the_environment(
    isolated_cwd: Path, config_text: str, environ: dict[str, str], token: str
) -> None:
    (isolated_cwd / "r2env_config.py").write_text(config_text)
    assert load_serve_config(None, {}, environ).token == token


def test_serve_help_lists_the_options_but_no_token_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["serve", "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--host", "--port", "--state-dir", "--max-builds", "--build-timeout", "--resolve-timeout", "--max-launches",
                 "--cull-idle-timeout", "--allowed-schemes", "--allowed-hosts", "--allow-local-repos", "--new-token", "--config"):
        assert flag in out
    assert "--token" not in out.replace("--new-token", "")
    assert "c.Serve.<name>" in out


def test_a_token_on_the_command_line_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["serve", "--token", "s3cret"])
    assert exited.value.code == 2
    assert "unrecognized arguments" in capsys.readouterr().err


def test_an_invalid_option_stops_serve_before_it_starts(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--max-builds", "0"]) == 2
    assert "--max-builds = 0: is not allowed" in capsys.readouterr().err


def test_allowed_origins_are_kept_without_a_trailing_slash() -> None:
    settings = load_serve_config(None, {"allowed_origins": "https://binder.example.org/,http://127.0.0.1:8080,*"}, {})
    assert settings.allowed_origins == ("https://binder.example.org", "http://127.0.0.1:8080", "*")


@pytest.mark.parametrize(
    ("config_text", "environ", "source"),
    [
        ("c.Serve.token = 'hunter2'\n", {}, "c.Serve.token has 7 characters"),
        ("", {"R2ENV_SERVE_TOKEN": "x" * 31}, "R2ENV_SERVE_TOKEN has 31 characters"),
    ],
)
def test_a_configured_token_shorter_than_32_characters_is_refused(
    isolated_cwd: Path, config_text: str, environ: dict[str, str], source: str
) -> None:
    (isolated_cwd / "r2env_config.py").write_text(config_text)
    with pytest.raises(UsageError) as refused:
        load_serve_config(None, {}, environ)
    assert refused.value.message == f"{source}; a configured token needs at least 32"
    assert "secrets.token_urlsafe(32)" in refused.value.hint
    assert "hunter2" not in str(refused.value)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"max_queued": "0"}, "--max-queued = 0: is not allowed"),
        ({"max_connections": "0"}, "--max-connections = 0: is not allowed"),
        ({"max_client_connections": "-1"}, "--max-client-connections = -1: is not allowed"),
        ({"request_timeout": "nan"}, "--request-timeout = nan: is not a finite number"),
        ({"max_age": "-5"}, "--max-age = -5.0: is not allowed"),
        ({"launch_cpus": "inf"}, "--launch-cpus = inf: is not a finite number"),
        ({"launch_pids": "-1"}, "--launch-pids = -1: is not allowed"),
        ({"build_cpus": "nan"}, "--build-cpus = nan: is not a finite number"),
        ({"build_cpus": "-2"}, "--build-cpus = -2.0: is not allowed"),
        ({"build_pids": "-1"}, "--build-pids = -1: is not allowed"),
        ({"launch_memory": "4 GB"}, "--launch-memory = '4 GB': is not a size"),
        ({"build_memory": "0"}, "--build-memory = '0': is not a size"),
        ({"max_repo_size": "lots"}, "--max-repo-size = 'lots': is not a size"),
    ],
)
def test_bad_limits_stop_the_daemon_before_it_starts(isolated_cwd: Path, overrides: dict[str, str], message: str) -> None:
    with pytest.raises(UsageError) as refused:
        load_serve_config(None, overrides, {})
    assert refused.value.message == message


def test_the_daemons_limits_have_defaults_and_may_be_turned_off(isolated_cwd: Path) -> None:
    settings = load_serve_config(None, {}, {})
    assert (settings.launch_memory, settings.launch_cpus, settings.launch_pids, settings.build_memory) == ("4g", 1.0, 1024, "4g")
    assert (settings.build_cpus, settings.build_pids) == (2.0, 4096)
    assert (settings.max_age, settings.max_queued, settings.max_repo_size) == (8 * 3600.0, 20, 1 << 30)
    assert (settings.max_connections, settings.max_client_connections, settings.request_timeout) == (512, 64, 20.0)
    off = load_serve_config(None, {"launch_memory": "", "launch_cpus": "0", "launch_pids": "0", "build_memory": "",
                                   "max_age": "0", "max_repo_size": ""}, {})
    assert (off.launch_memory, off.launch_cpus, off.launch_pids, off.build_memory, off.max_age, off.max_repo_size) == ("", 0.0, 0, "", 0.0, 0)
    assert load_serve_config(None, {"max_repo_size": "1.5m"}, {}).max_repo_size == 1572864
