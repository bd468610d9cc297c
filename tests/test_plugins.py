"""Third-party buildpacks register through the `r2env.buildpacks` entry-point group."""

from __future__ import annotations

from importlib.metadata import EntryPoint
from typing import Any

import pytest

import buildpacks
from buildpacks import load_buildpacks
from r2env.buildpack import Buildpack, Contribution, Role
from r2env.errors import UsageError
from r2env.inspect import inspect
from r2env.repo import MemoryRepo
from r2env.select import select

HASKELL = Buildpack("haskell", Role.PRIMARY, lambda facts: "found stack.yaml", lambda facts, context: Contribution())
NOT_A_BUILDPACK = object()
CLASHING = Buildpack("python", Role.PRIMARY, lambda facts: None)


def _with_entry_points(monkeypatch: pytest.MonkeyPatch, *values: str) -> None:
    entries = [EntryPoint(name=value.rsplit(":", 1)[1], value=value, group="r2env.buildpacks") for value in values]

    def fake(group: str) -> Any:
        assert group == "r2env.buildpacks"
        return entries

    monkeypatch.setattr(buildpacks, "entry_points", fake)


def test_a_registered_buildpack_joins_the_registry_and_can_be_prioritised(monkeypatch: pytest.MonkeyPatch) -> None:
    _with_entry_points(monkeypatch, "tests.test_plugins:HASKELL")
    registry = load_buildpacks()
    assert registry["haskell"].name == "haskell" and registry["haskell"].role is Role.PRIMARY
    selection = select(inspect(MemoryRepo({"requirements.txt": "six\n"})), registry, ("haskell", "python"))
    assert selection.primary.name == "haskell"


def test_an_entry_point_that_is_not_a_buildpack_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    _with_entry_points(monkeypatch, "tests.test_plugins:NOT_A_BUILDPACK")
    with pytest.raises(UsageError, match="is not an r2env Buildpack"):
        load_buildpacks()


def test_a_plugin_cannot_silently_replace_a_built_in(monkeypatch: pytest.MonkeyPatch) -> None:
    _with_entry_points(monkeypatch, "tests.test_plugins:CLASHING")
    with pytest.raises(UsageError, match="clashes with an existing one"):
        load_buildpacks()
