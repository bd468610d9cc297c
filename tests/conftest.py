"""Fixtures shared by several fast test modules."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import pytest

from git_repos import Origin, make_origin
from serve_fakes import Daemon, daemons


@pytest.fixture
def isolated_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No system or user git config, and no repository above tmp_path, for r2env's git as well as the tests'."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    for variable in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        monkeypatch.delenv(variable, raising=False)


@pytest.fixture
def origin(tmp_path: Path, isolated_git: None) -> Origin:
    return make_origin(tmp_path / "origin")


@pytest.fixture
def daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Daemon]:
    """The daemon's real store, builds, launches and app over fakes of git, the engine and the worker."""
    with daemons(tmp_path, monkeypatch) as make:
        yield make()


@pytest.fixture
def daemon_with(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Daemon]]:
    """`daemon`, with options: daemon_with(max_launches=1, ip="0.0.0.0")."""
    with daemons(tmp_path, monkeypatch) as make:
        yield make
