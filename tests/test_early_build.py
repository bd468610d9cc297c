"""A build starts its docker CLI before docker-py loads and the bases are looked up (pipeline.build_checkout), and
is stopped, with nothing left behind, when a base must be pulled first or the engine does not answer."""

from __future__ import annotations

import os
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import pytest

from r2env.config import Settings, load_config
from r2env.engine import DockerEngine, _Started
from r2env.errors import BuildError, EngineUnavailableError
from r2env.events import Kind, Phase
from r2env.pipeline import build

from fake_engine import BOOKWORM_ID, EagerEngine

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.chdir(tmp_path)
    return load_config(None, {"cache_dir": str(tmp_path / "cache")})


def test_the_build_starts_before_the_base_is_looked_up(settings: Settings) -> None:
    engine = EagerEngine(images={"debian:bookworm": BOOKWORM_ID})
    events = list(build(str(EXAMPLES / "requirements"), settings, lambda: engine))
    assert [name for name, _ in engine.calls] == ["build started", "image_id", "image_id", "stopped"]
    # Closed once it has ended and every event came through, before its scratch folder (the Dockerfile) went.
    assert engine.calls[-1] == ("stopped", "")
    messages = [event.message for event in events]
    assert messages.index("base image debian:bookworm is present") < messages.index(next(m for m in messages if m.startswith("building ")))
    assert events[-1].kind is Kind.RESULT


def test_a_base_to_pull_stops_the_started_build_and_a_new_one_follows(settings: Settings) -> None:
    engine = EagerEngine(images={}, pullable={"debian:bookworm"})
    events = list(build(str(EXAMPLES / "requirements"), settings, lambda: engine))
    assert [name for name, _ in engine.calls][:5] == ["build started", "image_id", "stopped", "pull", "build started"]
    assert len(engine.started) == 2 and "pulled debian:bookworm" in [event.message for event in events]
    assert events[-1].kind is Kind.RESULT


def test_an_engine_that_does_not_answer_stops_the_started_build(settings: Settings) -> None:
    engine = EagerEngine(unreachable=True)
    with pytest.raises(EngineUnavailableError):
        list(build(str(EXAMPLES / "requirements"), settings, lambda: engine))
    assert [name for name, _ in engine.calls] == ["build started", "stopped"]


def test_with_check_registry_nothing_starts_before_the_engine_is_asked(settings: Settings, tmp_path: Path) -> None:
    # --check-registry (like a lock, whose image may be there already) asks the engine whether to build at all.
    check = load_config(None, {"cache_dir": str(tmp_path / "cache"), "check_registry": "true", "image_name": "registry.example/x"})
    engine = EagerEngine(images={"debian:bookworm": BOOKWORM_ID})
    list(build(str(EXAMPLES / "requirements"), check, lambda: engine))
    assert [name for name, _ in engine.calls][:2] == ["image_id", "build started"]


# The real engine's side: the docker CLI's process, started by build() and stopped by close().

def test_closing_a_started_cli_build_stops_its_process_and_removes_what_it_needed(tmp_path: Path) -> None:
    engine = DockerEngine(None, None)
    cleaned: list[str] = []
    begin = time.monotonic()
    running = engine._stream_buildkit([sys.executable, "-c", "import time; print('#1 [1/1] RUN sleep', flush=True); time.sleep(60)"], dict(os.environ))
    assert next(running).kind is Kind.STEP
    cleanup = ExitStack()
    cleanup.callback(cleaned.append, "the throwaway docker config")
    _Started(running, cleanup).close()
    assert cleaned == ["the throwaway docker config"] and time.monotonic() - begin < 30  # not the minute it would sleep


def test_a_cli_build_that_ends_gives_its_events_and_a_failed_one_says_so() -> None:
    engine = DockerEngine(None, None)
    done = list(engine._stream_buildkit([sys.executable, "-c", "print('#1 [1/1] RUN true')"], dict(os.environ)))
    assert [(event.phase, event.kind) for event in done] == [(Phase.BUILD, Kind.STEP)]
    with pytest.raises(BuildError, match="the image build failed"):
        list(engine._stream_buildkit([sys.executable, "-c", "import sys; print('#1 [1/1] RUN false'); sys.exit(1)"], dict(os.environ)))
