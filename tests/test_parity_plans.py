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
    planning = [a for a in arguments if not a.startswith("--image")]
    assert main(["plan", str(PARITY / name), *planning]) == 0, capsys.readouterr().err
