"""Binder parity: every repository in integration/parity/ with a verify script builds for real and passes it.
(The refused ones are checked without an engine by tests/test_parity_plans.py.)"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import docker
import pytest

from support import ROOT, build_ok, r2env, run_in

PARITY = ROOT / "integration" / "parity"
# A repository with a `conda-channel` file is locked against a channel the tests make, by its own test module.
# One with a `cran-repository` file installs R packages from the CRAN-like repository integration/test_r.py makes.
BUILDS = sorted(p.name for p in PARITY.iterdir()
                if (p / "verify").is_file() and not (p / "conda-channel").is_file() and not (p / "cran-repository").is_file())


def build_arguments(repo: Path) -> list[str]:
    extra = repo / "build-args"
    return [line.strip() for line in extra.read_text().splitlines() if line.strip()] if extra.is_file() else []


@pytest.mark.parametrize("name", BUILDS)
def test_parity_repository_builds_and_verifies(engine: docker.DockerClient, name: str) -> None:
    image = f"r2env-it/parity-{name}"
    build_ok(str(PARITY / name), "--image-name", image, *build_arguments(PARITY / name))
    assert "all checks passed" in run_in(engine, image, ["./verify"])


# The classic builder cannot pass a CA bundle without baking it into a layer (r2env refuses), and package
# downloads here go through a TLS-inspecting proxy: a test-only base that already trusts it stands in for a
# network without one. (The CA variables are emptied for r2env so that it passes no build secrets.)
_TRUSTING_BASE = "r2env-it/bookworm-trusts-host-ca"
_NO_CA = {"SSL_CERT_FILE": "", "PIP_CERT": "", "REQUESTS_CA_BUNDLE": ""}


def _base_trusting_the_host_ca(engine: docker.DockerClient, scratch: Path) -> str:
    bundle = next(
        (Path(value) for value in (os.environ.get(name, "") for name in _NO_CA) if value and Path(value).is_file()),
        Path("/etc/ssl/certs/ca-certificates.crt"),
    )
    assert r2env("base", "bootstrap", "--suite", "bookworm").returncode == 0  # debian:bookworm, when it is missing
    shutil.copyfile(bundle, scratch / "ca.pem")
    (scratch / "Dockerfile").write_text(
        "FROM debian:bookworm\nCOPY ca.pem /usr/local/share/r2env-test/ca.pem\n"
        "ENV PIP_CERT=/usr/local/share/r2env-test/ca.pem SSL_CERT_FILE=/usr/local/share/r2env-test/ca.pem\n"
    )
    engine.images.build(path=str(scratch), tag=_TRUSTING_BASE, rm=True)
    return _TRUSTING_BASE


def test_ignore_files_hold_with_the_classic_builder_too(engine: docker.DockerClient, tmp_path: Path) -> None:
    base = _base_trusting_the_host_ca(engine, tmp_path)
    image = "r2env-it/parity-dockerignore-binder-dir-classic"
    build_ok(str(PARITY / "dockerignore-binder-dir"), "--image-name", image, "--builder", "classic",
             "--base-image", base, "--base-suite", "bookworm", env=_NO_CA)
    assert "all checks passed" in run_in(engine, image, ["./verify"])
