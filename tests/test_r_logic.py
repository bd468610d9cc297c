"""R's pure logic: which R and from where, the CRAN snapshot URL, DESCRIPTION and renv.lock, the lock's r section."""

from __future__ import annotations

import dataclasses
import hashlib
import json

from pathlib import Path

import pytest

from buildpacks import load_buildpacks
from r2env.config import load_config
from r2env.errors import LockError, SpecError, UsageError
from r2env.inspect import inspect
from r2env.lock.locking import current_inputs
from r2env.plan import PlanOptions, plan
from r2env.repo import DiskRepo
from r2env.select import select
from r2env.lock.diff import diff_locks, lock_counts
from r2env.lock.lockfile import LockedFile, LockedRPackage, RSection, dump_lock, parse_lock
from r2env.parsers.description import parse_description
from r2env.parsers.renv_lock import parse_renv_lock
from r2env.parsers.runtime import parse_runtime
from r2env.r.locking import Candidate, file_urls, hash_candidates, parse_snapshot
from r2env.r.rstudio import POSIT_RSTUDIO_SHA256, POSIT_RSTUDIO_URL, RSESSION_PROXY, RStudioSource, rstudio_source
from r2env.r.snapshot import DEFAULT_CRAN_MIRROR, cran_url
from r2env.r.versions import DEFAULT_R_BUILDS_URL, FIRST_SNAPSHOT, RChoice, choose_r, current_at, r_builds_url

from tests.test_lock import sample_lock, sha


def _choice(runtime: str | None, suite: str = "bookworm", fixed: bool = False, renv: tuple[str, str] = ("", "")) -> RChoice:
    return choose_r(parse_runtime(runtime, "runtime.txt") if runtime else None, renv, suite, fixed)


@pytest.mark.parametrize(("runtime", "suite", "fixed", "expected"), [
    # Debian's R where a suite ships the version asked for (any patch for X.Y, exactly for X.Y.Z).
    ("r-4.2", "bookworm", False, ("4.2.2", "debian", "bookworm", "latest")),
    ("r-4.2.2-2023-01-05", "bookworm", False, ("4.2.2", "debian", "bookworm", "2023-01-05")),
    ("r-4.5", "bookworm", False, ("4.5.0", "debian", "trixie", "latest")),  # the suite follows R
    ("r-4.2", "trixie", False, ("4.2.2", "debian", "bookworm", "latest")),
    # A date alone: the R that was current then (4.3 was released 2023-04-21).
    ("r-2023-01-05", "bookworm", False, ("4.2.2", "debian", "bookworm", "2023-01-05")),
    ("r-2023-06-01", "bookworm", False, ("4.3.3", "posit", "bookworm", "2023-06-01")),
    # No suite ships it: Posit's build, the latest patch of X.Y, or X.Y.Z exactly.
    ("r-4.3", "bookworm", False, ("4.3.3", "posit", "bookworm", "latest")),
    ("r-4.1.2-2022-01-10", "bookworm", False, ("4.1.2", "posit", "bookworm", "2022-01-10")),
    ("r-4.2.1", "bookworm", False, ("4.2.1", "posit", "bookworm", "latest")),
    # --base-image fixes the suite: R 4.5 on a bookworm base comes from Posit, not from trixie.
    ("r-4.5", "bookworm", True, ("4.5.1", "posit", "bookworm", "latest")),
])
def test_the_r_version_and_its_source_follow_runtime_txt(runtime: str, suite: str, fixed: bool, expected: tuple[str, str, str, str]) -> None:
    choice = _choice(runtime, suite, fixed)
    assert (choice.version, choice.source, choice.suite, choice.snapshot) == expected
    assert choice.reason


def test_no_version_asked_for_is_the_suites_own_r() -> None:
    choice = _choice(None, "trixie")
    assert (choice.version, choice.source, choice.suite) == ("4.5.0", "debian", "trixie")


def test_renv_lock_version_counts_when_runtime_txt_names_none() -> None:
    choice = _choice("r-2024-01-10", renv=("4.5.0", "renv.lock"))
    assert (choice.version, choice.source, choice.snapshot) == ("4.5.0", "debian", "2024-01-10")
    assert "renv.lock was made with R 4.5.0" in choice.reason
    assert _choice("r-4.2", renv=("4.5.0", "renv.lock")).version == "4.2.2"  # runtime.txt wins


@pytest.mark.parametrize(("runtime", "fragments"), [
    ("r-3.1", ("R 3.1", "not an R version r2env knows", "4.5")),
    ("r-2017-01-01", ("2017-01-01", FIRST_SNAPSHOT, "MRAN")),
    ("r-2999-01-01", ("2999-01-01", "future")),
])
def test_versions_and_dates_r2env_cannot_serve_are_one_sentence(runtime: str, fragments: tuple[str, ...]) -> None:
    with pytest.raises(SpecError) as caught:
        _choice(runtime)
    text = str(caught.value) + caught.value.hint
    assert "\n" not in str(caught.value)
    for fragment in fragments:
        assert fragment in text


def test_the_current_r_at_a_date_is_the_last_minor_released_by_then() -> None:
    assert current_at("2022-04-21") == "4.1"
    assert current_at("2022-04-22") == "4.2"
    assert current_at("2010-01-01") == "3.5"


def test_posit_builds_url_names_the_debian_release_and_version() -> None:
    choice = _choice("r-4.3")
    assert r_builds_url(DEFAULT_R_BUILDS_URL, choice) == "https://cdn.posit.co/r/debian-12/pkgs/r-4.3.3_1_amd64.deb"


@pytest.mark.parametrize(("template", "runtime", "suite", "url"), [
    (DEFAULT_CRAN_MIRROR, "r-4.2-2023-01-05", "bookworm", "https://packagemanager.posit.co/cran/__linux__/bookworm/2023-01-05"),
    (DEFAULT_CRAN_MIRROR, "r-4.2", "bookworm", "https://packagemanager.posit.co/cran/__linux__/bookworm/latest"),
    # Posit Package Manager has no binaries for trixie: source packages.
    (DEFAULT_CRAN_MIRROR, "r-4.5-2025-06-01", "trixie", "https://packagemanager.posit.co/cran/2025-06-01"),
    ("https://cran.example.org/{date}/", "r-4.2-2023-01-05", "bookworm", "https://cran.example.org/2023-01-05"),
    ("https://cran.example.org/{suite}", "r-4.2", "bookworm", "https://cran.example.org/bookworm"),
    ("http://127.0.0.1:8080/cran", "r-4.2-2023-01-05", "bookworm", "http://127.0.0.1:8080/cran"),
])
def test_the_cran_snapshot_url_for_a_date(template: str, runtime: str, suite: str, url: str) -> None:
    assert cran_url(template, _choice(runtime, suite)) == url


def test_an_unknown_placeholder_in_the_cran_mirror_is_a_usage_error() -> None:
    with pytest.raises(UsageError) as caught:
        cran_url("https://cran.example.org/{day}", _choice("r-4.2"))
    assert "--cran-mirror" in str(caught.value) and "{date}" in caught.value.hint


def test_description_gives_the_package_and_what_it_needs_without_base_packages() -> None:
    text = ("Package: demo\nVersion: 0.1.0\nDepends: R (>= 4.0), methods\nImports:\n    greetr (>= 1.0),\n    jsonlite\n"
            "LinkingTo: Rcpp\nSuggests: testthat\n")
    description = parse_description(text, "DESCRIPTION")
    assert (description.package, description.version) == ("demo", "0.1.0")
    assert description.needs == ("greetr", "jsonlite", "Rcpp")


@pytest.mark.parametrize(("text", "fragment"), [
    ("Version: 1.0\n", "has no Package field"),
    ("Package: 1demo\n", "is not an R package name"),
    ("  continued\nPackage: demo\n", "line 1: a continuation line before any field"),
    ("Package: demo\nnot a field\n", "line 2"),
    ("Package: demo\nImports: greetr >= 1.0\n", "Imports"),
])
def test_a_malformed_description_is_named(text: str, fragment: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_description(text, "DESCRIPTION")
    assert fragment in str(caught.value) and str(caught.value).startswith("DESCRIPTION")


def _renv(packages: dict[str, object], repositories: list[dict[str, str]] | None = None) -> str:
    repositories = [{"Name": "CRAN", "URL": "https://cran.example.org/"}] if repositories is None else repositories
    return json.dumps({"R": {"Version": "4.2.2", "Repositories": repositories}, "Packages": packages})


def test_renv_lock_gives_each_package_its_repository_url() -> None:
    lock = parse_renv_lock(_renv({"greetr": {"Package": "greetr", "Version": "1.0.0", "Source": "Repository", "Repository": "CRAN"}}), "renv.lock")
    assert lock.r_version == "4.2.2"
    assert [(p.name, p.version, p.repository) for p in lock.packages] == [("greetr", "1.0.0", "https://cran.example.org")]


@pytest.mark.parametrize(("text", "fragments"), [
    ("{not json", ("renv.lock",)),
    (_renv({"greetr": {"Version": "1.0.0", "Source": "GitHub"}}), ("greetr comes from 'GitHub'", "Source: Repository")),
    (_renv({"greetr": {"Version": "1.0.0", "Source": "Repository", "Repository": "BioC"}}), ("BioC", "CRAN")),
    (_renv({"greetr": {"Version": "1.0.0; rm -rf /"}}), ("not an R package version",)),
    (_renv({}, [{"Name": "CRAN", "URL": "ftp://x"}]), ("not an http(s) or file URL",)),
])
def test_a_renv_lock_r2env_cannot_install_is_named(text: str, fragments: tuple[str, ...]) -> None:
    with pytest.raises(SpecError) as caught:
        parse_renv_lock(text, "renv.lock")
    message = str(caught.value)
    assert "renv.lock" in message and "\n" not in message
    for fragment in fragments:
        assert fragment in message + caught.value.hint


def test_a_package_file_is_looked_for_as_current_then_in_the_archive() -> None:
    assert file_urls("http://repo/", "greetr", "1.0.0") == (
        "http://repo/src/contrib/greetr_1.0.0.tar.gz", "http://repo/src/contrib/Archive/greetr/greetr_1.0.0.tar.gz")


def test_the_library_snapshot_skips_the_repositorys_own_package_and_refuses_odd_lines() -> None:
    output = "noise\nr2env-package greetr 1.0.0 http://repo/src/contrib/greetr_1.0.0.tar.gz\nr2env-package demo 0.1 http://repo/x.tar.gz\n"
    assert parse_snapshot(output, "demo") == (Candidate("greetr", "1.0.0", ("http://repo/src/contrib/greetr_1.0.0.tar.gz",)),)
    with pytest.raises(LockError):
        parse_snapshot("r2env-package gre;tr 1.0 http://repo/x\n", "")


def test_hashing_takes_the_first_file_that_exists_and_names_a_missing_package() -> None:
    files = {"http://repo/src/contrib/Archive/greetr/greetr_0.9.tar.gz": b"old greetr"}

    def fetch(url: str) -> bytes:
        if url not in files:
            raise OSError("404 Not Found")
        return files[url]

    locked = hash_candidates((Candidate("greetr", "0.9", file_urls("http://repo", "greetr", "0.9")),), fetch, "install.R")
    archived = "http://repo/src/contrib/Archive/greetr/greetr_0.9.tar.gz"
    assert locked == (LockedRPackage("greetr", "0.9", archived, hashlib.sha256(b"old greetr").hexdigest()),)
    with pytest.raises(LockError) as caught:
        hash_candidates((Candidate("missing", "1.0", file_urls("http://repo", "missing", "1.0")),), fetch, "install.R")
    assert "missing 1.0" in str(caught.value) and "404" in str(caught.value)


def _r_lock() -> str:
    section = RSection("4.2.2", "debian", "https://packagemanager.posit.co/cran/__linux__/bookworm/2023-01-05", (
        LockedRPackage("greetr", "1.0.0", "https://packagemanager.posit.co/cran/__linux__/bookworm/2023-01-05/src/contrib/greetr_1.0.0.tar.gz", sha("greetr").removeprefix("sha256:")),
    ))
    return dump_lock(sample_lock(r=section))


def test_the_r_section_round_trips() -> None:
    text = _r_lock()
    assert parse_lock(text, "r2env.lock").r == sample_lock(r=parse_lock(text, "r2env.lock").r).r
    assert dump_lock(parse_lock(text, "r2env.lock")) == text
    assert "\nr:\n  version: 4.2.2\n  source: debian\n" in text


@pytest.mark.parametrize(("old", "new", "fragment"), [
    ("source: debian", "source: cran", "neither debian nor posit"),
    ("name: greetr", "name: 'gre;tr'", "an R package name"),
    ("version: 1.0.0", "version: '1.0.0 '", "an R package version"),
    ("  version: 4.2.2", "  version: four", "an R version"),
])
def test_a_hand_edited_r_section_is_named(old: str, new: str, fragment: str) -> None:
    text = _r_lock()
    assert old in text
    with pytest.raises(LockError) as caught:
        parse_lock(text.replace(old, new, 1), "r2env.lock")
    assert fragment in str(caught.value)


def test_an_r_section_with_an_unknown_key_is_refused() -> None:
    text = _r_lock().replace("  source: debian\n", "  source: debian\n  mirror: x\n")
    with pytest.raises(LockError):
        parse_lock(text, "r2env.lock")


def test_lock_diffs_and_counts_include_r_packages_and_r_itself() -> None:
    old = parse_lock(_r_lock(), "r2env.lock")
    assert old.r is not None
    newer = LockedRPackage("greetr", "1.1.0", old.r.packages[0].url.replace("1.0.0", "1.1.0"), old.r.packages[0].sha256)
    new = dataclasses.replace(old, r=dataclasses.replace(old.r, version="4.5.0", packages=(newer,)))
    changes = {(c.kind, c.name): (c.old, c.new, c.verb) for c in diff_locks(old, new)}
    assert changes[("r", "greetr")] == ("1.0.0", "1.1.0", "upgraded")
    assert changes[("r", "R")][:2] == ("4.2.2 (debian)", "4.5.0 (debian)")
    python, debian = len(new.server) + len(new.packages), len(new.apt)
    assert lock_counts(new) == f"{python} Python, 1 R and {debian} Debian packages"
    assert lock_counts(sample_lock()) == f"{python} Python and {debian} Debian packages"


def test_every_r_declaration_and_the_r_sources_are_lock_inputs(tmp_path: Path) -> None:
    (tmp_path / "runtime.txt").write_text("r-4.2-2024-01-02\n")
    (tmp_path / "install.R").write_text('install.packages("hellor")\n')
    (tmp_path / "DESCRIPTION").write_text("Package: demo\nVersion: 0.1\n")
    (tmp_path / "renv.lock").write_text(_renv({}))
    inputs = current_inputs(tmp_path, inspect(DiskRepo(tmp_path)), PlanOptions())
    assert {"runtime.txt", "install.R", "DESCRIPTION", "renv.lock", "option:cran-mirror"} <= set(inputs)
    python_only = tmp_path / "python"
    python_only.mkdir()
    (python_only / "requirements.txt").write_text("pyparsing\n")
    assert "option:cran-mirror" not in current_inputs(python_only, inspect(DiskRepo(python_only)), PlanOptions())


def _rstudio_plan(option: str, lock: object = None) -> list[str]:
    facts = inspect(DiskRepo(Path(__file__).resolve().parent.parent / "examples" / "r-install-r"))
    spec = plan(facts, select(facts, load_buildpacks()), PlanOptions(rstudio=option), lock)  # type: ignore[arg-type]
    return [step.script for step in spec.steps]


def test_rstudio_is_installed_only_when_asked_and_posits_build_is_checked() -> None:
    assert not any("rstudio" in script for script in _rstudio_plan(""))
    scripts = _rstudio_plan("posit")
    install = next(script for script in scripts if "rstudio-server.deb" in script)
    assert POSIT_RSTUDIO_URL in install and f"{POSIT_RSTUDIO_SHA256}  /tmp/rstudio-server.deb" in install
    assert "R_LIBS_USER=/srv/rlibs" in install and "r-cran-repos=" in install
    assert any(RSESSION_PROXY in script for script in scripts)  # unlocked: the proxy is installed by name


def test_a_deb_given_by_url_is_checked_only_once_locked() -> None:
    url = "https://mirror.example/rstudio-server.deb"
    install = next(script for script in _rstudio_plan(url) if "rstudio-server.deb" in script)
    assert url in install and "sha256sum" not in install
    assert rstudio_source(url, url, "b" * 64) == RStudioSource(url, "b" * 64)
    assert rstudio_source(url, "https://elsewhere/x.deb", "b" * 64) == RStudioSource(url, "")  # another file: not its hash
    assert rstudio_source("") is None


def test_the_lock_records_rstudios_file() -> None:
    section = RSection("4.2.2", "debian", "https://cran.example.org", (), LockedFile("https://mirror.example/r.deb", "c" * 64))
    text = dump_lock(sample_lock(r=section))
    assert "  rstudio:\n    url: https://mirror.example/r.deb\n    sha256: " + "c" * 64 in text
    assert parse_lock(text, "r2env.lock").r == section


@pytest.mark.parametrize("value", ["ftp://x", "yes", "posit; rm -rf /"])
def test_an_rstudio_option_r2env_cannot_use_is_a_usage_error(value: str) -> None:
    with pytest.raises(UsageError, match="--rstudio"):
        load_config(None, {"rstudio": value}, {})
