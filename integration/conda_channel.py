"""A tiny, byte-reproducible local conda channel for the tests, made without conda (stdlib only).

A `.tar.bz2` conda package is a bzip2 tarball of `info/` (index.json, paths.json, files, optional link.json
and has_prefix) plus the payload; a channel is `<subdir>/repodata.json` beside the packages
(https://docs.conda.io/projects/conda-build/en/latest/resources/package-spec.html)."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import io
import json
import tarfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

PLACEHOLDER = "/opt/anaconda1anaconda2anaconda3"  # conda's prefix placeholder, rewritten at install
_MTIME = 1700000000


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    build: str
    subdir: str  # "noarch" or "linux-64"
    files: dict[str, str | tuple[str, int]] = field(default_factory=dict)  # path -> text | (text, mode); "->target" = symlink
    depends: tuple[str, ...] = ()
    noarch: str = ""  # "generic" or "python"
    entry_points: tuple[str, ...] = ()  # noarch: python console scripts, "name = module:function"

    @property
    def filename(self) -> str:
        return f"{self.name}-{self.version}-{self.build}.tar.bz2"


def _add(archive: tarfile.TarFile, name: str, data: bytes | None, mode: int, link: str = "") -> None:
    info = tarfile.TarInfo(name)
    info.mtime, info.uid, info.gid, info.uname, info.gname = _MTIME, 0, 0, "", ""
    if link:
        info.type, info.linkname, info.mode = tarfile.SYMTYPE, link, 0o777
        archive.addfile(info)
        return
    info.size, info.mode = len(data or b""), mode
    archive.addfile(info, io.BytesIO(data or b""))


def _index(package: Package) -> dict[str, object]:
    index: dict[str, object] = {
        "name": package.name, "version": package.version, "build": package.build, "build_number": 0,
        "depends": list(package.depends), "license": "MIT", "subdir": package.subdir, "timestamp": _MTIME * 1000,
    }
    if package.noarch:
        index["noarch"] = package.noarch
    else:
        index["platform"], index["arch"] = "linux", "x86_64"
    return index


def build_package(package: Package) -> bytes:
    payload: list[tuple[str, bytes | None, int, str]] = []
    paths: list[dict[str, object]] = []
    has_prefix: list[str] = []
    for path, spec in sorted(package.files.items()):
        text, mode = (spec, 0o644) if isinstance(spec, str) else spec
        if text.startswith("->"):
            payload.append((path, None, 0o777, text[2:]))
            paths.append({"_path": path, "path_type": "softlink"})
            continue
        data = text.encode()
        payload.append((path, data, mode, ""))
        entry: dict[str, object] = {"_path": path, "path_type": "hardlink", "sha256": hashlib.sha256(data).hexdigest(), "size_in_bytes": len(data)}
        if PLACEHOLDER in text:
            entry.update(file_mode="text", prefix_placeholder=PLACEHOLDER)
            has_prefix.append(f"{PLACEHOLDER} text {path}")
        paths.append(entry)
    info = {
        "info/index.json": json.dumps(_index(package), indent=2, sort_keys=True),
        "info/paths.json": json.dumps({"paths": paths, "paths_version": 1}, indent=2),
        "info/files": "".join(f"{p['_path']}\n" for p in paths),
    }
    if has_prefix:
        info["info/has_prefix"] = "\n".join(has_prefix) + "\n"
    if package.noarch == "python":
        info["info/link.json"] = json.dumps({"noarch": {"type": "python", "entry_points": list(package.entry_points)}, "package_metadata_version": 1})
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:bz2", format=tarfile.PAX_FORMAT) as archive:
        for name, text in sorted(info.items()):
            _add(archive, name, text.encode(), 0o644)
        for name, data, mode, link in payload:
            _add(archive, name, data, mode, link)
    return buffer.getvalue()


def write_channel(directory: Path, packages: list[Package]) -> Path:
    """Write the packages and each subdir's repodata.json; return the channel directory."""
    repodata: dict[str, dict[str, dict[str, object]]] = {"noarch": {}, "linux-64": {}}
    for package in packages:
        data = build_package(package)
        (directory / package.subdir).mkdir(parents=True, exist_ok=True)
        (directory / package.subdir / package.filename).write_bytes(data)
        record = {**_index(package), "md5": hashlib.md5(data).hexdigest(), "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
        repodata[package.subdir][package.filename] = record
    for subdir, records in repodata.items():
        (directory / subdir).mkdir(parents=True, exist_ok=True)
        document = {"info": {"subdir": subdir}, "packages": records, "packages.conda": {}, "repodata_version": 1}
        (directory / subdir / "repodata.json").write_text(json.dumps(document, indent=1, sort_keys=True), encoding="utf-8")
    return directory


def example_packages(python: str = "/usr/bin/python3.11") -> list[Package]:
    """What examples/environment-yml needs: noarch generic and python packages, a linux-64 tool, and a
    stand-in `python` (a venv-style prefix around Debian's interpreter, so noarch: python packages work)."""
    minor = python.rsplit("python", 1)[1]
    greeting = f'#!/bin/sh\nP="{PLACEHOLDER}"\necho "hello-cli 1.0.0 from $P: $(cat "$P/share/libgreet/greeting.txt")"\n'
    return [
        *(Package("libgreet", v, "0", "noarch", {"share/libgreet/greeting.txt": f"greetings {v}\n"}, noarch="generic") for v in ("1.0.0", "1.1.0")),
        Package("hello-cli", "1.0.0", "0", "noarch", {"bin/hello-cli": (greeting, 0o755)}, ("libgreet >=1.0",), noarch="generic"),
        Package("tinytool", "0.1.0", "h0_0", "linux-64", {"bin/tinytool": ("#!/bin/sh\necho tinytool 0.1.0 linux-64\n", 0o755)}),
        Package("python", f"{minor}.2", "0_r2env_test", "linux-64", {
            "pyvenv.cfg": f"home = {Path(python).parent}\ninclude-system-site-packages = false\nversion = {minor}.2\n",
            f"bin/python{minor}": f"->{python}", "bin/python3": f"->python{minor}", "bin/python": f"->python{minor}",
            f"lib/python{minor}/site-packages/r2env-test-python.txt": "a stand-in python package for r2env's tests\n",
        }),
        Package("pyhello", "0.1.0", "pyh0_0", "noarch", {
            "site-packages/pyhello/__init__.py": "import sys\n__version__ = '0.1.0'\n\ndef main():\n    print('pyhello', __version__, 'in', sys.prefix)\n",
        }, ("python >=3.8",), noarch="python", entry_points=("pyhello = pyhello:main",)),
        # A Jupyter server extension as conda-forge ships them (jupyter-server-proxy, voila…): a module plus the
        # jupyter_server_config.d file that enables it. Declared in environment.yml, it must be loaded by the server.
        Package("hello-server-ext", "0.1.0", "pyh0_0", "noarch", {
            "site-packages/hello_server_ext/__init__.py": (
                "def _jupyter_server_extension_points():\n    return [{'module': 'hello_server_ext'}]\n\n\n"
                "def _load_jupyter_server_extension(serverapp):\n    serverapp.log.info('hello_server_ext loaded')\n"
            ),
            "etc/jupyter/jupyter_server_config.d/hello_server_ext.json": '{"ServerApp": {"jpserver_extensions": {"hello_server_ext": true}}}\n',
        }, ("python >=3.8",), noarch="python"),
        # conda-lock adds `pip` to the specs of an environment with a pip: section; r2env installs pip
        # packages with the server environment's pip, so an empty stand-in is enough.
        Package("pip", "23.0.1", "pyh0_0", "noarch", {}, ("python >=3.7",), noarch="python"),
    ]


def old_python_packages(python: str = "/usr/bin/python3.11") -> list[Package]:
    """Stand-ins for a Python only conda provides (3.6, as runtime.txt `python-3.6` asks): no real CPython 3.6 conda
    package can be had here, so `python 3.6.15` wraps Debian's interpreter like the example's stand-in, and a .pth
    file maps conda's python3.6 site-packages (where noarch: python packages go for a 3.6 record) into it. The
    `ipykernel` stand-in only does what the build asks of it, `python -m ipykernel install` (it writes the
    kernelspec); it cannot run a kernel. `pip 20.3.4` stands for the last pips that still ran on old Pythons."""
    minor = python.rsplit("python", 1)[1]
    install = (
        "import json, os, sys\n\n"
        "def main(argv):\n"
        "    assert argv[0] == 'install', argv\n"
        "    options = dict(zip(argv[1::2], argv[2::2]))\n"
        "    folder = os.path.join(options['--prefix'], 'share', 'jupyter', 'kernels', options['--name'])\n"
        "    os.makedirs(folder, exist_ok=True)\n"
        "    spec = {'argv': [sys.executable, '-m', 'ipykernel_launcher', '-f', '{connection_file}'],\n"
        "            'display_name': options['--display-name'], 'language': 'python'}\n"
        "    with open(os.path.join(folder, 'kernel.json'), 'w') as stream:\n"
        "        json.dump(spec, stream)\n\n"
        "main(sys.argv[1:])\n"
    )
    return [
        Package("python", "3.6.15", "0_r2env_test", "linux-64", {
            "pyvenv.cfg": f"home = {Path(python).parent}\ninclude-system-site-packages = false\nversion = {minor}.2\n",
            "bin/python3.6": f"->{python}", "bin/python3": "->python3.6", "bin/python": "->python3.6",
            f"lib/python{minor}/site-packages/r2env-python36.pth": f"{PLACEHOLDER}/lib/python3.6/site-packages\n",
        }),
        Package("pip", "20.3.4", "pyh0_0", "noarch", {}, ("python >=2.7",), noarch="python"),
        Package("ipykernel", "4.10.1", "pyh0_0", "noarch", {
            "site-packages/ipykernel/__init__.py": "__version__ = '4.10.1'\n",
            "site-packages/ipykernel/__main__.py": install,
        }, ("python >=2.7",), noarch="python"),
    ]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    requests: list[str] | None = None  # the paths asked for, when a test wants to know

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass

    def do_GET(self) -> None:
        if self.requests is not None:
            self.requests.append(self.path)
        super().do_GET()


@contextlib.contextmanager
def serve_directory(directory: Path, requests: list[str] | None = None, address: str = "127.0.0.1") -> Iterator[str]:
    """A channel on a loopback http server, as a site's private mirror would be; yields its URL.
    `requests`, if given, receives the path of every GET; `address` another address to listen on (the engine's
    bridge gateway, which build steps reach)."""
    handler = type("Handler", (_QuietHandler,), {"requests": requests})
    server = http.server.ThreadingHTTPServer((address, 0), functools.partial(handler, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{address}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
