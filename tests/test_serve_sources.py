"""r2env.serve.sources: URL and ref validation (tables), BinderHub specs, git's environment, and mirrors driven by
real git against local repositories (file:// URLs, allowed by a local policy). No network, no Docker."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from git_repos import Origin, commit, git

from r2env.errors import SourceError, UsageError
from r2env.serve.mirrors import Mirrors, git_environment
from r2env.serve.sources import RefusedSource, SourcePolicy, binderhub_spec, validate_ref, validate_repo

DEFAULT = SourcePolicy()
SSH = SourcePolicy(schemes=("https", "ssh"))
LOCAL = SourcePolicy(allow_local=True)
WILDCARD = SourcePolicy(hosts=("*.example.org",))
ANY_HOST = SourcePolicy(hosts=("*",))


# --- validate_repo ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "policy", "canonical"),
    [
        ("https://github.com/binder-examples/requirements", DEFAULT, "https://github.com/binder-examples/requirements"),
        ("  https://github.com/owner/repo \n", DEFAULT, "https://github.com/owner/repo"),
        ("HTTPS://GitHub.COM/Owner/Repo/", DEFAULT, "https://github.com/Owner/Repo"),  # the path keeps its case
        ("https://github.com/owner/repo.git", DEFAULT, "https://github.com/owner/repo.git"),
        ("https://github.com.:443/owner/repo//", DEFAULT, "https://github.com/owner/repo"),
        ("https://github.com:8443/owner/repo", DEFAULT, "https://github.com:8443/owner/repo"),
        ("https://ｇｉｔｈｕｂ.com/owner/repo", DEFAULT, "https://github.com/owner/repo"),  # IDNA maps full-width letters
        ("https://gitlab.com/group/sub/project", DEFAULT, "https://gitlab.com/group/sub/project"),
        ("https://github.com/owner/my%20repo", DEFAULT, "https://github.com/owner/my%20repo"),
        ("ssh://git@github.com:22/owner/repo", SSH, "ssh://git@github.com/owner/repo"),
        ("ssh://github.com/owner/repo", SSH, "ssh://github.com/owner/repo"),
        ("https://git.example.org/repo", WILDCARD, "https://git.example.org/repo"),
        ("https://a.b.example.org/repo", WILDCARD, "https://a.b.example.org/repo"),
        ("https://anything.test/repo", ANY_HOST, "https://anything.test/repo"),
        ("https://[::1]:8443/repo", SourcePolicy(hosts=("::1",)), "https://[::1]:8443/repo"),
        ("/srv/repos/analysis", LOCAL, "file:///srv/repos/analysis"),
        ("/srv/repos/analysis/", LOCAL, "file:///srv/repos/analysis"),
        ("file:///srv/repos/analysis", LOCAL, "file:///srv/repos/analysis"),
        ("file://localhost/srv/repos/my%20analysis", LOCAL, "file:///srv/repos/my%20analysis"),
    ],
)
def test_accepted_urls_come_back_canonical(text: str, policy: SourcePolicy, canonical: str) -> None:
    assert validate_repo(text, policy) == canonical
    assert validate_repo(canonical, policy) == canonical  # canonical is a fixed point


@pytest.mark.parametrize(
    ("text", "policy", "error", "message"),
    [
        ("", DEFAULT, UsageError, "repository URL is empty"),
        (" \t\n", DEFAULT, UsageError, "repository URL is empty"),
        ("-u touch /tmp/x", DEFAULT, UsageError, "must not start with '-'"),
        ("--upload-pack=touch /tmp/x", DEFAULT, UsageError, "must not start with '-'"),
        ("-uecho@github.com:x", DEFAULT, UsageError, "must not start with '-'"),
        ("git@github.com:owner/repo", DEFAULT, UsageError, "scp-style SSH addresses"),
        ("git@github.com:owner/repo", SSH, UsageError, "scp-style SSH addresses"),
        ("github.com:owner/repo", DEFAULT, UsageError, "scp-style SSH addresses"),
        ("https://user:secret@github.com/owner/repo", DEFAULT, RefusedSource, "must not contain a user name or password"),
        ("https://token@github.com/owner/repo", DEFAULT, RefusedSource, "must not contain a user name or password"),
        ("ssh://git:secret@github.com/owner/repo", SSH, RefusedSource, "must not contain a user name or password"),
        ("ssh://-oProxyCommand=x@github.com/owner/repo", SSH, RefusedSource, "must not contain a user name or password"),
        ("https://github.com@evil.org/owner/repo", DEFAULT, RefusedSource, "must not contain a user name or password"),
        ("https://evil.org\\@github.com/owner/repo", DEFAULT, UsageError, "must not contain a backslash"),
        ("https://evil.org/owner/repo", DEFAULT, RefusedSource, "repository host 'evil.org' is not allowed"),
        ("https://github.com.evil.org/owner/repo", DEFAULT, RefusedSource, "repository host 'github.com.evil.org' is not allowed"),
        ("https://evilgithub.com/owner/repo", DEFAULT, RefusedSource, "is not allowed"),
        ("https://gist.github.com/owner/1234", DEFAULT, RefusedSource, "repository host 'gist.github.com' is not allowed"),
        ("https://example.org/repo", WILDCARD, RefusedSource, "repository host 'example.org' is not allowed"),
        ("https://evilexample.org/repo", WILDCARD, RefusedSource, "is not allowed"),
        ("https://github.com%2eevil.org/owner/repo", DEFAULT, UsageError, "no valid host name"),
        ("https://github.com../owner/repo", DEFAULT, UsageError, "no valid host name"),
        ("https://-github.com/owner/repo", ANY_HOST, UsageError, "no valid host name"),
        ("https:///owner/repo", DEFAULT, UsageError, "no valid host name"),
        ("https://github.com:99999/owner/repo", DEFAULT, UsageError, "malformed"),
        ("https://github.com:https/owner/repo", DEFAULT, UsageError, "malformed"),
        ("https://github.com:0/owner/repo", DEFAULT, UsageError, "port 0"),
        ("https://github.com", DEFAULT, UsageError, "names no repository"),
        ("https://github.com/", DEFAULT, UsageError, "names no repository"),
        ("https://github.com/ownér/repo", DEFAULT, UsageError, "path must be ASCII"),
        ("ext::sh -c touch% /tmp/pwned", DEFAULT, RefusedSource, r"remote helper transports \(ext::\)"),
        ("fd::17", DEFAULT, RefusedSource, r"remote helper transports \(fd::\)"),
        ("ftp://github.com/owner/repo", DEFAULT, RefusedSource, "scheme 'ftp' is not allowed"),
        ("ssh://git@github.com/owner/repo", DEFAULT, RefusedSource, "scheme 'ssh' is not allowed"),
        ("git://github.com/owner/repo", DEFAULT, RefusedSource, "scheme 'git' is not allowed"),
        ("file:///srv/repos/analysis", DEFAULT, RefusedSource, "file:// URLs are not allowed"),
        ("file://server/srv/repos/analysis", LOCAL, UsageError, "cannot name a host"),
        ("file:/srv/repos/analysis", LOCAL, UsageError, "malformed"),
        ("/srv/repos/analysis", DEFAULT, RefusedSource, "local paths are not allowed"),
        ("./analysis", LOCAL, UsageError, "relative paths are not accepted"),
        ("../analysis", LOCAL, UsageError, "relative paths are not accepted"),
        ("analysis", LOCAL, UsageError, "relative paths are not accepted"),
        ("/", LOCAL, UsageError, "root directory"),
        ("github.com/owner/repo", DEFAULT, UsageError, "has no scheme"),
        ("https://github.com/owner/repo?ref=main", DEFAULT, UsageError, "query"),
        ("https://github.com/owner/repo?", DEFAULT, UsageError, "query"),
        ("https://github.com/owner/repo#main", DEFAULT, UsageError, "fragment"),
        ("https://github.com/owner/repo\nhttps://evil.org/x", DEFAULT, UsageError, "whitespace or a control character"),
        ("https://github.com/owner/re\x00po", DEFAULT, UsageError, "whitespace or a control character"),
        ("https://github.com/owner/my repo", DEFAULT, UsageError, "whitespace or a control character"),
        ("https://github.com\u200b/owner/repo", DEFAULT, UsageError, "whitespace or a control character"),
        ("https://github.com/owner/\u202erepo", DEFAULT, UsageError, "whitespace or a control character"),
        ("https://github.com/" + "a" * 3000, DEFAULT, UsageError, "longer than"),
    ],
)
def test_refused_urls(text: str, policy: SourcePolicy, error: type[UsageError], message: str) -> None:
    with pytest.raises(error, match=message) as raised:
        validate_repo(text, policy)
    assert type(raised.value) is error  # 403 (RefusedSource) and 400 (UsageError) are not interchangeable
    assert raised.value.hint
    assert "\n" not in str(raised.value)


def test_a_refused_scheme_names_what_is_allowed_and_how_to_change_it() -> None:
    with pytest.raises(RefusedSource) as raised:
        validate_repo("http://github.com/owner/repo", DEFAULT)
    assert raised.value.message == "repository URL scheme 'http' is not allowed by this server"
    assert raised.value.hint == "allowed: https; an administrator can add schemes with c.Serve.allowed_schemes"
    assert raised.value.http_status == 403


def test_a_refused_host_names_the_allowed_ones() -> None:
    with pytest.raises(RefusedSource) as raised:
        validate_repo("https://Evil.ORG./owner/repo", DEFAULT)
    assert raised.value.message == "repository host 'evil.org' is not allowed by this server"
    assert raised.value.hint == "allowed: github.com, gitlab.com, bitbucket.org, codeberg.org; an administrator can add hosts with c.Serve.allowed_hosts"


def test_scp_addresses_get_an_https_suggestion() -> None:
    with pytest.raises(UsageError) as raised:
        validate_repo("git@github.com:owner/repo.git", DEFAULT)
    assert raised.value.hint == "give an https:// URL (e.g. https://github.com/owner/repo.git), or ssh://… where this server allows ssh"


def test_credentials_never_appear_in_the_error() -> None:
    with pytest.raises(RefusedSource) as raised:
        validate_repo("https://someone:hunter2@github.com/owner/repo", DEFAULT)
    assert "hunter2" not in str(raised.value) and "someone" not in str(raised.value)


def test_refused_sources_are_usage_errors_for_callers_that_only_know_those() -> None:
    assert issubclass(RefusedSource, UsageError)
    assert RefusedSource("x").exit_code == UsageError.exit_code


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        (lambda: SourcePolicy(schemes=("https", "ext")), "'ext' is not a scheme"),
        (lambda: SourcePolicy(schemes=("file",)), "'file' is not a scheme"),
        (lambda: SourcePolicy(hosts=("https://github.com",)), "is not a host name"),
        (lambda: SourcePolicy(hosts=("*github.com",)), "is not a host name"),
    ],
)
def test_a_policy_that_cannot_be_enforced_is_refused_at_start(policy: object, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        policy()  # type: ignore[operator]


def test_policy_hosts_are_compared_in_normal_form() -> None:
    policy = SourcePolicy(hosts=("GitHub.com.", "*.Example.ORG", "bücher.example"))
    assert validate_repo("https://github.com/o/r", policy) == "https://github.com/o/r"
    assert validate_repo("https://git.example.org/r", policy) == "https://git.example.org/r"
    assert validate_repo("https://BÜCHER.example/r", policy) == "https://xn--bcher-kva.example/r"


# --- validate_ref -------------------------------------------------------------------------------------------

VALID_REFS = ["main", "feature/login", "v1.0.2", "HEAD", "refs/heads/main", "release-2024.01", "a@b", "ünïcode", "x-", "a.lock.b",
              "abc1234", "0123456789abcdef0123456789abcdef01234567"]
INVALID_REFS = ["a..b", "a/.b", ".hidden", "x.lock", "a/b.lock/c", "x/", "/x", "a//b", "end.", "@", "a@{1}", "a b", "a~1", "a^",
                "a:b", "a?", "a*", "a[", "a\\b", "a\x7f", "a\x01", "a/./b", ".", "..", "x\u200by", "a" * 256]


@pytest.mark.parametrize("ref", VALID_REFS)
def test_valid_refs_pass_unchanged(ref: str) -> None:
    assert validate_ref(ref) == ref


@pytest.mark.parametrize("ref", INVALID_REFS)
def test_invalid_refs_are_usage_errors(ref: str) -> None:
    with pytest.raises(UsageError, match="is not a valid branch, tag or commit name"):
        validate_ref(ref)


@pytest.mark.parametrize("ref", ["-x", "--upload-pack=touch", "-", "--end-of-options"])
def test_refs_never_start_with_a_dash(ref: str) -> None:
    with pytest.raises(UsageError, match="it starts with '-'"):
        validate_ref(ref)


def test_empty_ref_means_the_default_branch_and_whitespace_is_trimmed() -> None:
    assert validate_ref("") == ""
    assert validate_ref("  ") == ""
    assert validate_ref(" main\n") == "main"


def test_a_ref_message_says_why() -> None:
    with pytest.raises(UsageError) as raised:
        validate_ref("main..evil")
    assert raised.value.message == "ref 'main..evil' is not a valid branch, tag or commit name: it contains '..'"


@pytest.mark.parametrize("ref", [r for r in VALID_REFS + INVALID_REFS if "\u200b" not in r and len(r) <= 255])
def test_ref_rules_agree_with_git_check_ref_format(ref: str) -> None:
    """Where we are stricter on purpose (invisible characters, more than 255 characters) git is not asked."""
    git = subprocess.run(["git", "check-ref-format", "--allow-onelevel", ref], capture_output=True, check=False).returncode == 0
    assert git == (ref in VALID_REFS)


# --- binderhub_spec -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "spec", "expected"),
    [
        ("gh", "binder-examples/requirements/HEAD", ("https://github.com/binder-examples/requirements", "HEAD")),
        ("gh", "binder-examples/requirements/master", ("https://github.com/binder-examples/requirements", "master")),
        ("gh", "binder-examples/requirements.git/main", ("https://github.com/binder-examples/requirements", "main")),
        ("gh", "owner/repo/feature/login", ("https://github.com/owner/repo", "feature/login")),
        ("gh", "owner/repo/feature%2Flogin", ("https://github.com/owner/repo", "feature/login")),
        ("gh", "owner/repo/034931911e853252322f2309f1246a4f1076fd7d", ("https://github.com/owner/repo", "034931911e853252322f2309f1246a4f1076fd7d")),
        ("gl", "group%2Fproject/main", ("https://gitlab.com/group/project", "main")),
        ("gl", "group%2Fsub%2Fproject.git/v1.0", ("https://gitlab.com/group/sub/project", "v1.0")),
        ("git", "https%3A%2F%2Fgithub.com%2Fbinder-examples%2Frequirements/master", ("https://github.com/binder-examples/requirements", "master")),
        ("git", "https%3A%2F%2Fgithub.com%2Fbinder-examples%2Fconda/034931911e853252322f2309f1246a4f1076fd7d",
         ("https://github.com/binder-examples/conda", "034931911e853252322f2309f1246a4f1076fd7d")),
        ("git", "https%3A%2F%2Fcodeberg.org%2Fowner%2Frepo.git/feature%2Flogin", ("https://codeberg.org/owner/repo.git", "feature/login")),
        ("git", "git%40github.com%3Aowner%2Frepo.git/main", ("ssh://git@github.com/owner/repo.git", "main")),
    ],
)
def test_binderhub_specs(provider: str, spec: str, expected: tuple[str, str]) -> None:
    assert binderhub_spec(provider, spec) == expected


@pytest.mark.parametrize(
    ("provider", "spec", "message"),
    [
        ("gh", "binder-examples/requirements", "is not owner/repo/ref"),
        ("gh", "binder-examples/requirements/", "names no ref"),
        ("gh", "owner%2Fx/repo/main", "owner name 'owner/x' is not valid"),
        ("gh", "../repo/main", "owner name '..' is not valid"),
        ("gh", "owner/.git/main", "names no repository"),
        ("gh", "owner/repo/..evil", "is not a valid branch, tag or commit name"),
        ("gh", "owner/repo/-x", "starts with '-'"),
        ("gl", "group/project/main", "is not namespace/project/ref"),
        ("gl", "group%2Fproject", "names no ref"),
        ("git", "https%3A%2F%2Fgithub.com%2Fowner%2Frepo", "names no ref"),
        ("git", "https%3A%2F%2Fgithub.com%2Fowner%2Frepo/%FF", "not UTF-8"),
        ("zenodo", "10.5281/zenodo.3242074", "provider 'zenodo' is not supported"),
        ("figshare", "10.6084/m9.figshare.9782777.v1", "provider 'figshare' is not supported"),
        ("hydroshare", "b8f6eae9d89241cf8b5904033460af61", "provider 'hydroshare' is not supported"),
        ("dataverse", "10.7910/DVN/TJCLKP", "provider 'dataverse' is not supported"),
        ("ckan", "https%3A%2F%2Fdemo.ckan.org%2Fdataset%2Fx", "provider 'ckan' is not supported"),
        ("gist", "owner/abc123", "provider 'gist' is not supported"),
    ],
)
def test_malformed_or_unsupported_binderhub_specs(provider: str, spec: str, message: str) -> None:
    with pytest.raises(UsageError, match=message) as raised:
        binderhub_spec(provider, spec)
    assert raised.value.hint


def test_unsupported_providers_are_told_which_are() -> None:
    with pytest.raises(UsageError) as raised:
        binderhub_spec("zenodo", "10.5281/zenodo.3242074")
    assert raised.value.hint == "supported: gh (GitHub), gl (GitLab), git (a URL-escaped git repository URL)"


def test_binderhub_urls_still_go_through_the_policy() -> None:
    url, _ = binderhub_spec("git", "https%3A%2F%2Fevil.org%2Frepo/main")
    with pytest.raises(RefusedSource, match="'evil.org' is not allowed"):
        validate_repo(url, DEFAULT)
    url, _ = binderhub_spec("git", "%2Dupload-pack%3Dtouch/main")
    with pytest.raises(UsageError, match="must not start with '-'"):
        validate_repo(url, DEFAULT)
    url, _ = binderhub_spec("git", "git%40github.com%3Aowner%2Frepo/main")
    with pytest.raises(RefusedSource, match="scheme 'ssh'"):
        validate_repo(url, DEFAULT)
    assert validate_repo(url, SSH) == "ssh://git@github.com/owner/repo"


# --- git_environment ----------------------------------------------------------------------------------------

BASE = {
    "PATH": "/usr/bin:/bin",
    "HOME": "/home/daemon",
    "LANG": "C.UTF-8",
    "https_proxy": "http://proxy:3128",
    "NO_PROXY": "localhost",
    "SSL_CERT_FILE": "/etc/ssl/ca.pem",
    "GIT_SSL_CAINFO": "/etc/ssl/ca.pem",
    "GIT_DIR": "/elsewhere/.git",
    "GIT_CONFIG_PARAMETERS": "'core.sshcommand'='touch /tmp/pwned'",
    "GIT_ALLOW_PROTOCOL": "ext:fd:file",
    "GIT_ASKPASS": "/usr/bin/ksshaskpass",
    "SSH_ASKPASS": "/usr/bin/ksshaskpass",
    "GIT_SSL_NO_VERIFY": "1",
    "GIT_TERMINAL_PROMPT": "1",
}


def test_git_environment_pins_transports_and_never_prompts() -> None:
    environment = git_environment(DEFAULT, BASE)
    assert environment["GIT_TERMINAL_PROMPT"] == "0"
    assert environment["GIT_ALLOW_PROTOCOL"] == "https"
    assert environment["GIT_CONFIG_NOSYSTEM"] == "1"
    assert environment["GIT_CONFIG_GLOBAL"] == os.devnull


def test_git_environment_keeps_the_network_settings_and_drops_the_rest_of_git() -> None:
    environment = git_environment(DEFAULT, BASE)
    for kept in ("PATH", "HOME", "LANG", "https_proxy", "NO_PROXY", "SSL_CERT_FILE", "GIT_SSL_CAINFO"):
        assert environment[kept] == BASE[kept]
    for dropped in ("GIT_DIR", "GIT_CONFIG_PARAMETERS", "GIT_ASKPASS", "SSH_ASKPASS", "GIT_SSL_NO_VERIFY"):
        assert dropped not in environment
    assert BASE["GIT_ALLOW_PROTOCOL"] == "ext:fd:file"  # the caller's mapping is left alone


def test_git_environment_follows_the_policy() -> None:
    assert git_environment(LOCAL, {})["GIT_ALLOW_PROTOCOL"] == "file:https"
    ssh = git_environment(SSH, {})
    assert ssh["GIT_ALLOW_PROTOCOL"] == "https:ssh"
    assert ssh["GIT_SSH_COMMAND"] == "ssh -o BatchMode=yes"
    assert git_environment(SSH, {"GIT_SSH_COMMAND": "ssh -i /etc/r2env/key"})["GIT_SSH_COMMAND"] == "ssh -i /etc/r2env/key"
    assert "GIT_SSH_COMMAND" not in git_environment(DEFAULT, {})


def test_git_refuses_transports_outside_the_policy(tmp_path: Path) -> None:
    """Not our parser: git itself, in this environment, even when handed the URL directly (as a submodule would)."""
    environment = git_environment(DEFAULT, {**os.environ, **{k: v for k, v in BASE.items() if k.startswith("GIT_")}})
    marker = tmp_path / "pwned"
    for url in (f"ext::sh -c touch% {marker}", tmp_path.as_uri(), str(tmp_path)):
        result = subprocess.run(["git", "ls-remote", "--", url], env=environment, capture_output=True, text=True, check=False)
        assert result.returncode != 0
        assert "not allowed" in result.stderr
    assert not marker.exists()


# --- Mirrors ------------------------------------------------------------------------------------------------


pytestmark = pytest.mark.usefixtures("isolated_git")


@pytest.fixture
def mirrors(tmp_path: Path) -> Mirrors:
    return Mirrors(tmp_path / "mirrors", LOCAL)


def the_mirror(mirrors_root: Path) -> Path:
    [mirror] = [path for path in mirrors_root.iterdir() if path.suffix == ".git"]
    return mirror


def fake_git(directory: Path, script: str) -> dict[str, str]:
    directory.mkdir()
    program = directory / "git"
    program.write_text("#!/bin/sh\n" + script)
    program.chmod(program.stat().st_mode | stat.S_IXUSR)
    return {"PATH": f"{directory}:/usr/bin:/bin", "HOME": os.environ["HOME"]}


@pytest.mark.parametrize(
    ("ref", "expected"),
    [("", "main"), ("HEAD", "main"), ("main", "main"), ("feature", "feature"), ("v1", "tagged"), ("refs/heads/feature", "feature")],
)
def test_resolve_names(origin: Origin, mirrors: Mirrors, ref: str, expected: str) -> None:
    assert mirrors.resolve(origin.url, ref) == getattr(origin, expected)


def test_resolve_full_and_abbreviated_commits(origin: Origin, mirrors: Mirrors) -> None:
    assert mirrors.resolve(origin.url, origin.feature) == origin.feature
    assert mirrors.resolve(origin.url, origin.tagged[:7]) == origin.tagged
    assert mirrors.resolve(origin.url, origin.main[:12].upper()) == origin.main
    assert mirrors.resolve(origin.url, origin.feature.upper()) == origin.feature


def test_resolve_accepts_what_validate_repo_accepts(origin: Origin, mirrors: Mirrors) -> None:
    assert mirrors.resolve(f"  {origin.path}/ ", "") == origin.main


def test_resolve_enforces_the_policy(origin: Origin, tmp_path: Path) -> None:
    with pytest.raises(RefusedSource, match="file:// URLs are not allowed"):
        Mirrors(tmp_path / "mirrors", DEFAULT).resolve(origin.url, "")
    with pytest.raises(UsageError, match="starts with '-'"):
        Mirrors(tmp_path / "mirrors", LOCAL).resolve(origin.url, "--upload-pack=x")
    assert not (tmp_path / "mirrors").exists()


def test_unknown_ref_is_one_line(origin: Origin, mirrors: Mirrors) -> None:
    with pytest.raises(SourceError) as raised:
        mirrors.resolve(origin.url, "no-such-branch")
    assert raised.value.message == f"{origin.url}: unknown ref 'no-such-branch'"
    assert raised.value.hint == "give a branch, tag or commit that exists in the repository"
    with pytest.raises(SourceError, match="unknown ref 'deadbeefdeadbeefdeadbeefdeadbeefdeadbeef'"):
        mirrors.resolve(origin.url, "deadbeef" * 5)


def test_a_second_resolve_sees_new_commits_and_deleted_branches(origin: Origin, mirrors: Mirrors) -> None:
    assert mirrors.resolve(origin.url, "main") == origin.main
    newer = commit(origin.path, "numpy==3\n")
    git("branch", "-q", "-D", "feature", cwd=origin.path)
    assert mirrors.resolve(origin.url, "main") == newer
    assert mirrors.resolve(origin.url, "") == newer
    with pytest.raises(SourceError, match="unknown ref 'feature'"):
        mirrors.resolve(origin.url, "feature")


def test_a_renamed_default_branch_is_followed(origin: Origin, mirrors: Mirrors) -> None:
    assert mirrors.resolve(origin.url, "") == origin.main
    git("branch", "-q", "-m", "main", "trunk", cwd=origin.path)
    trunk = commit(origin.path, "numpy==trunk\n")
    assert mirrors.resolve(origin.url, "") == trunk


def test_a_known_commit_needs_no_remote(origin: Origin, mirrors: Mirrors, tmp_path: Path) -> None:
    mirrors.resolve(origin.url, "")
    origin.path.rename(tmp_path / "gone")
    assert mirrors.resolve(origin.url, origin.feature) == origin.feature
    with pytest.raises(SourceError) as raised:
        mirrors.resolve(origin.url, "main")
    assert raised.value.message.startswith(f"{origin.url}: git fetch failed: ")
    assert "\n" not in str(raised.value)


def test_only_branches_and_tags_are_mirrored_other_commits_are_fetched_by_id(origin: Origin, mirrors: Mirrors, tmp_path: Path) -> None:
    git("checkout", "-q", "-b", "pull", cwd=origin.path)
    pulled = commit(origin.path, "numpy==pull\n")
    git("checkout", "-q", "main", cwd=origin.path)
    git("update-ref", "refs/pull/1/head", pulled, cwd=origin.path)
    git("branch", "-q", "-D", "pull", cwd=origin.path)
    mirrors.resolve(origin.url, "")
    refs = git("for-each-ref", "--format=%(refname)", cwd=the_mirror(tmp_path / "mirrors")).split()
    assert sorted(refs) == ["refs/heads/feature", "refs/heads/main", "refs/tags/v1"]
    assert mirrors.resolve(origin.url, pulled) == pulled


def test_export_is_a_checkout_of_the_commit_with_its_own_git(origin: Origin, mirrors: Mirrors, tmp_path: Path) -> None:
    commit_id = mirrors.resolve(origin.url, "v1")
    destination = tmp_path / "builds" / "b-1"
    checkout = mirrors.export(origin.url, commit_id, destination)
    assert (checkout.path, checkout.url, checkout.commit, checkout.ref) == (destination, origin.url, origin.tagged, "")
    assert (destination / "requirements.txt").read_text() == "numpy==1\n"
    assert git("rev-parse", "HEAD", cwd=destination) == origin.tagged
    assert git("status", "--porcelain", cwd=destination) == ""
    assert git("describe", "--tags", cwd=destination) == "v1"  # what setuptools-scm asks
    assert git("remote", "get-url", "origin", cwd=destination) == origin.url
    # Self-contained: the build context (and so the image) carries .git, where no mirror exists.
    assert not (destination / ".git" / "objects" / "info" / "alternates").exists()
    shutil.rmtree(tmp_path / "mirrors")
    assert git("log", "-1", "--format=%H", cwd=destination) == origin.tagged


def test_export_refuses_existing_destinations_short_commits_and_unknown_mirrors(origin: Origin, mirrors: Mirrors, tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no mirror yet"):
        mirrors.export(origin.url, origin.main, tmp_path / "b-0")
    commit_id = mirrors.resolve(origin.url, "")
    existing = tmp_path / "existing"
    existing.mkdir()
    with pytest.raises(SourceError, match="already exists"):
        mirrors.export(origin.url, commit_id, existing)
    with pytest.raises(UsageError, match="is not a full commit id"):
        mirrors.export(origin.url, commit_id[:7], tmp_path / "b-1")
    with pytest.raises(SourceError, match="git checkout failed"):
        mirrors.export(origin.url, "deadbeef" * 5, tmp_path / "b-2")
    assert not (tmp_path / "b-1").exists() and not (tmp_path / "b-2").exists()


def test_concurrent_resolves_share_one_mirror(origin: Origin, mirrors: Mirrors, tmp_path: Path) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda _: mirrors.resolve(origin.url, "main"), range(8)))
    assert results == [origin.main] * 8
    root = tmp_path / "mirrors"
    mirror = the_mirror(root)
    assert [path.name for path in root.iterdir() if ".tmp-" in path.name] == []
    subprocess.run(["git", "fsck", "--strict", "--no-progress"], cwd=mirror, capture_output=True, text=True, check=True)
    with ThreadPoolExecutor(max_workers=8) as pool:
        exported = list(pool.map(lambda n: mirrors.export(origin.url, origin.main, tmp_path / f"b-{n}").commit, range(8)))
    assert exported == [origin.main] * 8


def test_requests_arriving_together_share_one_clone_and_one_fetch(origin: Origin, tmp_path: Path) -> None:
    """A git that logs its command lines; the clone is slowed down so that every thread has asked before it ends."""
    log = tmp_path / "git.log"
    script = f'echo "$*" >> {log}\ncase "$1" in clone) sleep 0.5;; esac\nexec {shutil.which("git")} "$@"\n'
    mirrors = Mirrors(tmp_path / "mirrors", LOCAL, environ=fake_git(tmp_path / "bin", script))
    together = threading.Barrier(8)

    def resolve(_: int) -> str:
        together.wait()
        return mirrors.resolve(origin.url, "main")

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert set(pool.map(resolve, range(8))) == {origin.main}
    commands = [line.split() for line in log.read_text().splitlines()]
    assert sum(words[0] == "clone" for words in commands) == 1
    # A thread that asked after the clone had started cannot trust it to be recent enough and fetches once; every
    # thread had asked before that fetch started (the clone took 0.5 s), so no second fetch.
    assert sum(words[2:3] == ["fetch"] for words in commands) <= 1


def test_clone_failure_is_one_line_and_leaves_nothing(mirrors: Mirrors, tmp_path: Path) -> None:
    url = (tmp_path / "nowhere").as_uri()
    with pytest.raises(SourceError) as raised:
        mirrors.resolve(url, "")
    assert raised.value.message.startswith(f"{url}: git clone failed: ")
    assert "\n" not in str(raised.value)
    assert [path.suffix for path in (tmp_path / "mirrors").iterdir()] == [".lock"]


def test_stale_git_locks_are_cleared_but_live_ones_kept(origin: Origin, mirrors: Mirrors, tmp_path: Path) -> None:
    mirrors.resolve(origin.url, "main")
    lock = the_mirror(tmp_path / "mirrors") / "refs" / "heads" / "main.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text("")
    newer = commit(origin.path, "numpy==3\n")
    with pytest.raises(SourceError, match="git fetch failed: .*main.lock"):
        mirrors.resolve(origin.url, "main")  # a git of ours could still be holding it
    an_hour_ago = time.time() - 3600
    os.utime(lock, (an_hour_ago, an_hour_ago))  # left by a git killed with its daemon
    assert mirrors.resolve(origin.url, "main") == newer


def test_a_git_that_hangs_is_stopped_with_its_children(origin: Origin, tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    environ = fake_git(tmp_path / "bin", f"sleep 60 & echo $! > {pid_file}; wait\n")
    started = time.monotonic()
    with pytest.raises(SourceError) as raised:
        Mirrors(tmp_path / "mirrors", LOCAL, timeout=0.5, environ=environ).resolve(origin.url, "")
    assert time.monotonic() - started < 10
    assert raised.value.message == f"{origin.url}: git clone did not finish within 0.5 s"
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while Path(f"/proc/{child}").exists() and "Z" not in Path(f"/proc/{child}/stat").read_text().split(")")[-1][:3]:
        assert time.monotonic() < deadline, "the hung git's child is still running"
        time.sleep(0.05)


def test_missing_git_is_a_source_error(origin: Origin, tmp_path: Path) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    with pytest.raises(SourceError, match="cannot run git"):
        Mirrors(tmp_path / "mirrors", LOCAL, environ={"PATH": str(empty)}).resolve(origin.url, "")


def _repository_with(path: Path, name: str, content: bytes) -> str:
    """A repository at `path` whose one commit holds `content` as `name`; its file:// URL."""
    path.mkdir()
    git("init", "-q", cwd=path)
    (path / name).write_bytes(content)
    git("add", name, cwd=path)
    git("commit", "-q", "-m", "big", cwd=path)
    return path.as_uri()


def test_a_repository_larger_than_max_repo_size_is_refused_and_no_mirror_is_left(tmp_path: Path) -> None:
    url = _repository_with(tmp_path / "big", "data.bin", os.urandom(2 << 20))  # random: the pack stays 2 MiB
    mirrors = Mirrors(tmp_path / "mirrors", LOCAL, max_size=1 << 20)
    with pytest.raises(SourceError) as refused:
        mirrors.resolve(url, "")
    assert refused.value.message == f"{url}: the repository is larger than 1 MiB, the most this server fetches or checks out"
    assert "c.Serve.max_repo_size" in refused.value.hint
    assert [path.name for path in (tmp_path / "mirrors").iterdir() if not path.name.endswith(".lock")] == []


def test_a_small_mirror_whose_files_unpack_past_max_repo_size_is_not_checked_out(tmp_path: Path) -> None:
    url = _repository_with(tmp_path / "bomb", "zeros.bin", bytes(8 << 20))  # 8 MiB of zeros: a pack of a few KiB
    mirrors = Mirrors(tmp_path / "mirrors", LOCAL, max_size=1 << 20)
    commit = mirrors.resolve(url, "")
    with pytest.raises(SourceError, match="the repository is larger than 1 MiB"):
        mirrors.export(url, commit, tmp_path / "checkout")
    assert not (tmp_path / "checkout").exists()


def test_without_max_repo_size_any_repository_is_fetched(tmp_path: Path) -> None:
    url = _repository_with(tmp_path / "big", "data.bin", os.urandom(2 << 20))
    mirrors = Mirrors(tmp_path / "mirrors", LOCAL)
    commit = mirrors.resolve(url, "")
    assert mirrors.export(url, commit, tmp_path / "checkout").path.joinpath("data.bin").stat().st_size == 2 << 20
