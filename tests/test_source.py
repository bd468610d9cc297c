"""fetch with real git on local repositories: in-place directories, clones of bare repos and file:// URLs, refs."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Sequence

import pytest
from git_repos import Origin, commit, git

from r2env.errors import SourceError
from r2env.source import fetch, run_git


pytestmark = pytest.mark.usefixtures("isolated_git")


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def test_local_directory_without_git_is_used_in_place(tmp_path: Path, cache: Path) -> None:
    directory = tmp_path / "plain"
    directory.mkdir()
    (directory / "requirements.txt").write_text("numpy\n")
    checkout = fetch(str(directory), "", cache)
    assert (checkout.path, checkout.url, checkout.commit, checkout.ref) == (directory, str(directory), "", "")
    assert not cache.exists()


def test_local_git_repository_is_used_in_place_at_its_head(origin: Origin, cache: Path) -> None:
    (origin.path / "requirements.txt").write_text("uncommitted\n")
    checkout = fetch(str(origin.path), "", cache)
    assert (checkout.path, checkout.commit) == (origin.path, origin.main)
    assert (checkout.path / "requirements.txt").read_text() == "uncommitted\n"


def test_bare_repository_is_cloned(origin: Origin, tmp_path: Path, cache: Path) -> None:
    bare = tmp_path / "bare.git"
    git("clone", "-q", "--bare", str(origin.path), str(bare))
    checkout = fetch(str(bare), "", cache)
    assert checkout.path.is_relative_to(cache)
    assert checkout.commit == origin.main
    assert (checkout.path / "requirements.txt").read_text() == "numpy==2\n"


def test_file_url_is_cloned(origin: Origin, cache: Path) -> None:
    url = origin.path.as_uri()
    checkout = fetch(url, "", cache)
    assert (checkout.url, checkout.commit) == (url, origin.main)
    assert (checkout.path / "requirements.txt").read_text() == "numpy==2\n"


@pytest.mark.parametrize(
    ("ref", "expected", "content"),
    [("v1", "tagged", "numpy==1\n"), ("feature", "feature", "numpy==feature\n"), ("main", "main", "numpy==2\n"), ("sha", "tagged", "numpy==1\n")],
)
def test_ref_resolves_to_the_right_commit(origin: Origin, cache: Path, ref: str, expected: str, content: str) -> None:
    wanted = getattr(origin, expected)
    checkout = fetch(str(origin.path), wanted if ref == "sha" else ref, cache)
    assert checkout.commit == wanted
    assert (checkout.path / "requirements.txt").read_text() == content
    assert checkout.path != origin.path


def test_second_fetch_sees_new_commits_and_switches_refs(origin: Origin, cache: Path) -> None:
    first = fetch(origin.path.as_uri(), "v1", cache)
    newer = commit(origin.path, "numpy==3\n")
    second = fetch(origin.path.as_uri(), "main", cache)
    assert second.path == first.path
    assert second.commit == newer
    assert (second.path / "requirements.txt").read_text() == "numpy==3\n"


def test_unknown_ref_is_a_source_error(origin: Origin, cache: Path) -> None:
    with pytest.raises(SourceError, match="unknown ref 'no-such-branch'"):
        fetch(str(origin.path), "no-such-branch", cache)


def test_missing_path_is_a_source_error(tmp_path: Path, cache: Path) -> None:
    with pytest.raises(SourceError, match="no such directory"):
        fetch(str(tmp_path / "missing"), "", cache)


def test_file_instead_of_directory_is_a_source_error(tmp_path: Path, cache: Path) -> None:
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(SourceError, match="not a directory"):
        fetch(str(tmp_path / "file.txt"), "", cache)


def test_clone_failure_is_a_source_error(tmp_path: Path, cache: Path) -> None:
    with pytest.raises(SourceError, match="git clone failed"):
        fetch((tmp_path / "nowhere.git").as_uri(), "", cache)


def test_a_url_is_never_read_as_an_option(cache: Path) -> None:
    """A source that looks like `-u<command>` (git clone's --upload-pack) reaches git after "--", as a URL: git
    then refuses the host name instead of running the command."""
    calls: list[list[str]] = []

    def recording(argv: Sequence[str]) -> "subprocess.CompletedProcess[str]":
        calls.append(list(argv))
        return run_git(argv)

    source = "-ush@host:repo"  # user@host:path to is_remote
    with pytest.raises(SourceError, match="git clone failed: .*strange hostname"):
        fetch(source, "", cache, git=recording)
    clone = next(argv for argv in calls if argv[0] == "clone")
    assert clone[clone.index("--") + 1 :] == [source, str(clone[-1])]
