"""Build secrets: the CA bundle, proxies and index settings go into private files, and only there."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from r2env.build_secrets import FetchSettings, write_build_secrets
from buildpacks import load_buildpacks
from r2env.errors import UsageError
from r2env.inspect import inspect
from r2env.plan import plan
from r2env.render import SECRET_CA, SECRET_ENV, render_dockerfile
from r2env.repo import MemoryRepo
from r2env.select import select

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
    assert set(secrets) == {SECRET_CA, SECRET_ENV}
    assert secrets[SECRET_CA].read_text() == PEM
    # NODE_EXTRA_CA_CERTS and npm_config_cafile: npm in postBuild (Node.js ignores SSL_CERT_FILE).
    for exported in ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "GIT_SSL_CAINFO", "NODE_EXTRA_CA_CERTS", "npm_config_cafile"):
        assert sourced(secrets[SECRET_ENV], exported) == IN_BUILD_CA


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


def test_proxies_and_indexes_go_only_into_env_sh(pem: Path, out: Path) -> None:
    proxy = "http://user:p@ss w'rd$@proxy.example:3128"
    index = "https://idx.example/simple?a=1&b=$HOME"
    settings = FetchSettings(index_url=index, extra_index_url="https://extra.example/simple", python_install_mirror="https://m.example")
    host_env = {"HTTPS_PROXY": proxy, "no_proxy": "localhost,.example", "SSL_CERT_FILE": str(pem), "UNRELATED": "x"}
    secrets = write_build_secrets(settings, host_env, out)
    env_sh = secrets[SECRET_ENV]
    expected = {
        "HTTPS_PROXY": proxy, "no_proxy": "localhost,.example",
        "PIP_INDEX_URL": index, "UV_INDEX_URL": index,
        "PIP_EXTRA_INDEX_URL": "https://extra.example/simple", "UV_EXTRA_INDEX_URL": "https://extra.example/simple",
        "UV_PYTHON_INSTALL_MIRROR": "https://m.example", "UNRELATED": "",
    }
    assert {name: sourced(env_sh, name) for name in expected} == expected
    assert sorted(p.name for p in out.iterdir()) == ["ca.pem", "env.sh"]
    assert proxy not in secrets[SECRET_CA].read_text() and index not in secrets[SECRET_CA].read_text()


def test_secret_values_never_reach_the_dockerfile(out: Path) -> None:
    facts = inspect(MemoryRepo({"requirements.txt": "numpy\n"}))
    spec = plan(facts, select(facts, load_buildpacks()))
    write_build_secrets(FetchSettings(index_url="https://secret-index.example/simple"), {"HTTPS_PROXY": "http://proxy.example"}, out)
    text = render_dockerfile(spec) + spec.to_json()
    assert "secret-index.example" not in text and "proxy.example" not in text
    assert "/run/secrets/r2env-env" in text


def test_no_settings_and_empty_environment_mean_no_secrets(out: Path) -> None:
    assert write_build_secrets(FetchSettings(), {}, out) == {}
    assert list(out.iterdir()) == []


def test_secret_files_are_private(pem: Path, out: Path) -> None:
    secrets = write_build_secrets(FetchSettings(index_url="https://idx.example"), {"SSL_CERT_FILE": str(pem)}, out)
    assert {path.stat().st_mode & 0o777 for path in secrets.values()} == {0o600}
