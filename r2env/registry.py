"""Image references, registry credentials and the spec-digest tag: the pure part of publishing an image.

Credentials come from the environment (or the Docker config, read by the engine), never from the command line,
where they would end up in CI logs, shell history and `docker inspect` of images that ran r2env."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Mapping

from r2env import __version__
from r2env.errors import UsageError

USERNAME_VARIABLE = "R2ENV_REGISTRY_USERNAME"
PASSWORD_VARIABLE = "R2ENV_REGISTRY_PASSWORD"
DEFAULT_REGISTRY = "docker.io"
KEY_TAG_PREFIX = "r2env-"

# The distribution reference grammar, simplified to what `docker push` accepts: lower-case path components,
# an optional registry host[:port] first, a tag of at most 128 word characters, dots and dashes
# (https://github.com/distribution/reference/blob/main/reference.go).
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_HOST = r"(?:[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_REPOSITORY = re.compile(rf"^(?:(?P<host>{_HOST})/)?(?P<path>{_COMPONENT}(?:/{_COMPONENT})*)$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")


@dataclass(frozen=True)
class Reference:
    repository: str  # everything before the tag, registry host included when given
    tag: str
    registry: str  # the host the repository lives on (docker.io when none is named)

    def __str__(self) -> str:
        return f"{self.repository}:{self.tag}"

    def with_tag(self, tag: str) -> "Reference":
        return Reference(self.repository, tag, self.registry)


def parse_reference(text: str) -> Reference:
    """REGISTRY/NAME[:TAG] → Reference; the tag defaults to `latest`. Digests (@sha256:…) name no pushable tag."""
    if "@" in text:
        raise UsageError(f"image name {text!r} has a digest", "give REGISTRY/NAME[:TAG]; r2env reports the digest itself")
    repository, tag = text, "latest"
    last = text.rsplit("/", 1)[-1]
    if ":" in last:
        repository, tag = text.rsplit(":", 1)
    match = _REPOSITORY.match(repository)
    # distribution/reference's NameTotalLengthMax: a longer name is refused by the registry, late.
    if not match or not _TAG.match(tag) or len(repository) > 255:
        raise UsageError(
            f"image name {text!r} is not a valid reference",
            "use lower-case REGISTRY/NAME[:TAG], e.g. ghcr.io/myteam/analysis:v1",
        )
    host = match.group("host")
    # As docker does: the first component names a registry only if it looks like a host.
    if host and not ("." in host or ":" in host or host == "localhost" or host.startswith("[")):
        return Reference(repository, tag, DEFAULT_REGISTRY)
    return Reference(repository, tag, host or DEFAULT_REGISTRY)


def check_tag(tag: str) -> str:
    if not _TAG.match(tag):
        raise UsageError(f"tag {tag!r} is not a valid tag", "use letters, digits, '_', '.' and '-' (at most 128, not starting with '.' or '-')")
    return tag


@dataclass(frozen=True)
class Credentials:
    registry: str
    username: str
    password: str = field(repr=False)  # never printed, not even in a traceback's locals

    def auth_config(self) -> dict[str, str]:
        return {"username": self.username, "password": self.password, "serveraddress": self.registry}


def credentials_from_env(registry: str, env: Mapping[str, str]) -> Credentials | None:
    """Credentials for `registry` from R2ENV_REGISTRY_USERNAME/PASSWORD; None: the engine uses the Docker config."""
    username, password = env.get(USERNAME_VARIABLE, ""), env.get(PASSWORD_VARIABLE, "")
    if bool(username) != bool(password):
        missing = PASSWORD_VARIABLE if username else USERNAME_VARIABLE
        raise UsageError(f"{missing} is not set", f"set both {USERNAME_VARIABLE} and {PASSWORD_VARIABLE}, or neither (then `docker login` credentials are used)")
    return Credentials(registry, username, password) if username else None


def key_tag(labels: Mapping[str, str], appendix: str = "") -> str:
    """The tag that names a locked image completely: r2env's version, the spec digest, the repository's contents and
    the appendix. An image pushed under it is the image this run would build, so `--check-registry` can skip the build."""
    parts = [__version__, labels["org.r2env.spec-digest"], labels["org.r2env.context-digest"], appendix]
    return KEY_TAG_PREFIX + hashlib.sha256("\n".join(parts).encode()).hexdigest()
