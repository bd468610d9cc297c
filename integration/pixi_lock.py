"""pixi.lock for the tests, written without pixi (which these machines cannot install): py-rattler solves each
environment's conda specs against the tests' local channel (integration/conda_channel.py) and writes the lock with
its own LockFile; the PyPI packages come from a local PyPI-style index made here (one byte-reproducible wheel).

py-rattler's add_pypi_package takes no hash, so the sha256 is added to each PyPI entry as pixi writes it (pixi.lock
format: a `sha256:` key beside `name:` and `version:`).

    python integration/pixi_lock.py examples/pixi     (re-writes the example's committed pixi.lock)"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from conda_channel import example_packages, write_channel

WHEEL_NAME = "hello_pypi-0.2.0-py3-none-any.whl"
_DATE = (2024, 1, 1, 0, 0, 0)
# What examples/pixi's lock says the packages came from (a real project's lock names conda-forge and PyPI);
# the integration test maps both to its local servers with --channel-map.
EXAMPLE_CHANNEL = "https://conda.anaconda.org/conda-forge"
EXAMPLE_PYPI = "https://files.pythonhosted.org/packages/r2env-test"
# The environments of examples/pixi/pixi.toml, as conda specs (the manifest is what a user writes; the lock is solved here).
EXAMPLE_ENVIRONMENTS = {
    "default": ["python 3.11.*", "hello-cli", "libgreet ==1.0.0", "pyhello", "tinytool", "hello-server-ext"],
    "latest": ["python 3.11.*", "hello-cli", "libgreet ==1.1.0", "pyhello", "tinytool", "hello-server-ext"],
}


@dataclass(frozen=True)
class PypiFile:
    name: str
    version: str
    url: str
    sha256: str


def hello_wheel() -> bytes:
    """hello-pypi 0.2.0: a module and its dist-info, byte-reproducible (fixed dates, sorted entries)."""
    files = {
        "hello_pypi/__init__.py": "__version__ = '0.2.0'\n\n\ndef hello():\n    return 'hello from hello-pypi 0.2.0'\n",
        "hello_pypi-0.2.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: hello-pypi\nVersion: 0.2.0\nSummary: r2env's test wheel\n",
        "hello_pypi-0.2.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: r2env-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(
        f"{name},sha256={base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b'=').decode()},{len(text.encode())}\n"
        for name, text in files.items()
    ) + "hello_pypi-0.2.0.dist-info/RECORD,,\n"
    files["hello_pypi-0.2.0.dist-info/RECORD"] = record
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in files.items():
            info = zipfile.ZipInfo(name, _DATE)
            info.external_attr = 0o644 << 16
            archive.writestr(info, text)
    return buffer.getvalue()


def write_pypi_index(directory: Path) -> Path:
    """A PEP 503 simple index with the one wheel: /simple/hello-pypi/ links to /files/<wheel>#sha256=…"""
    data = hello_wheel()
    (directory / "files").mkdir(parents=True, exist_ok=True)
    (directory / "files" / WHEEL_NAME).write_bytes(data)
    page = directory / "simple" / "hello-pypi"
    page.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(data).hexdigest()
    (page / "index.html").write_text(f'<html><body><a href="../../files/{WHEEL_NAME}#sha256={digest}">{WHEEL_NAME}</a></body></html>\n')
    return directory


def hello_pypi(base_url: str) -> PypiFile:
    return PypiFile("hello-pypi", "0.2.0", f"{base_url.rstrip('/')}/{WHEEL_NAME}", hashlib.sha256(hello_wheel()).hexdigest())


def write_pixi_lock(path: Path, channel: Path, environments: Mapping[str, Sequence[str]], pypi: Sequence[PypiFile],
                    channel_url: str = "") -> str:
    """Solve each environment against the local `channel` and write pixi.lock at `path`; every conda URL then names
    `channel_url` (default: the channel's own file:// URL). Returns the text."""
    from rattler import LockChannel, LockFile, LockPlatform, solve

    async def records(specs: Sequence[str]) -> list[object]:
        return list(await solve([channel.as_uri()], list(specs), platforms=["linux-64", "noarch"]))

    lock = LockFile([LockPlatform("linux-64")])
    platform = LockPlatform("linux-64")
    for name, specs in environments.items():
        lock.set_channels(name, [LockChannel(channel.as_uri())])
        for record in asyncio.run(records(specs)):
            lock.add_conda_package(name, platform, record)
        for package in pypi:
            lock.add_pypi_package(name, platform, package.name, package.version, package.url)
    lock.to_path(path)
    text = path.read_text()
    if channel_url:
        text = text.replace(channel.as_uri(), channel_url).replace(str(channel), channel_url)
    for package in pypi:
        entry = f"- pypi: {package.url}\n  name: {package.name}\n  version: {package.version}\n"
        text = text.replace(entry, entry + f"  sha256: {package.sha256}\n")
    path.write_text(text)
    return text


def write_example_lock(example: Path, scratch: Path) -> str:
    channel = write_channel(scratch / "channel", example_packages())
    return write_pixi_lock(example / "pixi.lock", channel, EXAMPLE_ENVIRONMENTS, [hello_pypi(EXAMPLE_PYPI)], EXAMPLE_CHANNEL)


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as scratch_dir:
        write_example_lock(Path(sys.argv[1]), Path(scratch_dir))
    sys.stdout.flush()
