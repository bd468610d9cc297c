"""A real registry on 127.0.0.1 for the CI-step tests: Debian's docker-registry, started with its own config.

The packaged /etc/docker/registry/config.yml cannot be used as is: it listens on every interface on port 5000,
stores under /var/lib and asks for an htpasswd file it does not ship."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import docker
import pytest

MANIFEST_TYPES = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"


@dataclass(frozen=True)
class Registry:
    host: str  # 127.0.0.1:PORT
    auth: tuple[str, str] | None  # (user, password) when it asks for credentials

    def manifest_digest(self, repository: str, tag: str) -> str | None:
        """What the registry itself says (Docker-Content-Digest), not what the engine reports."""
        request = urllib.request.Request(f"http://{self.host}/v2/{repository}/manifests/{tag}", method="HEAD", headers={"Accept": MANIFEST_TYPES})
        if self.auth:
            import base64

            token = base64.b64encode(":".join(self.auth).encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return str(response.headers["Docker-Content-Digest"])
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return None
            raise


def registry_binary() -> str:
    found = shutil.which("docker-registry") or ("/usr/bin/docker-registry" if os.access("/usr/bin/docker-registry", os.X_OK) else None)
    if not found:
        message = "Debian's docker-registry is not installed (apt-get install docker-registry)"
        if os.environ.get("R2ENV_REQUIRE_ENGINE") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_registry(directory: Path, auth: tuple[str, str] | None = None) -> Iterator[Registry]:
    binary = registry_binary()
    port = free_port()
    config = [
        "version: 0.1",
        "log:", "  level: warn",
        "storage:", "  filesystem:", f"    rootdirectory: {directory / 'data'}", "  delete:", "    enabled: true",
        "http:", f"  addr: 127.0.0.1:{port}", "  secret: r2env-test-only",
    ]
    if auth:
        import bcrypt

        (directory / "htpasswd").write_text(f"{auth[0]}:{bcrypt.hashpw(auth[1].encode(), bcrypt.gensalt()).decode()}\n")
        config += ["auth:", "  htpasswd:", "    realm: r2env-test", f"    path: {directory / 'htpasswd'}"]
    (directory / "config.yml").write_text("\n".join(config) + "\n")
    log = (directory / "registry.log").open("w")
    process = subprocess.Popen([binary, "serve", str(directory / "config.yml")], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=2)
                break
            except urllib.error.HTTPError:
                break  # 401 from a registry with auth: it answers
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"docker-registry did not start:\n{(directory / 'registry.log').read_text()}")
                time.sleep(0.1)
        yield Registry(f"127.0.0.1:{port}", auth)
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def forget_build_cache(client: docker.DockerClient, marker: str) -> list[str]:
    """Delete this test's BuildKit cache records: those whose step text contains `marker`, and every record built
    on them. Removing an image keeps BuildKit's cache, so without this a rebuild would be cached anyway and
    --cache-from would prove nothing. Records of other builds (other tests, other users of the engine) stay."""
    records = client.api.df().get("BuildCache") or []
    children: dict[str, list[str]] = {}
    for record in records:
        children.setdefault(record.get("Parent") or "", []).append(record["ID"])
    doomed = [record["ID"] for record in records if marker in (record.get("Description") or "")]
    queue = list(doomed)
    while queue:
        for child in children.get(queue.pop(), []):
            doomed.append(child)
            queue.append(child)
    for record_id in reversed(doomed):  # children first: a parent in use by a child cannot go
        client.api.prune_builds(filters={"id": [record_id]})
    remaining = {record["ID"] for record in client.api.df().get("BuildCache") or []}
    assert not remaining & set(doomed), "some of this test's build cache records survived"
    return doomed
