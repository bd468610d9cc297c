"""r2env.serve.binderhub: the messages of the BinderHub-compatible /build/<provider>/<spec> stream (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from r2env.serve import binderhub

COMMIT = "0123456789abcdef0123456789abcdef01234567"
IMAGE = "r2env-serve/repo:0123456789ab-abcdefabcdef"


@pytest.mark.parametrize(
    ("message", "phase"),
    [
        (binderhub.waiting(), "waiting"),
        (binderhub.progress("fetch", "info", "cloning", None), "fetching"),
        (binderhub.progress("build", "log", "Collecting numpy", None), "building"),
        (binderhub.built(IMAGE), "built"),
        (binderhub.launching(), "launching"),
        (binderhub.ready("http://127.0.0.1:9000/?token=t", IMAGE, "https://github.com/o/r", COMMIT, "gh", "o/r/main"), "ready"),
        (binderhub.failed("the build failed"), "failed"),
    ],
)
def test_every_message_has_its_phase_and_ends_with_one_newline(message: dict[str, Any], phase: str) -> None:
    assert message["phase"] == phase
    assert message["message"].endswith("\n") and not message["message"].endswith("\n\n")


def test_built_names_the_image() -> None:
    assert binderhub.built(IMAGE)["imageName"] == IMAGE


def test_a_failure_message_gets_exactly_one_newline() -> None:
    assert binderhub.failed("no such ref\n\n")["message"] == "no such ref\n"


@pytest.mark.parametrize(
    ("phase", "kind", "message", "steps", "expected"),
    [
        ("build", "step", "RUN pip install -r requirements.txt", (3, 9), "[build 3/9] RUN pip install -r requirements.txt\n"),
        ("build", "step", "COPY . .", None, "[build 0/0] COPY . .\n"),
        ("build", "log", "Collecting numpy", None, "    Collecting numpy\n"),
        ("build", "cached", "RUN apt-get update", None, "    (cached)\n"),
        ("base", "info", "using debian:bookworm", None, "[base] using debian:bookworm\n"),
        ("done", "result", "built r2env-serve/repo:tag", None, "[done] built r2env-serve/repo:tag\n"),
    ],
)
def test_progress_is_formatted_as_the_command_line_prints_it(
    phase: str, kind: str, message: str, steps: tuple[int, int] | None, expected: str
) -> None:
    assert binderhub.progress(phase, kind, message, steps)["message"] == expected


@pytest.mark.parametrize(("phase", "binderhub_phase"), [("fetch", "fetching"), ("inspect", "fetching"), ("plan", "building"),
                                                         ("base", "building"), ("build", "building"), ("done", "building")])
def test_getting_the_repository_is_fetching_and_everything_else_building(phase: str, binderhub_phase: str) -> None:
    assert binderhub.progress(phase, "info", "x", None)["phase"] == binderhub_phase


def test_ready_gives_the_url_and_token_apart_and_names_the_commit() -> None:
    message = binderhub.ready("http://127.0.0.1:9000/?token=s3cret", IMAGE, "https://github.com/o/r", COMMIT, "gh", "o/r/main")
    assert (message["url"], message["token"]) == ("http://127.0.0.1:9000/", "s3cret")
    assert message["message"] == "server running at http://127.0.0.1:9000/\n"
    assert "s3cret" not in message["message"]
    assert message["image"] == IMAGE
    assert message["repo_url"] == message["binder_ref_url"] == "https://github.com/o/r"
    assert message["binder_request"] == "v2/gh/o/r/main"
    assert message["binder_persistent_request"] == f"v2/gh/o/r/{COMMIT}"
    assert message["resolved_ref"] == COMMIT


def test_ready_keeps_a_servers_path_and_gives_an_empty_token_when_there_is_none() -> None:
    message = binderhub.ready("http://h.example:9000/user/x/", IMAGE, "https://github.com/o/r", COMMIT, "gh", "o/r/HEAD")
    assert (message["url"], message["token"]) == ("http://h.example:9000/user/x/", "")


@pytest.mark.parametrize(
    ("provider", "raw_spec", "persistent"),
    [
        ("gh", "o/r/main", f"v2/gh/o/r/{COMMIT}"),
        # A GitHub ref may contain '/': BinderHub's resolved spec is owner/repo/<commit> all the same.
        ("gh", "o/r/feature/x", f"v2/gh/o/r/{COMMIT}"),
        ("gl", "group%2Fproject/main", f"v2/gl/group%2Fproject/{COMMIT}"),
        ("gl", "group%2Fproject/release/1.0", f"v2/gl/group%2Fproject/{COMMIT}"),
        ("git", "https%3A%2F%2Fgit.example.org%2Frepo/v1", f"v2/git/https%3A%2F%2Fgit.example.org%2Frepo/{COMMIT}"),
        ("git", "https%3A%2F%2Fgit.example.org%2Frepo/feature/x", f"v2/git/https%3A%2F%2Fgit.example.org%2Frepo/{COMMIT}"),
    ],
)
def test_the_persistent_request_replaces_the_whole_ref_with_the_commit(provider: str, raw_spec: str, persistent: str) -> None:
    message = binderhub.ready("http://127.0.0.1:9000/?token=t", IMAGE, "https://example.org/r", COMMIT, provider, raw_spec)
    assert message["binder_request"] == f"v2/{provider}/{raw_spec}"
    assert message["binder_persistent_request"] == persistent
