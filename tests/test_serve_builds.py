"""r2env.serve.builds: a request resolved to a commit and spec digest, deduplicated (one resolution for concurrent
requests, one build per commit and spec, a finished build reused while its image exists), links out of a repository
refused, and image names Docker accepts. Git is faked (tests/serve_fakes.py); no worker ever runs."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest

from r2env.errors import SourceError, SpecError
from r2env.serve.builds import QueueFull, image_name, link_out_of
from r2env.serve.sources import RefusedSource
from r2env.serve.store import Build
from serve_fakes import AUTH, COMMIT, REPO, Daemon

# Docker's reference grammar (distribution/reference): path components joined by '/', each alphanumeric runs
# joined by one separator ('.', '_', '__' or any number of '-'); then a tag.
COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
DOCKER_REFERENCE = re.compile(rf"{COMPONENT}(?:/{COMPONENT})*:[A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}")


def test_concurrent_requests_for_one_repository_and_ref_share_one_resolution(daemon: Daemon) -> None:
    daemon.mirrors.delay = 0.05

    async def scenario() -> list[tuple[Build, bool]]:
        return await asyncio.gather(*(daemon.builds.submit(REPO, "main") for _ in range(10)))

    answers = asyncio.run(scenario())
    assert daemon.mirrors.resolved == [(REPO, "main")]
    assert {build.id for build, _ in answers} == {answers[0][0].id}
    assert [created for _, created in answers] == [True] + [False] * 9
    assert len(daemon.store.builds()) == 1 and daemon.scheduled == [answers[0][0].id]


def test_concurrent_requests_for_other_refs_of_one_commit_make_one_build(daemon: Daemon) -> None:
    """main, v1 and the default branch name the same commit: their resolutions run side by side, and only one may queue,
    also when the commit's spec is known already (a failed build of it) and each request then waits for its checkout."""
    failed, _ = asyncio.run(daemon.builds.submit(REPO, "main"))
    daemon.store.set_build(failed.id, state="failed")
    daemon.mirrors.delay = 0.05

    async def scenario() -> list[tuple[Build, bool]]:
        return await asyncio.gather(*(daemon.builds.submit(REPO, ref) for ref in ("main", "v1", "", "main", "v1")))

    answers = asyncio.run(scenario())
    assert len({build.id for build, _ in answers}) == 1
    assert sum(created for _, created in answers) == 1
    assert len(daemon.store.builds()) == 2  # the failed one and the new one


def test_a_failed_resolution_fails_every_waiting_request_and_the_next_one_tries_again(daemon: Daemon) -> None:
    daemon.mirrors.delay = 0.05

    async def scenario() -> list[Any]:
        return await asyncio.gather(*(daemon.builds.submit(REPO, "nope") for _ in range(3)), return_exceptions=True)

    answers = asyncio.run(scenario())
    assert all(isinstance(answer, SourceError) for answer in answers)
    assert daemon.mirrors.resolved == [(REPO, "nope")]
    with pytest.raises(SourceError):
        asyncio.run(daemon.builds.submit(REPO, "nope"))
    assert len(daemon.mirrors.resolved) == 2


def test_a_later_request_for_the_same_commit_attaches_to_the_queued_build(daemon: Daemon) -> None:
    first, created = asyncio.run(daemon.builds.submit(REPO, "main"))
    again, created_again = asyncio.run(daemon.builds.submit(REPO, "v1"))  # another ref, the same commit
    other, created_other = asyncio.run(daemon.builds.submit(REPO, "v2"))  # another commit
    assert (created, created_again, created_other) == (True, False, True)
    assert again.id == first.id and other.id != first.id
    # Only the builds keep a checkout: the ones made to plan the later requests are gone.
    assert sorted(path.name for path in daemon.builds.checkouts.iterdir()) == sorted(Path(b.checkout).name for b in (first, other))


def test_a_built_build_whose_image_exists_is_returned_as_it_is(daemon: Daemon) -> None:
    first, _ = asyncio.run(daemon.builds.submit(REPO, "main"))
    daemon.store.set_build(first.id, state="built")
    daemon.engine.images.add(first.image)
    again, created = asyncio.run(daemon.builds.submit(REPO, "main"))
    assert (again.id, again.state, created) == (first.id, "built", False)
    assert len(daemon.store.builds()) == 1 and daemon.scheduled == [first.id]


def test_a_built_build_whose_image_is_gone_is_built_again(daemon: Daemon) -> None:
    first, _ = asyncio.run(daemon.builds.submit(REPO, "main"))
    daemon.store.set_build(first.id, state="built")  # but the engine has no such image (pruned)
    again, created = asyncio.run(daemon.builds.submit(REPO, "main"))
    assert created is True and again.id != first.id and again.state == "queued"
    assert daemon.scheduled == [first.id, again.id]


def test_a_repository_with_a_link_out_of_it_is_refused_and_its_checkout_removed(daemon: Daemon) -> None:
    daemon.mirrors.links = {"passwords.txt": "/etc/passwd"}
    with pytest.raises(SpecError, match="passwords.txt is a symbolic link out of the repository"):
        asyncio.run(daemon.builds.submit(REPO, "main"))
    assert list(daemon.builds.checkouts.iterdir()) == [] and daemon.store.builds() == []


def test_a_repository_with_a_loop_of_links_is_built_like_any_other(daemon: Daemon) -> None:
    # Path.resolve() raises RuntimeError on a loop before Python 3.13: the request must not end in a 500.
    daemon.mirrors.links = {"loop": "loop", "a": "b", "b": "a"}
    build, created = asyncio.run(daemon.builds.submit(REPO, "main"))
    assert created and Path(build.checkout).is_dir()


def test_a_refused_repository_is_never_resolved(daemon: Daemon) -> None:
    with pytest.raises(RefusedSource):
        asyncio.run(daemon.builds.submit("https://evil.example/org/analysis", "main"))
    assert daemon.mirrors.resolved == []


@pytest.mark.parametrize(
    ("links", "escaping"),
    [
        ({"data": "/etc/passwd"}, "data"),
        ({"sub/up": "../../outside"}, "sub/up"),
        ({"sub/etc": "/etc"}, "sub/etc"),  # a link to a directory
        ({"dangling": "/no/such/file"}, "dangling"),
        ({"alias.txt": "requirements.txt"}, ""),
        ({"sub/back": "../requirements.txt"}, ""),
        ({"sub/self": "."}, ""),
        ({".git/hooks/x": "/etc/passwd"}, ""),  # git's own files are never built
        ({"loop": "loop"}, ""),
        ({"a": "b", "b": "a"}, ""),
    ],
)
def test_link_out_of_finds_links_that_leave_the_repository(tmp_path: Path, links: dict[str, str], escaping: str) -> None:
    root = tmp_path / "repo"
    (root / "sub").mkdir(parents=True)
    (root / ".git" / "hooks").mkdir(parents=True)
    (root / "requirements.txt").write_text("numpy\n")
    for name, target in links.items():
        (root / name).symlink_to(target)
    assert link_out_of(root) == escaping


@pytest.mark.parametrize(
    ("url", "slug"),
    [
        ("https://github.com/org/Analysis.git", "analysis"),
        ("https://github.com/org/my%20repo", "my-20repo"),
        ("https://github.com/org/_private_", "private"),
        ("https://github.com/org/.git", "repo"),
        ("https://github.com/org/---", "repo"),
        ("file:///srv/repos/Données", "donn-es"),
        ("https://github.com/org/a__b", None),
        ("https://github.com/org/a..b", None),
        ("https://github.com/org/a_.b", None),
        ("https://github.com/org/a.-b", None),
        ("https://github.com/org/a___b", None),
        ("https://github.com/org/" + "a" * 59 + "-b", None),  # cut at 60 characters, right after a '-'
        ("https://github.com/org/" + "a" * 59 + "..b", None),
        ("https://github.com/org/" + "x" * 300, None),
    ],
)
def test_image_names_are_valid_docker_references(url: str, slug: str | None) -> None:
    name = image_name(url, COMMIT, "sha256:" + "0123456789abcdef" * 4)
    assert DOCKER_REFERENCE.fullmatch(name), name
    repository, tag = name.split(":")
    assert tag == f"{COMMIT[:12]}-0123456789ab"
    assert len(repository) <= len("r2env-serve/") + 60
    if slug is not None:
        assert repository == f"r2env-serve/{slug}"


def test_an_image_name_without_a_commit_still_has_a_tag() -> None:
    assert image_name(REPO, "", "sha256:" + "f" * 64) == "r2env-serve/analysis:nocommit-ffffffffffff"


def test_a_full_queue_refuses_new_builds_with_429_but_still_answers_queued_ones(daemon_with: Any) -> None:
    daemon = daemon_with(max_queued=1)
    queued, _ = asyncio.run(daemon.builds.submit(REPO, "main"))
    with pytest.raises(QueueFull) as refused:
        asyncio.run(daemon.builds.submit(REPO, "v2"))  # another commit: a new build
    assert refused.value.http_status == 429
    assert refused.value.message == "1 builds are waiting in the queue, the most this server allows"
    assert "try again later" in refused.value.hint
    again, created = asyncio.run(daemon.builds.submit(REPO, "v1"))  # the queued commit: shared, not refused
    assert (again.id, created) == (queued.id, False)
    assert [build.id for build in daemon.store.builds()] == [queued.id]
    assert len(list(daemon.builds.checkouts.iterdir())) == 1  # the refused request's checkout is gone


def test_the_api_answers_a_full_queue_with_429_and_a_hint(daemon_with: Any) -> None:
    daemon = daemon_with(max_queued=1)
    daemon.add_build("queued", commit="c" * 40)

    async def scenario(client: Any) -> tuple[int, dict[str, str]]:
        response = await client.post("/api/v1/builds", json={"repo": REPO}, headers=AUTH)
        return response.status, await response.json()

    status, body = daemon.run(scenario)
    assert status == 429 and body["error"] == "1 builds are waiting in the queue, the most this server allows"
