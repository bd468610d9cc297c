"""Build secrets: the CA bundle, proxies and index settings go into private files, and only there."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Mapping

import pytest

from r2env.build_secrets import FetchSettings, without_credentials, write_build_secrets
from buildpacks import load_buildpacks
from r2env.errors import UsageError
from r2env.inspect import inspect
from r2env.node_installer import NODE_VERSION
from r2env.plan import plan
from r2env.render import SECRET_CA, env_secret, render_dockerfile
from r2env.repo import MemoryRepo
from r2env.select import select
from r2env.spec import BuildSecret, ImageSpec, Step

PEM = "-----BEGIN CERTIFICATE-----\nMIIBtestcertificate\n-----END CERTIFICATE-----\n"
IN_BUILD_CA = "/run/secrets/r2env-ca"


@pytest.fixture
def pem(tmp_path: Path) -> Path:
    path = tmp_path / "corporate-ca.pem"
    path.write_text(PEM)
    return path


@pytest.fixture
def out(tmp_path: Path) -> Path:
    directory = tmp_path / "secrets"
    directory.mkdir()
    return directory


def sourced(env_file: Path, variable: str) -> str:
    """What a shell that sources env.sh sees: proves the values are shell-quoted correctly."""
    result = subprocess.run(
        ["bash", "-c", f'. "$1" && printf %s "${variable}"', "bash", str(env_file)],
        capture_output=True, text=True, check=True, env={},
    )
    return result.stdout


@pytest.mark.parametrize("variable", ["SSL_CERT_FILE", "PIP_CERT", "REQUESTS_CA_BUNDLE"])
def test_ca_bundle_is_detected_from_the_host_environment(variable: str, pem: Path, out: Path) -> None:
    secrets = write_build_secrets(FetchSettings(), {variable: str(pem)}, out)
    assert set(secrets) == {SECRET_CA, env_secret("ca"), env_secret("ca", public=True)}
    assert secrets[SECRET_CA].read_text() == PEM
    # NODE_EXTRA_CA_CERTS and npm_config_cafile: npm in postBuild (Node.js ignores SSL_CERT_FILE).
    for exported in ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "GIT_SSL_CAINFO", "NODE_EXTRA_CA_CERTS", "npm_config_cafile"):
        assert sourced(secrets[env_secret("ca")], exported) == IN_BUILD_CA
        assert sourced(secrets[env_secret("ca", public=True)], exported) == IN_BUILD_CA  # not a secret


def test_host_variable_pointing_nowhere_is_ignored(tmp_path: Path, out: Path) -> None:
    assert write_build_secrets(FetchSettings(), {"SSL_CERT_FILE": str(tmp_path / "missing.pem")}, out) == {}


def test_extra_ca_certs_are_added_to_the_default_roots(pem: Path, out: Path) -> None:
    secrets = write_build_secrets(FetchSettings(extra_ca_certs=str(pem)), {}, out)
    assert secrets[SECRET_CA].read_text().endswith(PEM)


def test_extra_ca_certs_missing_file_is_a_usage_error(tmp_path: Path, out: Path) -> None:
    with pytest.raises(UsageError, match="no such file"):
        write_build_secrets(FetchSettings(extra_ca_certs=str(tmp_path / "missing.pem")), {}, out)


def test_extra_ca_certs_without_a_certificate_is_a_usage_error(tmp_path: Path, out: Path) -> None:
    not_pem = tmp_path / "notes.txt"
    not_pem.write_text("hello\n")
    with pytest.raises(UsageError, match="no PEM certificate"):
        write_build_secrets(FetchSettings(extra_ca_certs=str(not_pem)), {}, out)


def test_proxies_and_indexes_go_only_into_their_groups_env_files(pem: Path, out: Path) -> None:
    proxy = "http://user:p@ss w'rd$@proxy.example:3128"
    index = "https://idx.example/simple?a=1&b=$HOME"
    settings = FetchSettings(index_url=index, extra_index_url="https://extra.example/simple", python_install_mirror="https://m.example")
    host_env = {"HTTPS_PROXY": proxy, "no_proxy": "localhost,.example", "SSL_CERT_FILE": str(pem), "UNRELATED": "x"}
    secrets = write_build_secrets(settings, host_env, out)
    expected: dict[BuildSecret, dict[str, str]] = {
        "proxy": {"HTTPS_PROXY": proxy, "no_proxy": "localhost,.example", "PIP_INDEX_URL": "", "UNRELATED": ""},
        "index": {"PIP_INDEX_URL": index, "UV_INDEX_URL": index, "PIP_EXTRA_INDEX_URL": "https://extra.example/simple",
                  "UV_EXTRA_INDEX_URL": "https://extra.example/simple", "HTTPS_PROXY": "", "UV_PYTHON_INSTALL_MIRROR": ""},
        "python-mirror": {"UV_PYTHON_INSTALL_MIRROR": "https://m.example", "PIP_INDEX_URL": "", "HTTPS_PROXY": ""},
    }
    for group, variables in expected.items():
        assert {name: sourced(secrets[env_secret(group)], name) for name in variables} == variables, group
    # The proxy's password cannot be taken apart from it (an unencoded "@" and space): withheld from repository code.
    assert sourced(secrets[env_secret("proxy", public=True)], "HTTPS_PROXY") == ""
    assert sourced(secrets[env_secret("proxy", public=True)], "no_proxy") == "localhost,.example"
    assert sorted(p.name for p in out.iterdir()) == [
        "ca.pem", *(f"env-{group}{suffix}.sh" for group in ("ca", "index", "proxy", "python-mirror") for suffix in ("-public", ""))
    ]
    assert proxy not in secrets[SECRET_CA].read_text() and index not in secrets[SECRET_CA].read_text()


@pytest.mark.parametrize(("value", "public"), [
    ("http://user:PLANTED@proxy.example:3128", "http://proxy.example:3128"),
    ("https://__token__:pypi-AgEI@idx.example/simple", "https://idx.example/simple"),
    ("https://token@idx.example/simple https://u:p@other.example/simple", "https://idx.example/simple https://other.example/simple"),
    ("http://u:p%40ss@proxy.example", "http://proxy.example"),
    ("http://proxy.example:3128", "http://proxy.example:3128"),
    ("localhost,.example,10.0.0.0/8", "localhost,.example,10.0.0.0/8"),
    ("http://user:p@ss@proxy.example", "http://proxy.example"),
    ("http://user:p@ss w'rd$@proxy.example:3128", None),  # not a URL one can take apart: withheld
    ("user:secret@proxy.example:3128", None),  # no scheme: withheld rather than guessed at
])
def test_values_for_repository_code_lose_their_credentials(value: str, public: str | None) -> None:
    assert without_credentials(value) == public


def test_repository_code_gets_the_settings_without_credentials(out: Path) -> None:
    settings = FetchSettings(index_url="https://u:PLANTED-1@idx.example/simple", extra_index_url="https://extra.example/simple")
    secrets = write_build_secrets(settings, {"HTTPS_PROXY": "http://u:PLANTED-2@proxy.example:3128"}, out)
    public = {group: secrets[env_secret(group, public=True)].read_text() for group in ("proxy", "index")}
    assert "PLANTED" not in "".join(public.values())
    assert sourced(secrets[env_secret("proxy", public=True)], "HTTPS_PROXY") == "http://proxy.example:3128"
    assert sourced(secrets[env_secret("index", public=True)], "PIP_INDEX_URL") == "https://idx.example/simple"
    assert sourced(secrets[env_secret("index", public=True)], "PIP_EXTRA_INDEX_URL") == "https://extra.example/simple"
    assert "PLANTED-1" in secrets[env_secret("index")].read_text() and "PLANTED-2" in secrets[env_secret("proxy")].read_text()


def test_secret_values_never_reach_the_dockerfile(out: Path) -> None:
    facts = inspect(MemoryRepo({"requirements.txt": "numpy\n"}))
    spec = plan(facts, select(facts, load_buildpacks()))
    write_build_secrets(FetchSettings(index_url="https://secret-index.example/simple"), {"HTTPS_PROXY": "http://proxy.example"}, out)
    text = render_dockerfile(spec) + spec.to_json()
    assert "secret-index.example" not in text and "proxy.example" not in text
    assert "/run/secrets/r2env-env-index" in text


def test_no_settings_and_empty_environment_mean_no_secrets(out: Path) -> None:
    assert write_build_secrets(FetchSettings(), {}, out) == {}
    assert list(out.iterdir()) == []


def test_secret_files_are_private(pem: Path, out: Path) -> None:
    secrets = write_build_secrets(FetchSettings(index_url="https://idx.example"), {"SSL_CERT_FILE": str(pem)}, out)
    assert {path.stat().st_mode & 0o777 for path in secrets.values()} == {0o600}


# --- what each step mounts (issue 17: a postBuild could read the whole secret env file) -------------------------

def spec_of(files: Mapping[str, str]) -> ImageSpec:
    facts = inspect(MemoryRepo(files, frozenset(name for name in files if name.endswith("postBuild"))))
    return plan(facts, select(facts, load_buildpacks()))


def mounted(spec: ImageSpec) -> dict[str, set[str]]:
    """{step description: the secret ids its RUN line mounts}."""
    lines = render_dockerfile(spec).splitlines()
    return {line.split(": ", 1)[1]: set(re.findall(r"type=secret,id=([\w-]+)", lines[i + 1]))
            for i, line in enumerate(lines) if line.startswith("# [") and ": " in line}


def step(spec: ImageSpec, starting: str) -> Step:
    (found,) = [s for s in spec.steps if s.description.startswith(starting)]
    return found


CA = {"r2env-ca", "r2env-env-ca"}
ALL_REPO_KINDS = {
    "requirements.txt": "tabulate==0.9.0\n-e .\n", "setup.py": "from setuptools import setup\nsetup(name='x')\n",
    "apt.txt": "jq\n", "postBuild": "#!/bin/sh\ntrue\n", "runtime.txt": "python-3.12\n",
}


@pytest.mark.parametrize(("description", "expected"), [
    ("install system packages", CA | {"r2env-env-proxy"}),  # apt: no pip index
    ("install apt.txt packages", CA | {"r2env-env-proxy"}),
    (f"Node.js {NODE_VERSION} and npm from the package index", CA | {"r2env-env-proxy", "r2env-env-index"}),  # pip, in its stage
    ("install CPython 3.12", CA | {"r2env-env-proxy", "r2env-env-index", "r2env-env-python-mirror"}),
    ("install the notebook server", CA | {"r2env-env-proxy", "r2env-env-index"}),
    ("install the packages named in requirements.txt", CA | {"r2env-env-proxy", "r2env-env-index"}),
    # The repository's own code: its package build (-e .) and its postBuild get only the credential-free copies.
    ("install requirements.txt (local references)", {"r2env-ca", "r2env-env-ca-public", "r2env-env-proxy-public", "r2env-env-index-public"}),
    ("run postBuild", {"r2env-ca", "r2env-env-ca-public", "r2env-env-proxy-public", "r2env-env-index-public"}),
    (f"Node.js {NODE_VERSION} and npm in /usr/local", set()),  # the copy out of that stage
])
def test_each_step_mounts_only_the_secrets_it_needs(description: str, expected: set[str]) -> None:
    spec = spec_of(ALL_REPO_KINDS)
    (ids,) = [ids for name, ids in mounted(spec).items() if name.startswith(description)]
    assert ids == expected


@pytest.mark.parametrize("files", [
    {"setup.py": "from setuptools import setup\nsetup(name='x')\n"},
    {"pyproject.toml": "[project]\nname = 'x'\nversion = '1'\ndependencies = ['tabulate']\n[build-system]\nrequires = ['setuptools']\nbuild-backend = 'setuptools.build_meta'\n"},
    {"Pipfile": "[packages]\ntabulate = '*'\nx = {path = '.', editable = true}\n"},
])
def test_installing_the_repositorys_own_package_is_repository_code(files: dict[str, str]) -> None:
    spec = spec_of(files)
    own = [s for s in spec.steps if s.stage.name == "REPO" and s.kind == "run" and "pip install" in s.script]
    assert own and all(s.repository_code for s in own)
    for ids in (mounted(spec)[s.description] for s in own):
        assert ids and all(i == "r2env-ca" or i.endswith("-public") for i in ids), ids
    # Dependencies the repository declares are installed by r2env's own step, before the repository is copied.
    assert not any(s.repository_code for s in spec.steps if s.stage.name != "REPO" and s.stage.name != "POST_BUILD")


def test_a_step_sources_exactly_the_files_it_mounts() -> None:
    text = render_dockerfile(spec_of(ALL_REPO_KINDS))
    for line in text.splitlines():
        if line.startswith("RUN "):
            ids = re.findall(r"type=secret,id=(r2env-env-[\w-]+)", line)
            sourced_files = re.findall(r"/run/secrets/(r2env-env-[\w-]+)", line.split("for s in", 1)[-1]) if ids else []
            assert sourced_files == ids, line


def test_the_postbuild_step_cannot_reach_the_full_secret_files() -> None:
    run = step(spec_of(ALL_REPO_KINDS), "run postBuild")
    assert run.repository_code and run.user == "user"
    line = [l for l in render_dockerfile(spec_of(ALL_REPO_KINDS)).splitlines() if l.startswith("RUN") and "./postBuild" in l][0]
    assert re.findall(r"r2env-env-[\w-]+", line) and all(n.endswith("-public") for n in re.findall(r"r2env-env-[\w-]+", line))


def test_repository_code_mounts_no_shared_cache() -> None:
    # The pip cache mount is shared by every build on the engine: a setup.py or postBuild that could write there
    # could plant wheels or cached index answers for other repositories' builds (issue 17).
    spec = spec_of(ALL_REPO_KINDS)
    code = [s for s in spec.steps if s.repository_code]
    assert {s.stage.name for s in code} == {"REPO", "POST_BUILD"}
    assert all(s.caches in ((), ("uv",)) for s in code)
    lines = [line for line in render_dockerfile(spec).splitlines() if line.startswith("RUN ")]
    for s in code:
        (line,) = [line for line in lines if line.endswith(s.script)]
        assert "type=cache" not in line and "PIP_CACHE_DIR" not in line and "UV_CACHE_DIR" not in line, line
        if s.caches:
            assert "UV_NO_CACHE=1" in line, line  # uv is mounted, its cache is not
    assert any("id=r2env-uv-1000" in line for line in lines)  # r2env's own install steps keep the cache
