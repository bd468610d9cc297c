"""Which Docker engine r2env talks to: plain data, turned into the variables both docker-py and the docker CLI read
(DOCKER_HOST, DOCKER_TLS_VERIFY, DOCKER_CERT_PATH), so every engine call, BuildKit builds through the CLI included,
goes to the same engine. Pure: r2env/engine.py connects, r2env/config.py checks the options."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

# docker's own variables (https://docs.docker.com/reference/cli/docker/#environment-variables); a context would
# override DOCKER_HOST for the CLI but not for docker-py, so an address given to r2env drops it.
_ENGINE_VARIABLES = ("DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "DOCKER_CONTEXT", "DOCKER_TLS")
SCHEMES = ("unix://", "tcp://", "ssh://", "npipe://")
# A buildx builder's name (`docker buildx create --name`): what BuildKit's CLI accepts, and nothing a shell reads.
BUILDER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
DEFAULT_HOST = "unix:///var/run/docker.sock"


@dataclass(frozen=True)
class EngineAddress:
    """host: DOCKER_HOST's notation (unix://, tcp://HOST:PORT, ssh://USER@HOST); "" keeps the environment's.
    cert_path: a directory with ca.pem, cert.pem and key.pem (docker's names): TLS, with the server verified.
    buildx_builder: a named `docker buildx` builder (remote, kubernetes or docker-container driver) for builds."""

    host: str = ""
    cert_path: str = ""
    buildx_builder: str = ""

    def environment(self, base: Mapping[str, str]) -> dict[str, str]:
        """`base` (the process environment) with this engine's variables in place of its own."""
        if not self.host and not self.cert_path:
            return dict(base)
        env = {key: value for key, value in base.items() if key not in _ENGINE_VARIABLES}
        env["DOCKER_HOST"] = self.host or base.get("DOCKER_HOST", DEFAULT_HOST)
        if self.cert_path:
            env["DOCKER_TLS_VERIFY"] = "1"
            env["DOCKER_CERT_PATH"] = self.cert_path
        return env

    def describe(self, base: Mapping[str, str]) -> str:
        """The engine's address as the user gave it (for messages)."""
        return self.environment(base).get("DOCKER_HOST") or DEFAULT_HOST


def check_host(host: str) -> str:
    """"" when `host` is a DOCKER_HOST address r2env can use, else what is wrong with it."""
    if not host:
        return ""
    if not host.startswith(SCHEMES):
        return f"does not start with {', '.join(SCHEMES)}"
    if any(character.isspace() or ord(character) < 32 for character in host):
        return "contains spaces or control characters"
    return ""
