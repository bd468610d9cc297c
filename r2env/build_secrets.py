"""What package downloads inside a build need from the host — CA bundle, proxies, index — as BuildKit
secret files, so none of it lands in a layer, the image config or `docker history`.

One file per group of settings (r2env.spec.BuildSecret), each mounted only in the steps whose `secrets` name it
(r2env/render.py), and a second, credential-free copy of each for steps that run the repository's own code
(issue 17: a postBuild could read the operator's mirror password)."""

from __future__ import annotations

import re
import shlex
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, get_args

from r2env.errors import UsageError
from r2env.render import SECRET_CA, env_secret
from r2env.spec import BuildSecret

_CA_VARIABLES = ("SSL_CERT_FILE", "PIP_CERT", "REQUESTS_CA_BUNDLE")
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "no_proxy", "all_proxy")
_IN_BUILD_CA = "/run/secrets/" + SECRET_CA
# Node.js adds NODE_EXTRA_CA_CERTS to its own built-in roots (it ignores SSL_CERT_FILE), for npm and for node run
# by postBuild scripts (jlpm when `jupyter labextension install` builds); npm_config_cafile is npm's own setting
# (https://docs.npmjs.com/cli/v9/using-npm/config#cafile). npm already honours the proxy variables below.
_IN_BUILD_CA_VARIABLES = (
    "PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "GIT_SSL_CAINFO", "NODE_EXTRA_CA_CERTS", "npm_config_cafile",
)
# The user-info of a URL (RFC 3986 section 3.2.1: `user:password@` before the host).
_USERINFO = re.compile(r"(?<=://)[^/\s]*@")


def without_credentials(value: str) -> str | None:
    """`value` with the user-info of every URL in it removed, or None when an "@" is still left (a value this
    cannot take apart is withheld rather than guessed at)."""
    cleaned = _USERINFO.sub("", value)
    return None if "@" in cleaned else cleaned


@dataclass(frozen=True)
class FetchSettings:
    extra_ca_certs: str = ""  # a PEM file to trust in addition to the public roots
    index_url: str = ""
    extra_index_url: str = ""
    python_install_mirror: str = ""


def _default_bundle() -> str:
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile):
        if candidate and Path(candidate).is_file():
            return Path(candidate).read_text(encoding="utf-8", errors="replace")
    return ""


def ca_bundle(settings: FetchSettings, host_env: Mapping[str, str]) -> str:
    """The PEM text builds should trust, or "" for the image's own roots."""
    if settings.extra_ca_certs:
        path = Path(settings.extra_ca_certs).expanduser()
        if not path.is_file():
            raise UsageError(f"--extra-ca-certs {settings.extra_ca_certs}: no such file", "give a PEM file")
        extra = path.read_text(encoding="utf-8", errors="replace")
        if "BEGIN CERTIFICATE" not in extra:
            raise UsageError(f"--extra-ca-certs {settings.extra_ca_certs}: no PEM certificate in it", "give a PEM file")
        return _default_bundle() + "\n" + extra
    # A bundle the host already points its tools at replaces their default roots there; do the same in the build.
    for variable in _CA_VARIABLES:
        value = host_env.get(variable, "")
        if value and Path(value).is_file():
            return Path(value).read_text(encoding="utf-8", errors="replace")
    return ""


def fetch_exports(settings: FetchSettings, host_env: Mapping[str, str], has_ca: bool) -> dict[BuildSecret, dict[str, str]]:
    """The variables of each group of settings, as the build steps that get that group see them."""
    groups: dict[BuildSecret, dict[str, str]] = {group: {} for group in get_args(BuildSecret)}
    if has_ca:
        groups["ca"] = dict.fromkeys(_IN_BUILD_CA_VARIABLES, _IN_BUILD_CA)
    groups["proxy"] = {variable: host_env[variable] for variable in PROXY_VARIABLES if host_env.get(variable)}
    if settings.index_url:
        groups["index"]["PIP_INDEX_URL"] = groups["index"]["UV_INDEX_URL"] = settings.index_url
    if settings.extra_index_url:
        groups["index"]["PIP_EXTRA_INDEX_URL"] = groups["index"]["UV_EXTRA_INDEX_URL"] = settings.extra_index_url
    if settings.python_install_mirror:
        groups["python-mirror"]["UV_PYTHON_INSTALL_MIRROR"] = settings.python_install_mirror
    return groups


def public_exports(exports: Mapping[str, str]) -> dict[str, str]:
    """What a step running the repository's code gets: every value without its credentials."""
    public = {key: without_credentials(value) for key, value in exports.items()}
    return {key: value for key, value in public.items() if value is not None}


def _env_file(path: Path, exports: Mapping[str, str]) -> Path:
    path.write_text("".join(f"export {key}={shlex.quote(value)}\n" for key, value in sorted(exports.items())), encoding="utf-8")
    return path


def write_build_secrets(settings: FetchSettings, host_env: Mapping[str, str], directory: Path) -> dict[str, Path]:
    """Write the secret files into `directory` (a private temporary folder) and return {secret id: path}."""
    secrets: dict[str, Path] = {}
    bundle = ca_bundle(settings, host_env)
    if bundle:
        secrets[SECRET_CA] = directory / "ca.pem"
        secrets[SECRET_CA].write_text(bundle, encoding="utf-8")
    for group, exports in fetch_exports(settings, host_env, bool(bundle)).items():
        if exports:
            secrets[env_secret(group)] = _env_file(directory / f"env-{group}.sh", exports)
            secrets[env_secret(group, public=True)] = _env_file(directory / f"env-{group}-public.sh", public_exports(exports))
    for path in secrets.values():
        path.chmod(0o600)
    return secrets
