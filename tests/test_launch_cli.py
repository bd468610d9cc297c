"""`r2env launch`, `ps` and `stop` at the argv level: what fails before any engine is asked."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from r2env.cli import main

EXAMPLE = str(Path(__file__).resolve().parent.parent / "examples" / "requirements")


def test_only_launch_takes_a_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["build", EXAMPLE, "--", "ls"]) == 2
    assert "only `r2env launch` takes a command after --" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--volume", "no-such-folder:/data"], "no-such-folder:/data': "),
        (["--gpus", "many"], "--gpus 'many' is not a GPU request"),
        (["--env", "1=2"], "--env '1=2' is not KEY=VALUE"),
        (["--port", "70000"], "--port = 70000: is not a port"),
        (["--memory", "lots"], "--memory = 'lots': is not a size"),
    ],
)
def test_bad_launch_options_fail_before_building(flags: list[str], message: str, capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")  # an engine asked would be exit 7
    assert main(["launch", EXAMPLE, *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_editable_needs_a_local_repository(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    assert main(["launch", "https://example.org/repo.git", "--editable"]) == 2
    assert "--editable needs a local repository" in capsys.readouterr().err


def test_volume_and_env_repeat(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from r2env.cli import _parser, _settings

    arguments = _parser().parse_args(["launch", EXAMPLE, "--volume", f"{tmp_path}:/a", "--volume", f"{tmp_path}:/b:ro",
                                      "--env", "A=1,2", "--env", "B=3"])
    launch = _settings(arguments).launch
    assert launch.volumes == (f"{tmp_path}:/a", f"{tmp_path}:/b:ro")
    assert launch.env == ("A=1,2", "B=3")  # one item per flag: a comma stays in the value


# docker-py leaks the socket of a connection that failed inside its own constructor.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("argv", [["launch", EXAMPLE], ["ps"], ["stop", "abc"]])
def test_an_unreachable_engine_is_exit_7(argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    assert main(argv) == 7
    assert "cannot reach the Docker engine" in capsys.readouterr().err
    gc.collect()  # the leaked socket's warning is raised here, under this test's filter


def test_stop_needs_an_id_or_all(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stop"]) == 10
    assert "no container given" in capsys.readouterr().err


def test_launch_options_are_not_build_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["build", EXAMPLE, "--port", "8888"])
    assert "unrecognized arguments: --port" in capsys.readouterr().err
