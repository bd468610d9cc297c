"""parse_buildkit_progress: `--progress=plain` text → BuildEvents; a failed step → BuildError with its last output."""

from __future__ import annotations

from typing import Iterator

import pytest

from r2env.engine import parse_buildkit_progress
from r2env.errors import BuildError
from r2env.events import BuildEvent, Kind, Phase

SUCCESS = """\
#0 building with "default" instance using docker driver

#1 [internal] load build definition from Dockerfile
#1 transferring dockerfile: 2.31kB done
#1 DONE 0.0s

#2 [internal] load metadata for docker.io/library/debian:bookworm
#2 DONE 0.0s

#3 [1/4] FROM docker.io/library/debian:bookworm
#3 CACHED

#4 [2/4] RUN apt-get update -q && apt-get install -y -q --no-install-recommends ca-certificates
#4 0.512 Get:1 http://deb.debian.org/debian bookworm InRelease [151 kB]
#4 1.204 Reading package lists...
#4 DONE 3.1s

#5 [stage-0 3/4] RUN groupadd --gid 1000 jovyan
#5 CACHED

#6 [4/4] COPY --chown=1000:1000 . /home/jovyan/
#6 DONE 0.1s

#7 exporting to image
#7 exporting layers 0.2s done
#7 DONE 0.2s
"""

FAILURE = """\
#4 [2/3] RUN apt-get update -q
#4 0.301 Get:1 http://deb.debian.org/debian bookworm InRelease [151 kB]
#4 DONE 1.0s

#5 [3/3] RUN pip install -r requirements.txt
#5 0.801 Collecting nosuchpkg==9.9
#5 0.950 ERROR: Could not find a version that satisfies the requirement nosuchpkg==9.9
#5 1.002 ERROR: No matching distribution found for nosuchpkg==9.9
#5 ERROR: process "/bin/bash -o pipefail -c pip install -r requirements.txt" did not complete successfully: exit code: 1
------
 > [3/3] RUN pip install -r requirements.txt:
0.801 Collecting nosuchpkg==9.9
------
ERROR: failed to solve: process "/bin/bash -o pipefail -c pip install -r requirements.txt" did not complete successfully: exit code: 1
"""


def lines(text: str) -> Iterator[str]:
    return iter(text.splitlines(keepends=True))


def test_steps_carry_their_progress() -> None:
    steps = [(e.message, e.progress) for e in parse_buildkit_progress(lines(SUCCESS)) if e.kind is Kind.STEP]
    assert steps == [
        ("FROM docker.io/library/debian:bookworm", (1, 4)),
        ("RUN apt-get update -q && apt-get install -y -q --no-install-recommends ca-certificates", (2, 4)),
        ("RUN groupadd --gid 1000 jovyan", (3, 4)),
        ("COPY --chown=1000:1000 . /home/jovyan/", (4, 4)),
    ]


def test_cached_steps_and_step_output_become_events() -> None:
    events = [e for e in parse_buildkit_progress(lines(SUCCESS)) if e.kind is not Kind.STEP]
    assert events == [
        BuildEvent(Phase.BUILD, Kind.CACHED, "FROM docker.io/library/debian:bookworm"),
        BuildEvent(Phase.BUILD, Kind.LOG, "Get:1 http://deb.debian.org/debian bookworm InRelease [151 kB]"),
        BuildEvent(Phase.BUILD, Kind.LOG, "Reading package lists..."),
        BuildEvent(Phase.BUILD, Kind.CACHED, "RUN groupadd --gid 1000 jovyan"),
    ]


def test_failed_step_raises_build_error_naming_it_with_its_last_output() -> None:
    seen: list[BuildEvent] = []
    with pytest.raises(BuildError) as caught:
        for event in parse_buildkit_progress(lines(FAILURE)):
            seen.append(event)
    assert caught.value.message == "build step failed: RUN pip install -r requirements.txt"
    details = caught.value.details
    assert "ERROR: No matching distribution found for nosuchpkg==9.9" in details
    assert "did not complete successfully: exit code: 1" in details
    assert "Get:1" not in details  # another step's output
    assert [e.message for e in seen if e.kind is Kind.STEP] == ["RUN apt-get update -q", "RUN pip install -r requirements.txt"]


def test_error_output_is_limited_to_the_tail() -> None:
    with pytest.raises(BuildError) as caught:
        list(parse_buildkit_progress(lines(FAILURE), tail=1))
    assert "Collecting nosuchpkg" not in caught.value.details
    assert "No matching distribution found" in caught.value.details


def test_a_step_that_explains_its_failure_leads_the_error_with_its_sentence() -> None:
    text = (
        "#7 [ 4/9] RUN uv python install 3.10\n"
        "#7 1.20 error: Failed to download cpython-3.10\n"
        "#7 1.21 r2env: could not install CPython 3.10: set --python-install-mirror.\n"
        '#7 ERROR: process "/bin/bash -o pipefail -c uv python install 3.10" did not complete successfully: exit code: 1\n'
    )
    with pytest.raises(BuildError) as caught:
        list(parse_buildkit_progress(lines(text)))
    assert caught.value.message == "could not install CPython 3.10: set --python-install-mirror."
    assert "Failed to download" in caught.value.details


@pytest.mark.parametrize(
    "line",
    ["#12 [ 3/12] RUN pip install numpy", "#12 [stage-0  3/12] RUN pip install numpy", "#12 [stage-0 3/12] RUN pip install numpy"],
    ids=["padded", "stage and padded", "stage"],
)
def test_padded_and_staged_step_numbers_are_understood(line: str) -> None:
    (event,) = parse_buildkit_progress(lines(line + "\n"))
    assert (event.kind, event.message, event.progress) == (Kind.STEP, "RUN pip install numpy", (3, 12))


def test_error_of_an_unnamed_step_still_raises() -> None:
    with pytest.raises(BuildError, match="build step failed: a build step"):
        list(parse_buildkit_progress(lines("#9 ERROR: failed to compute cache key: not found\n")))
