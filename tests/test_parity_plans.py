"""Binder parity without an engine: every refused repository in integration/parity/ stops with its one-line
error and exit code; every building one plans (its verify runs in integration/test_parity.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from r2env.cli import main

PARITY = Path(__file__).resolve().parent.parent / "integration" / "parity"
REFUSED = sorted(p.name for p in PARITY.iterdir() if (p / "expected-error").is_file())
BUILDS = sorted(p.name for p in PARITY.iterdir() if (p / "verify").is_file())


def test_every_parity_repository_is_one_kind_or_the_other() -> None:
    folders = {p.name for p in PARITY.iterdir() if p.is_dir()}
    assert folders == set(REFUSED) | set(BUILDS) and not set(REFUSED) & set(BUILDS)


@pytest.mark.parametrize("name", REFUSED)
def test_parity_repository_is_refused_with_one_line(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, text = (PARITY / name / "expected-error").read_text().splitlines()[:2]
    assert main(["plan", str(PARITY / name)]) == int(code)
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    assert text in lines[0], lines[0]


@pytest.mark.parametrize("name", BUILDS)
def test_parity_repository_plans(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    arguments = [line.strip() for line in (PARITY / name / "build-args").read_text().splitlines() if line.strip()] \
        if (PARITY / name / "build-args").is_file() else []
    assert main(["plan", str(PARITY / name), *planning_arguments(arguments)]) == 0, capsys.readouterr().err


# `r2env build` options `r2env plan` does not take (they name or label the image, or only reach the build).
BUILD_ONLY = ("--image-name", "--label", "--build-arg")


def planning_arguments(arguments: list[str]) -> list[str]:
    """The build-args file's arguments without the build-only options and their values."""
    kept: list[str] = []
    skip = False
    for argument in arguments:
        if skip:
            skip = False
        elif argument in BUILD_ONLY:
            skip = True
        elif not argument.startswith(tuple(f"{flag}=" for flag in BUILD_ONLY)):
            kept.append(argument)
    return kept


def test_planning_arguments_leave_out_build_only_options_with_their_values() -> None:
    arguments = ["--target-repo-dir", "/srv/repo", "--label", "a=b", "--image-name=x", "--build-arg", "K=V", "--ref", "v1"]
    assert planning_arguments(arguments) == ["--target-repo-dir", "/srv/repo", "--ref", "v1"]
