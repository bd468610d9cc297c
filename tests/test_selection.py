"""The detection/priority matrix: which buildpacks a set of declaration files selects, in order, with roles."""

from __future__ import annotations

from typing import Sequence

import pytest

from buildpacks import load_buildpacks
from r2env.errors import UsageError
from r2env.inspect import inspect
from r2env.repo import MemoryRepo
from r2env.select import DEFAULT_PRIORITY, Selection, select

# Minimal valid content for each declaration file.
CONTENT = {
    "Dockerfile": "FROM debian:bookworm\n",
    "environment.yml": "dependencies: []\n",
    "environment.yaml": "dependencies: []\n",
    "Pipfile": "[packages]\n",
    "Pipfile.lock": '{"default": {}}',
    "requirements.txt": "numpy\n",
    "setup.py": "",
    "pyproject.toml": '[project]\nname = "x"\n',
    "apt.txt": "jq\n",
    "postBuild": "#!/bin/sh\n",
    "start": '#!/bin/sh\nexec "$@"\n',
}
ADDONS = ["apt.txt", "postBuild", "start"]


def selection_for(names: Sequence[str], priority: Sequence[str] = DEFAULT_PRIORITY) -> Selection:
    facts = inspect(MemoryRepo({name: CONTENT[name] for name in names}))
    return select(facts, load_buildpacks(), priority)


def roles(selection: Selection) -> list[tuple[str, str]]:
    return [(d.buildpack, d.role) for d in selection.detections]


MATRIX = [
    ([], [("python", "primary")]),
    (["requirements.txt"], [("python", "primary")]),
    (["setup.py"], [("python", "primary")]),
    (["pyproject.toml", "requirements.txt"], [("python", "primary")]),
    (["Dockerfile"], [("dockerfile", "exclusive")]),
    (["Dockerfile", "environment.yml", "Pipfile.lock", "requirements.txt", *ADDONS], [("dockerfile", "exclusive")]),
    (["environment.yml", "Pipfile.lock", "requirements.txt"], [("conda", "primary")]),
    (["environment.yaml"], [("conda", "primary")]),
    (["Pipfile.lock", "Pipfile", "requirements.txt"], [("pipfile", "primary")]),
    (["Pipfile", "setup.py"], [("pipfile", "primary")]),
    (["apt.txt"], [("python", "primary"), ("apt", "addon")]),
    (["postBuild"], [("python", "primary"), ("postbuild", "addon")]),
    (["start"], [("python", "primary"), ("start", "addon")]),
    (["requirements.txt", *ADDONS], [("python", "primary"), ("apt", "addon"), ("postbuild", "addon"), ("start", "addon")]),
    (["Pipfile.lock", *ADDONS], [("pipfile", "primary"), ("apt", "addon"), ("postbuild", "addon"), ("start", "addon")]),
    (["environment.yml", "start", "apt.txt"], [("conda", "primary"), ("apt", "addon"), ("start", "addon")]),
]


@pytest.mark.parametrize(("names", "expected"), MATRIX, ids=["+".join(names) or "nothing" for names, _ in MATRIX])
def test_declaration_files_select_buildpacks_in_order(names: list[str], expected: list[tuple[str, str]]) -> None:
    selection = selection_for(names)
    assert roles(selection) == expected
    assert [b.name for b in selection.buildpacks] == [name for name, _ in expected]


def test_python_is_the_fallback_and_says_why() -> None:
    (detection,) = selection_for([]).detections
    assert detection.buildpack == "python"
    assert "no other environment declaration" in detection.reason


def test_dockerfile_reason_says_other_files_are_ignored() -> None:
    (detection,) = selection_for(["Dockerfile", "apt.txt"]).detections
    assert detection.reason == "found Dockerfile (built as-is; other declaration files are ignored)"


def test_custom_priority_without_pipfile_skips_it() -> None:
    assert roles(selection_for(["Pipfile.lock", "requirements.txt"], ("python",))) == [("python", "primary")]


def test_dockerfile_left_out_of_the_priority_is_not_used() -> None:
    assert roles(selection_for(["Dockerfile", "apt.txt"], ("pipfile", "python"))) == [("python", "primary"), ("apt", "addon")]


def test_priority_order_decides_between_primaries() -> None:
    assert roles(selection_for(["Pipfile", "environment.yml"], ("pipfile", "conda", "python")))[0] == ("pipfile", "primary")


def test_priority_where_nothing_applies_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="no buildpack in the priority list applies"):
        selection_for(["requirements.txt"], ("pipfile",))


def test_unknown_buildpack_in_priority_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="unknown buildpack 'haskell'"):
        selection_for([], ("haskell", "python"))


def test_addon_in_priority_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="'apt' is an add-on"):
        selection_for(["apt.txt"], ("apt", "python"))
