"""For the daemon's integration tests: a git server on loopback (git daemon, git:// URLs, as a client would name a
repository) and a real `r2env serve` process with its HTTP API, event streams and kill -9."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import requests

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
GIT = ["git", "-c", "user.name=r2env tests", "-c", "user.email=tests@r2env.invalid", "-c", "init.defaultBranch=main"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _git(*arguments: str, cwd: Path) -> str:
    return subprocess.run([*GIT, *arguments], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@dataclass
class GitServer:
    """Bare repositories under `root`, served read-only by `git daemon` at git://127.0.0.1:PORT/NAME."""

    root: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> "GitServer":
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.process = subprocess.Popen(
            ["git", "daemon", "--export-all", f"--base-path={self.root}", "--listen=127.0.0.1", f"--port={self.port}",
             "--reuseaddr", str(self.root)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.1)
        raise RuntimeError("git daemon did not start")

    def stop(self) -> None:
        if self.process:
            self.process.terminate()
            self.process.wait(10)

    def url(self, name: str) -> str:
        return f"git://127.0.0.1:{self.port}/{name}.git"

    def publish(self, name: str, source: Path, work: Path, extra: dict[str, str] | None = None) -> str:
        """Commit `source` (plus `extra` files) as repository `name` (a new commit on main each time); its commit."""
        tree = work / name
        if not tree.exists():
            shutil.copytree(source, tree)
            _git("init", "-q", cwd=tree)
        for relative, text in (extra or {}).items():
            path = tree / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            if relative.endswith(("postBuild", "start")):
                path.chmod(0o755)
        _git("add", "-A", cwd=tree)
        _git("commit", "-q", "--allow-empty", "-m", f"publish {time.time()}", cwd=tree)
        bare = self.root / f"{name}.git"
        if not bare.exists():
            _git("clone", "-q", "--bare", str(tree), str(bare), cwd=work)
        else:
            _git("push", "-q", "--force", str(bare), "HEAD:main", cwd=tree)
        return _git("rev-parse", "HEAD", cwd=tree)


@dataclass
class Daemon:
    """A real `r2env serve` on a free port, allowed to build git:// repositories from 127.0.0.1."""

    state_dir: Path
    options: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[str] | None = None
    url: str = ""
    token: str = ""
    output: list[str] = field(default_factory=list)  # stdout lines
    errors: list[str] = field(default_factory=list)  # stderr lines
    readers: list[threading.Thread] = field(default_factory=list)

    def start(self, token: str = "") -> "Daemon":
        """Start and wait until it listens. `token`: the one to use (else the one it prints at first start)."""
        self.output, self.errors = [], []
        argv = [sys.executable, "-m", "r2env.cli", "serve", "--port", "0", "--state-dir", str(self.state_dir),
                "--allowed-schemes", "git", "--allowed-hosts", "127.0.0.1", *self.options]
        self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        env={**os.environ, **self.env}, start_new_session=True)
        self.readers = [threading.Thread(target=self._collect, args=(self.process.stderr, self.errors), daemon=True)]
        self.readers[0].start()
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line.rstrip("\n"))
            if "API token (shown once; keep it): " in line:
                self.token = line.rsplit(" ", 1)[1].strip()
            if "listening on " in line:
                self.url = line.split("listening on ", 1)[1].split(" ", 1)[0].rstrip("/")
                break
        else:
            raise AssertionError(f"r2env serve did not start:\n{self.stderr()}")
        self.readers.append(threading.Thread(target=self._collect, args=(self.process.stdout, self.output), daemon=True))
        self.readers[-1].start()
        if token:
            self.token = token
        return self

    @staticmethod
    def _collect(stream: Any, into: list[str]) -> None:
        for line in stream:
            into.append(line.rstrip("\n"))

    def stderr(self) -> str:
        return "\n".join(self.errors[-60:])

    def stop(self) -> int:
        """SIGTERM, as a service manager stops it."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(60)
        self._close()
        return code

    def kill9(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)
        self._close()

    def _close(self) -> None:
        assert self.process is not None
        for reader in self.readers:
            reader.join(10)
        for stream in (self.process.stdout, self.process.stderr):
            if stream:
                stream.close()

    def headers(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token if token is None else token}"}

    def api(self, method: str, path: str, body: Any = None, token: str | None = None, **kwargs: Any) -> requests.Response:
        return requests.request(method, self.url + path, json=body, headers=self.headers(token), timeout=600, **kwargs)

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        response = self.api(method, path, body)
        assert response.status_code < 300, f"{method} {path}: {response.status_code} {response.text}\n{self.stderr()}"
        return response.json()

    def events(self, build_id: str, last_event_id: int | None = None) -> Iterator[tuple[str, Any, str]]:
        """(event type, data, id) of a build's event stream, parsed as a browser's EventSource would, until it ends."""
        headers = self.headers() | ({"Last-Event-ID": str(last_event_id)} if last_event_id is not None else {})
        with requests.get(f"{self.url}/api/v1/builds/{build_id}/events", headers=headers, stream=True, timeout=600) as response:
            assert response.status_code == 200, response.text
            assert response.headers["Content-Type"].startswith("text/event-stream")
            yield from parse_sse(response.iter_lines(decode_unicode=True))

    def wait_build(self, build_id: str) -> dict[str, Any]:
        for kind, data, _ in self.events(build_id):
            if kind == "end":
                return dict(data)
        raise AssertionError("the event stream ended without an end event")

    def wait_launch(self, launch_id: str, states: tuple[str, ...] = ("running", "failed", "stopped"), timeout: float = 300) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            launch = self.ok("GET", f"/api/v1/launches/{launch_id}")
            if launch["state"] in states:
                return dict(launch)
            time.sleep(0.3)
        raise AssertionError(f"launch {launch_id} never reached {states}: {launch}")


def parse_sse(lines: Iterator[str]) -> Iterator[tuple[str, Any, str]]:
    kind, data, event_id = "message", [], ""
    for line in lines:
        if line == "":
            if data:
                yield kind, json.loads("\n".join(data)), event_id
            kind, data = "message", []
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "event":
                kind = value
            elif name == "data":
                data.append(value)
            elif name == "id":
                event_id = value


def serve_containers(daemon_label_value: str = "") -> list[str]:
    """Containers started by some r2env daemon (or by the one with this id)."""
    label = "org.r2env.serve" + (f"={daemon_label_value}" if daemon_label_value else "")
    return subprocess.run(["/usr/bin/docker", "ps", "-aq", "--no-trunc", "--filter", f"label={label}"], capture_output=True, text=True, check=True).stdout.split()
