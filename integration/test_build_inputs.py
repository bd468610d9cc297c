"""What reaches the build, and what must not stay in the image: CA bundle, proxy, index settings."""

from __future__ import annotations

import hashlib
import io
import shutil
import tarfile
from pathlib import Path

import docker

from support import EXAMPLES, build_ok, run_in

MARKER = "r2env-secret-marker.invalid"
# An index that answers 404 for every project (a path PyPI does not serve): the installer goes on with the main
# index at once, where an unreachable one cost pip five retries per package (about ten minutes on a cold engine).
INDEX = f"https://pypi.org/{MARKER}/simple"


def _image_files_containing(engine: docker.DockerClient, image: str, needle: bytes) -> list[str]:
    container = engine.containers.create(image)
    try:
        stream = io.BytesIO(b"".join(container.export()))
    finally:
        container.remove(force=True)
    found = []
    with tarfile.open(fileobj=stream) as archive:
        for member in archive:
            if member.isfile() and member.size < 50_000_000:
                data = archive.extractfile(member)
                if data is not None and needle in data.read():
                    found.append(member.name)
    return found


def test_ca_bundle_proxy_and_index_settings_reach_downloads_but_not_the_image(
    engine: docker.DockerClient, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(EXAMPLES / "binder-folder", repo)
    # postBuild proves the settings were there while packages were fetched; it compares digests so that
    # the marker itself is not written into the repository (and so the image).
    def check(variable: str, value: str) -> str:
        digest = hashlib.sha256(value.encode()).hexdigest()
        return f'[ "$(printf %s "${variable}" | sha256sum | cut -d" " -f1)" = {digest} ] || {{ echo "{variable} not passed" >&2; exit 1; }}\n'

    (repo / "binder" / "postBuild").write_text(
        (repo / "binder" / "postBuild").read_text()
        + "\n" + check("no_proxy", MARKER) + check("PIP_EXTRA_INDEX_URL", INDEX)
        + '[ -s "$PIP_CERT" ] || { echo "PIP_CERT not passed" >&2; exit 1; }\n'
    )
    build_ok(str(repo), "--image-name", "r2env-it/secrets", "--extra-index-url", INDEX, env={"no_proxy": MARKER})
    image = engine.images.get("r2env-it/secrets")
    env = "\n".join(image.attrs["Config"]["Env"])
    for name in ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "PIP_EXTRA_INDEX_URL", "no_proxy"):
        assert name + "=" not in env
    history = engine.api.history(image.id)
    assert MARKER not in repr(history)
    assert MARKER not in repr(image.attrs)
    assert _image_files_containing(engine, "r2env-it/secrets", MARKER.encode()) == []
    assert run_in(engine, "r2env-it/secrets", ["bash", "-c", "ls /run/secrets 2>/dev/null | wc -l"]).strip() == "0"
