"""load_config: defaults < r2env_config.py < command line, turned into plain Settings; mistakes are UsageErrors."""

from __future__ import annotations

from pathlib import Path

import pytest

from r2env.build_secrets import FetchSettings
from r2env.config import load_config
from r2env.errors import UsageError
from r2env.plan import DEFAULT_SERVER, PlanOptions
from r2env.select import DEFAULT_PRIORITY


@pytest.fixture(autouse=True)
def isolated_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """load_config reads ./r2env_config.py: run every test in an empty directory."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_defaults() -> None:
    settings = load_config(None, {})
    assert settings.plan == PlanOptions("jovyan", 1000, "", "bookworm", DEFAULT_SERVER)
    assert settings.buildpacks == DEFAULT_PRIORITY
    assert settings.fetch == FetchSettings()
    assert (settings.image_name, settings.ref, settings.mirror, settings.no_cache, settings.builder) == ("", "", "", False, "auto")
    assert settings.cache_dir == Path("~/.cache/r2env").expanduser()


def test_config_file_in_the_working_directory_is_loaded(isolated_cwd: Path) -> None:
    (isolated_cwd / "r2env_config.py").write_text("c.R2env.user_id = 1234\nc.R2env.buildpacks = ['python']\n")
    settings = load_config(None, {})
    assert settings.plan.user_id == 1234
    assert settings.buildpacks == ("python",)


def test_explicit_config_file_is_loaded(tmp_path: Path) -> None:
    config = tmp_path / "elsewhere" / "site.py"
    config.parent.mkdir()
    config.write_text("c.R2env.user_name = 'alice'\n")
    assert load_config(str(config), {}).plan.user_name == "alice"


def test_command_line_beats_the_config_file(isolated_cwd: Path) -> None:
    (isolated_cwd / "r2env_config.py").write_text("c.R2env.user_id = 1234\nc.R2env.index_url = 'https://file.example'\n")
    settings = load_config(None, {"user_id": "4321"})
    assert settings.plan.user_id == 4321
    assert settings.fetch.index_url == "https://file.example"


def test_list_trait_from_comma_separated_flag() -> None:
    assert load_config(None, {"buildpacks": "a,b"}).buildpacks == ("a", "b")


def test_bool_flag_from_string() -> None:
    assert load_config(None, {"no_cache": "true"}).no_cache is True


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"user_id": "abc"}, "--user-id 'abc'"),
        ({"base_suite": "sid"}, "--base-suite 'sid': expected any of"),
        ({"builder": "no such builder"}, "--builder = 'no such builder': is neither auto, classic nor a docker buildx builder name"),
        ({"docker_host": "localhost:2376"}, "--docker-host = 'localhost:2376': does not start with unix://"),
    ],
)
def test_bad_value_is_a_usage_error(overrides: dict[str, str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        load_config(None, overrides)


def test_bad_value_in_the_config_file_is_a_usage_error(isolated_cwd: Path) -> None:
    (isolated_cwd / "r2env_config.py").write_text("c.R2env.user_id = 'abc'\n")
    with pytest.raises(UsageError, match="user_id"):
        load_config(None, {})


def test_broken_config_file_is_a_usage_error(isolated_cwd: Path) -> None:
    (isolated_cwd / "r2env_config.py").write_text("c.R2env.user_id = \n")
    with pytest.raises(UsageError, match=r"r2env_config.py: cannot load \(SyntaxError"):
        load_config(None, {})


def test_missing_explicit_config_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such config file"):
        load_config(str(tmp_path / "nope.py"), {})
