"""Bad input at the edges (issue 17): option values checked against their grammar before any work, the renderer's
last line of defence against values on two lines, and error lines that echo no credential and no more than an
excerpt of the input."""

from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest

from r2env import pipeline
from r2env.cli import main
from r2env.config import load_config
from r2env.errors import SourceError, SpecError, UsageError
from r2env.lock import resolve
from r2env.redact import LINE_LIMIT, shorten, one_line, redact, safe_line
from r2env.render import render_dockerfile
from r2env.serve.app import error_body
from r2env.serve.config import load_serve_config
from r2env.spec import ImageSpec

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
HOSTILE = "x\nRUN touch /pwned"


@pytest.fixture
def isolated_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    return tmp_path


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


# --- redact ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("text", "shown", "hidden"),
    [
        ("https://user:s3cret@pypi.example.org/simple", "https://user:***@pypi.example.org/simple", "s3cret"),
        ("git clone failed for ssh+git://me:pw0rd@host/x.git", "ssh+git://me:***@host/x.git", "pw0rd"),
        ("GET /build/gh/a/b?token=abcdef123&x=1", "token=***&x=1", "abcdef123"),
        ("password=hunter2 in the config", "password=*** in", "hunter2"),
    ],
)
def test_redact_hides_passwords_and_tokens(text: str, shown: str, hidden: str) -> None:
    assert shown in redact(text)
    assert hidden not in redact(text)


def test_redact_keeps_urls_without_a_password() -> None:
    assert redact("https://pypi.org/simple and git@github.com:a/b.git") == "https://pypi.org/simple and git@github.com:a/b.git"


def test_excerpt_keeps_both_ends_and_counts_the_rest() -> None:
    text = "start-" + "x" * 100_000 + "-end"
    short = shorten(text, 100)
    assert len(short) < 140 and short.startswith("start-") and short.endswith("-end") and "characters]" in short


def test_one_line_shows_control_characters_as_escapes() -> None:
    assert one_line("a\nb\rc\x00d\u2028") == "a\\nb\\rc\\x00d\\u2028"


@pytest.mark.parametrize("bad", ["9" * 5000, " " * 100_000, "\t" * 100_000, "y" * 700_000, "\n" * 100_000],
                         ids=["digits", "spaces", "tabs", "letters", "newlines"])
def test_a_safe_line_is_one_short_line_whatever_the_input(bad: str) -> None:
    line = safe_line(f"requirements.txt line 1: {bad!r} is not a requirement: give NAME==VERSION")
    assert "\n" not in line and len(line) <= LINE_LIMIT + 40
    assert line.startswith("requirements.txt line 1:") and line.endswith("give NAME==VERSION")


@pytest.mark.parametrize("bad", ["x" * 1_000_000, "a://" * 250_000, "a://b:" * 150_000, "token=" * 150_000],
                         ids=["word", "schemes", "userinfos", "tokens"])
def test_a_safe_line_takes_linear_time(bad: str) -> None:
    import time

    started = time.monotonic()
    safe_line(bad)
    assert time.monotonic() - started < 1.0


def test_the_daemons_error_json_is_redacted_and_short() -> None:
    body = error_body(UsageError("https://u:topsecret@example.org/" + "a" * 100_000, "hint\nsecond line"))
    assert "topsecret" not in json.dumps(body) and len(body["error"]) < 2 * LINE_LIMIT and "\n" not in body["hint"]


# --- options checked before any work ------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"user_name": HOSTILE}, "--user-name = 'x\\nRUN touch /pwned': contains a newline"),
        ({"user_name": "a b"}, "--user-name = 'a b': is not a user name"),
        ({"user_name": "../../etc"}, "--user-name = '../../etc': is not a user name"),
        ({"user_name": "Jovyan"}, "is not a user name"),
        ({"user_name": "a" * 33}, "is not a user name"),
        ({"user_name": "root"}, "an account every Debian base already has"),
        ({"user_id": "99999999999"}, "--user-id = 99999999999: is not a uid"),
        ({"user_id": "0"}, "--user-id = 0: is not a uid"),
        ({"user_id": "65534"}, "--user-id = 65534: is not a uid"),
        ({"user_id": "9" * 5000}, "--user-id '999"),  # int() refuses over 4,300 digits
        ({"base_image": "a b"}, "--base-image = 'a b': is not an image reference"),
        ({"base_image": "Debian:bookworm"}, "is not an image reference"),
        ({"base_image": "debian:bookworm\nRUN x"}, "contains a newline"),
        ({"server_requirement": "not a req!!"}, "--server-requirement = 'not a req!!': is not a PEP 508 requirement"),
        ({"server_requirement": "jupyterlab\nRUN x"}, "contains a newline"),
        ({"cpus": "nan"}, "--cpus = nan: is not a finite number"),
        ({"cpus": "inf"}, "--cpus = inf: is not a finite number"),
        ({"cpus": "-1"}, "--cpus = -1.0: is not a CPU count"),
        ({"launch_timeout": "-1"}, "--launch-timeout = -1.0: is not a number of seconds above 0"),
        ({"launch_timeout": "0"}, "is not a number of seconds above 0"),
        ({"ip": "notanip"}, "--ip = 'notanip': is not an IP address"),
        ({"memory": "4g\n"}, "--memory = '4g\\n': contains a newline"),
        ({"memory": "lots"}, "--memory = 'lots': is not a size"),
        ({"memory": "1k"}, "below Docker's minimum"),
        ({"port": "70000"}, "--port = 70000: is not a port"),
        ({"cache_dir": "~nosuchuser-r2env/x"}, "--cache-dir = '~nosuchuser-r2env/x': names the home of a user"),
        ({"ref": "main\x00"}, "--ref = 'main\\x00': contains a newline or control character"),
        ({"image_name": "a b"}, "image name 'a b' is not a valid reference"),
        ({"image_name": "UPPER"}, "image name 'UPPER' is not a valid reference"),
        ({"image_name": "x::y"}, "image name 'x::y' is not a valid reference"),
    ],
)
def test_bad_option_values_are_refused_naming_the_flag(overrides: dict[str, str], message: str, isolated_cwd: Path) -> None:
    with pytest.raises(UsageError) as raised:
        load_config(None, overrides)
    assert message in str(raised.value)


@pytest.mark.parametrize("value", ["1.5g", "4g", "512m", "4gb", "100000000"])
def test_docker_memory_sizes_are_accepted(value: str, isolated_cwd: Path) -> None:
    assert load_config(None, {"memory": value}).launch.memory == value


@pytest.mark.parametrize("image", ["debian:bookworm", "localhost:5000/team/base:v1", "registry.example.org/x@sha256:" + "a" * 64])
def test_image_references_are_accepted_as_base(image: str, isolated_cwd: Path) -> None:
    assert load_config(None, {"base_image": image}).plan.base_image == image


@pytest.mark.parametrize(("line", "message"), [
    ("c.R2env.cpus = float('nan')", "r2env_config.py: c.R2env.cpus = nan: is not a finite number"),
    ("c.R2env.user_name = 'a b'", "r2env_config.py: c.R2env.user_name = 'a b': is not a user name"),
    ("c.R2env.user_id = 'abc'", "r2env_config.py: c.R2env.user_id = 'abc': expected an int"),
    ("c.R2env.cpu = 2", "r2env_config.py: c.R2env.cpu is not an option of r2env: did you mean c.R2env.cpus?"),
])
def test_a_bad_config_file_value_names_the_file_and_the_trait_not_a_flag(line: str, message: str, isolated_cwd: Path) -> None:
    (isolated_cwd / "r2env_config.py").write_text(line + "\n")
    with pytest.raises(UsageError) as raised:
        load_config(None, {})
    assert message in str(raised.value)
    assert "--" not in str(raised.value).split(":")[0]


def test_a_flag_overriding_a_config_file_value_is_named_as_the_flag(isolated_cwd: Path) -> None:
    (isolated_cwd / "r2env_config.py").write_text("c.R2env.cpus = 2.0\n")
    with pytest.raises(UsageError, match="--cpus = nan"):
        load_config(None, {"cpus": "nan"})


@pytest.mark.parametrize(("overrides", "message"), [
    ({"host": "not a host"}, "--host = 'not a host': is not an IP address or host name"),
    ({"host": "127.0.0.1\n"}, "contains a newline"),
    ({"state_dir": "/dev/null"}, "--state-dir = '/dev/null': is not a directory"),
    ({"state_dir": "/dev/null/x"}, "is inside /dev/null, which is not a directory"),
    ({"state_dir": "~nosuchuser-r2env"}, "names the home of a user"),
])
def test_bad_serve_options_are_refused(overrides: dict[str, str], message: str, isolated_cwd: Path) -> None:
    with pytest.raises(UsageError) as raised:
        load_serve_config(None, overrides, {})
    assert message in str(raised.value)


@pytest.mark.parametrize("host", ["localhost", "0.0.0.0", "::1", "binder.example.org"])
def test_serve_hosts_may_be_addresses_or_names(host: str, isolated_cwd: Path) -> None:
    assert load_serve_config(None, {"host": host, "state_dir": str(isolated_cwd / "state")}, {}).host == host


@pytest.mark.parametrize("argv", [
    ["launch", "SOURCE", "--cpus", "nan"],
    ["launch", "SOURCE", "--launch-timeout", "-1"],
    ["launch", "SOURCE", "--ip", "notanip"],
    ["launch", "SOURCE", "--memory", "4g\n"],
    ["serve", "--host", "not a host"],
    ["serve", "--state-dir", "/dev/null"],
    ["build", "SOURCE", "--image-name", "x::y"],
])
def test_bad_options_exit_2_before_the_engine_is_asked(argv: list[str], isolated_cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [str(EXAMPLES / "requirements") if word == "SOURCE" else word for word in argv]
    assert main(argv) == 2  # the engine is unreachable here: reaching it would exit 7
    assert "r2env: error: " in one_error_line(capsys)


# --- error lines ----------------------------------------------------------------------------------------------

def test_a_password_in_a_source_url_is_not_echoed(isolated_cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "https://user:pa55word@127.0.0.1:9/repo.git", "--cache-dir", str(isolated_cwd / "cache")]) == 3
    line = one_error_line(capsys)
    assert "pa55word" not in line and "https://user:***@127.0.0.1:9/repo.git" in line


def test_argparse_errors_are_one_redacted_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["plan", "x", "https://user:pa55word@host/extra"])
    assert exited.value.code == 2
    line = one_error_line(capsys)
    assert line.startswith("r2env: error: unrecognized arguments:") and "pa55word" not in line


@pytest.mark.parametrize("argv", [
    ["plan", "x" * 100_000],
    ["plan", "/tmp/" + "/".join(["d" * 200] * 30)],
    ["plan", "--config", "/tmp/" + "c" * 5000, "."],
    ["lock", "--diff", "/tmp/" + "a" * 5000, "/tmp/b"],
    ["dockerfile", ".", "--user-id", "9" * 5000],
    ["dockerfile", ".", "--ref", "r" * 700_000 + "\n"],
    ["plan", "~nosuchuser-r2env/repo"],
], ids=["long-source", "deep-source", "long-config", "long-diff", "long-number", "long-ref", "unknown-user"])
def test_long_or_odd_input_gives_one_short_line(argv: list[str], isolated_cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) != 0
    assert len(one_error_line(capsys)) <= LINE_LIMIT + 40


def test_uv_off_path_is_found_beside_r2env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert resolve.run_tool(["uv", "--version"], tmp_path).stdout.startswith("uv ")


def test_a_missing_uv_is_one_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(resolve, "_installed_uv", lambda: "")
    with pytest.raises(UsageError, match="uv is not installed or not on PATH"):
        resolve.run_tool(["uv", "export"], tmp_path)


def test_missing_local_source_variants_are_source_errors(tmp_path: Path) -> None:
    from r2env.source import fetch

    for source in ("~nosuchuser-r2env/x", str(tmp_path / ("n" * 300))):
        with pytest.raises(SourceError):
            fetch(source, "", tmp_path, lambda argv: subprocess.CompletedProcess(argv, 1, "", ""))


# --- the renderer's last line of defence ---------------------------------------------------------------------

def _planned_spec(isolated_cwd: Path) -> ImageSpec:
    spec = pipeline.plan_source(str(EXAMPLES / "requirements"), load_config(None, {})).spec
    return dataclasses.replace(spec, build_stages=(_stage(spec),))


def _stage(spec: ImageSpec) -> Any:
    from r2env.spec import BuildStage

    return BuildStage("installer", spec.steps[:2])


def _string_paths(value: object, path: tuple[object, ...] = ()) -> Iterator[tuple[object, ...]]:
    if isinstance(value, str):
        yield path
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for field in dataclasses.fields(value):
            yield from _string_paths(getattr(value, field.name), (*path, field.name))
    elif isinstance(value, tuple):
        for index, item in enumerate(value):
            yield from _string_paths(item, (*path, index))


def _with(value: Any, path: tuple[object, ...], new: str) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(head, int):
        return tuple(_with(item, rest, new) if index == head else item for index, item in enumerate(value))
    return dataclasses.replace(value, **{str(head): _with(getattr(value, str(head)), rest, new)})


def test_every_spec_string_with_a_newline_or_control_character_is_refused(isolated_cwd: Path) -> None:
    spec = _planned_spec(isolated_cwd)
    render_dockerfile(spec)  # the planned spec itself renders
    paths = list(_string_paths(spec))
    assert len(paths) > 50 and any("env" in p for p in paths) and any("script" in p for p in paths)
    for path in paths:
        for hostile in ("1.0\nRUN touch /pwned", "a\rb", "a\x00b", "a\x1bb", "a\u2028b"):
            with pytest.raises(SpecError) as raised:
                render_dockerfile(_with(spec, path, hostile))
            dotted = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")
            assert dotted in raised.value.message, (path, raised.value.message)


def test_a_script_may_continue_on_the_next_line_but_not_into_a_comment(isolated_cwd: Path) -> None:
    spec = _planned_spec(isolated_cwd)
    index = next(i for i, step in enumerate(spec.steps) if step.kind == "run")
    assert "echo a \\\n    b" in render_dockerfile(_with(spec, ("steps", index, "script"), "echo a \\\n    b"))
    with pytest.raises(SpecError):
        render_dockerfile(_with(spec, ("steps", index, "script"), "echo a \\\n# comment\nRUN touch /pwned"))


def test_a_newline_in_the_user_name_never_reaches_the_dockerfile(isolated_cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dockerfile", str(EXAMPLES / "requirements"), "--user-name", "jovyan\nRUN touch /pwned"]) == 2
    captured = capsys.readouterr()
    assert "RUN touch" not in captured.out and "--user-name" in captured.err
