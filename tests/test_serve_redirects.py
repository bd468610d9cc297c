"""The daemon follows no HTTP redirect (issue 17): an allowed host answering 301 must not make git clone from a host
allowed_hosts refuses, nor send the culler's status request (with the server's token) anywhere else.
Real git over loopback HTTP: a redirector on 127.0.0.1 and git's dumb HTTP protocol from a static server on
127.0.0.2, which the policy does not allow."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from git_repos import commit, git

from r2env.errors import SourceError
from r2env.serve.launches import last_activity
from r2env.serve.mirrors import Mirrors
from r2env.serve.sources import SourcePolicy


@contextmanager
def serving(handler: type[http.server.BaseHTTPRequestHandler], host: str) -> Iterator[str]:
    """`handler` on host:<a free port>, for the test's duration (each request has 5 s at most)."""
    server = http.server.ThreadingHTTPServer((host, 0), handler)
    server.timeout = 5
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def redirector(target: str, hits: list[str]) -> type[http.server.BaseHTTPRequestHandler]:
    class Redirect(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            hits.append(self.path)
            self.send_response(301)
            self.send_header("Location", f"http://{target}{self.path}")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    return Redirect


def static(root: Path, hits: list[str]) -> type[http.server.BaseHTTPRequestHandler]:
    class Static(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            hits.append(self.path)

    return Static


@pytest.fixture()
def bare_repository(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    git("init", "-q", cwd=work)
    commit(work, "numpy==1\n")
    bare = tmp_path / "served" / "repo.git"
    git("clone", "-q", "--bare", str(work), str(bare))
    git("update-server-info", cwd=bare)  # git's dumb HTTP protocol: info/refs and objects as plain files
    return bare


def test_git_does_not_follow_a_redirect_to_a_host_the_policy_refuses(tmp_path: Path, bare_repository: Path) -> None:
    policy = SourcePolicy(schemes=("http",), hosts=("127.0.0.1",))
    redirected: list[str] = []
    fetched: list[str] = []
    with serving(static(bare_repository.parent, fetched), "127.0.0.2") as elsewhere:
        with serving(redirector(elsewhere, redirected), "127.0.0.1") as allowed:
            mirrors = Mirrors(tmp_path / "mirrors", policy, timeout=30, environ={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
            with pytest.raises(SourceError, match=r"git clone failed") as failure:
                mirrors.resolve(f"http://{allowed}/repo.git", "main")
    assert redirected, "git never asked the allowed host"
    assert fetched == [], f"git followed the redirect to {elsewhere}: {fetched}"
    assert "returned error: 301" in failure.value.message and elsewhere not in failure.value.message


def test_git_still_clones_from_the_allowed_host_itself(tmp_path: Path, bare_repository: Path) -> None:
    """The control: the same repository, served directly by an allowed host, clones."""
    policy = SourcePolicy(schemes=("http",), hosts=("127.0.0.1",))
    fetched: list[str] = []
    with serving(static(bare_repository.parent, fetched), "127.0.0.1") as allowed:
        mirrors = Mirrors(tmp_path / "mirrors", policy, timeout=30, environ={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
        commit_id = mirrors.resolve(f"http://{allowed}/repo.git", "main")
    assert commit_id == git("rev-parse", "main", cwd=bare_repository)


def test_the_culler_does_not_follow_a_redirect_from_the_server_it_asks(tmp_path: Path) -> None:
    """A notebook container redirecting /api/status would send the daemon (and the server's token) anywhere, and
    could report any activity it likes from there."""
    asked: list[str] = []

    class Status(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            asked.append(self.headers.get("Authorization", ""))
            body = json.dumps({"last_activity": "2030-01-01T00:00:00Z"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    redirected: list[str] = []
    with serving(Status, "127.0.0.2") as elsewhere:
        with serving(redirector(elsewhere, redirected), "127.0.0.1") as server:
            assert last_activity(f"http://{server}/?token=nb-token") is None
    assert redirected == ["/api/status"]
    assert asked == []
