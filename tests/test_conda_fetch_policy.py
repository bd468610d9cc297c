"""What the daemon's host fetches for a repository's conda lock (issue 17).

`r2env serve` stages the conda packages a client's conda-lock.yml names on its own host, outside the containers
the bridge firewall confines: a lock must not make it read its files or reach its loopback, link-local (cloud
metadata) or private network. The CLI trusts its user's own lock (file:// and loopback channels are how the tests
and air-gapped mirrors work), and the operator's channels and channel map are trusted in the daemon too."""

from __future__ import annotations

import ssl
from dataclasses import replace
from pathlib import Path
from typing import Iterator

import pytest

from r2env.conda.packages import _CheckedRedirects, check_public, stage_packages
from r2env.errors import BuildError
from r2env.parsers.conda_lock import CondaLockFile, parse_conda_lock

from conda_channel import serve_directory
from test_conda_lock import CONDA_LOCK, FIXTURE_CHANNEL, channel  # noqa: F401 - the channel fixture

HINT = "a repository this server builds may use public channels only"


@pytest.fixture
def loopback_channel(channel: Path) -> Iterator[tuple[str, list[str]]]:  # noqa: F811
    """The test channel served over http on 127.0.0.1, and the paths it was asked for."""
    requests: list[str] = []
    with serve_directory(channel, requests) as url:
        yield url, requests


def _locked_at(url: str) -> CondaLockFile:
    locked = parse_conda_lock(CONDA_LOCK, "binder/conda-lock.yml")
    return replace(locked, packages=tuple(replace(p, url=p.url.replace(FIXTURE_CHANNEL, url)) for p in locked.packages))


def test_the_cli_fetches_from_a_loopback_channel_its_user_chose(loopback_channel: tuple[str, list[str]], tmp_path: Path) -> None:
    url, requests = loopback_channel
    locked = _locked_at(url)
    stage_packages(locked, [], tmp_path / "context", ssl.create_default_context())
    assert len(requests) == len(locked.packages)


def test_the_daemon_refuses_a_loopback_channel_without_asking_it(loopback_channel: tuple[str, list[str]], tmp_path: Path) -> None:
    url, requests = loopback_channel
    with pytest.raises(BuildError) as refused:
        stage_packages(_locked_at(url), [], tmp_path / "context", ssl.create_default_context(), trusted_channels=())
    assert refused.value.message == ("binder/conda-lock.yml: hello-cli-1.0.0-0.tar.bz2 would be fetched from 127.0.0.1 (127.0.0.1), "
                                     "an address of this machine or its private network")
    assert refused.value.hint.startswith(HINT)
    assert requests == []


def test_the_daemon_fetches_from_the_operators_channels_and_channel_map(loopback_channel: tuple[str, list[str]], tmp_path: Path) -> None:
    url, requests = loopback_channel
    stage_packages(_locked_at(url), [], tmp_path / "listed", ssl.create_default_context(), trusted_channels=(url + "/",))
    mapped = parse_conda_lock(CONDA_LOCK, "binder/conda-lock.yml")
    stage_packages(mapped, [(FIXTURE_CHANNEL, url)], tmp_path / "mapped", ssl.create_default_context(), trusted_channels=())
    assert len(requests) == 2 * len(mapped.packages)


def test_the_daemon_never_reads_a_file_of_its_host(tmp_path: Path) -> None:
    # The fixture lock's own URLs are file:///r2env-test-channel/…: a client's lock could name /etc/shadow or /dev/zero.
    with pytest.raises(BuildError, match=r"^binder/conda-lock.yml: hello-cli-1.0.0-0.tar.bz2 would be read from "
                                         r"file:///r2env-test-channel/noarch/hello-cli-1.0.0-0.tar.bz2: this server fetches conda packages over http\(s\) only: "):
        stage_packages(parse_conda_lock(CONDA_LOCK, "binder/conda-lock.yml"), [], tmp_path / "context", ssl.create_default_context(), trusted_channels=())


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost/x.conda",
        "http://169.254.169.254/latest/meta-data/x.conda",
        "https://10.1.2.3/x.conda",
        "http://[::1]:8080/x.conda",
        "http://[::ffff:127.0.0.1]/x.conda",
        "http://0.0.0.0/x.conda",
        "http://100.64.0.1/x.conda",
    ],
)
def test_addresses_of_the_host_and_its_networks_are_refused(url: str) -> None:
    with pytest.raises(BuildError, match="an address of this machine or its private network"):
        check_public(url, "conda-lock.yml", "x.conda")


def test_a_public_address_is_allowed() -> None:
    check_public("https://8.8.8.8/conda-forge/noarch/x.conda", "conda-lock.yml", "x.conda")  # an IP literal: no lookup


def test_a_redirect_to_the_hosts_network_is_refused() -> None:
    # A public channel answering 302 to the metadata address would otherwise take the daemon's request there.
    with pytest.raises(BuildError, match=r"x.conda would be fetched from 169.254.169.254 \(169.254.169.254\)"):
        _CheckedRedirects("conda-lock.yml", "x.conda").redirect_request(None, None, 302, "Found", {}, "http://169.254.169.254/x.conda")


def test_the_daemons_builds_fetch_public_packages_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from serve_fakes import make_daemon

    assert make_daemon(tmp_path, monkeypatch).builds.settings.public_packages_only
