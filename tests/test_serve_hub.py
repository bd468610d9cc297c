"""The jupyterhub launch backend against a fake hub at the HTTP-request level (a requests.Session double that
answers as JupyterHub's REST API does): the calls made, the spawner options sent, one line per failure, and no
hub user left behind when a launch fails part-way."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import requests

from r2env.errors import LaunchError
from r2env.serve.hub import OPTIONS_HINT, TOKEN_HINT, Hub, HubSettings, spawner_options, user_name
from r2env.serve.hub_launches import HubLaunches

DOCS = Path(__file__).resolve().parent.parent / "docs"


class FakeHub(requests.Session):
    """Users with one default server each. `refuse_image`: the spawner's error when user_options has an image
    (DockerSpawner's without allowed_images); `token_ok`: whether the API token is accepted."""

    def __init__(self, refuse_image: str = "", token_ok: bool = True, down: bool = False, fail_spawn: bool = False) -> None:
        super().__init__()
        self.users: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, str, Any]] = []
        self.refuse_image, self.token_ok, self.down, self.fail_spawn = refuse_image, token_ok, down, fail_spawn

    def request(self, method: str | bytes, url: str | bytes, *args: Any, json: Any = None, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        method, url = str(method), str(url)
        if self.down:
            raise requests.ConnectionError("HTTPConnectionPool(host='127.0.0.1', port=1): Max retries exceeded ([Errno 111] Connection refused)")
        path = url.split("/hub/api/", 1)[1]
        self.calls.append((method, path, json))
        if not self.token_ok:
            return _response(403, {"status": 403, "message": "Forbidden"})
        if path == "":
            return _response(200, {"version": "6.1.1"})
        if path == "user":
            return _response(200, {"kind": "service", "name": "r2env", "scopes": ["admin:users", "admin:servers", "tokens", "read:users"]})
        if path.startswith("users?"):
            return _response(200, [{"name": name} for name in self.users])
        match = re.fullmatch(r"users/([^/]+)(/server|/tokens)?", path)
        assert match, path
        name, rest = match.group(1), match.group(2)
        if rest is None and method == "POST":
            self.users[name] = {"name": name, "servers": {}}
            return _response(201, self.users[name])
        if rest is None and method == "GET":
            return _response(200, self.users[name]) if name in self.users else _response(404, {"message": "Not Found"})
        if rest is None and method == "DELETE":
            if name not in self.users:
                return _response(404, {"message": "Not Found"})
            del self.users[name]
            return _response(204, None)
        if rest == "/server" and method == "POST":
            if self.refuse_image and "image" in (json or {}):
                return _response(400, {"status": 400, "message": self.refuse_image})
            self.users[name]["servers"][""] = {"name": "", "ready": not self.fail_spawn, "pending": None if not self.fail_spawn else "spawn",
                                               "user_options": json, "last_activity": "2026-12-06T02:00:00Z"}
            if self.fail_spawn:
                self.users[name]["servers"].pop("")  # the spawner gave up: the hub forgets the server
            return _response(201, None)
        if rest == "/server" and method == "DELETE":
            self.users.get(name, {}).get("servers", {}).pop("", None)
            return _response(204, None)
        if rest == "/tokens":
            return _response(201, {"token": "user-token-" + name})
        raise AssertionError((method, path))


def _response(status: int, body: Any) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = b"" if body is None else json.dumps(body).encode()
    return response


def hub(session: FakeHub) -> Hub:
    return Hub(HubSettings("http://hub.example.org:8000/", "service-token", "r2env-", start_timeout=5), session, sleep=lambda _: None)


def test_spawner_options_carry_the_image_as_binderhub_sends_it() -> None:
    assert spawner_options("r2env-serve/x:abc", "https://example.org/repo", "l-1") == {
        "image": "r2env-serve/x:abc", "repo_url": "https://example.org/repo", "r2env_launch": "l-1"}
    assert user_name("r2env-", "l-ABC") == "r2env-l-abc"  # hub user names are lower case


def test_a_launch_creates_the_user_starts_its_server_with_the_image_and_gets_a_token() -> None:
    session = FakeHub()
    client = hub(session)
    assert client.check() == "6.1.1"
    client.create_user("r2env-l-1")
    client.start_server("r2env-l-1", spawner_options("img:1", "src", "l-1"))
    token = client.user_token("r2env-l-1", 3600)
    assert [(m, p) for m, p, _ in session.calls][2:] == [("POST", "users/r2env-l-1"), ("POST", "users/r2env-l-1/server"),
                                                         ("GET", "users/r2env-l-1"), ("POST", "users/r2env-l-1/tokens")]
    assert session.calls[3][2] == {"image": "img:1", "repo_url": "src", "r2env_launch": "l-1"}
    assert session.calls[-1][2] == {"note": "r2env launch", "expires_in": 3600}
    assert client.server_url("r2env-l-1") == "http://hub.example.org:8000/user/r2env-l-1/" and token == "user-token-r2env-l-1"
    client.delete_user("r2env-l-1")
    assert session.users == {}


@pytest.mark.parametrize(("session", "message", "hint"), [
    (FakeHub(down=True), "cannot reach the JupyterHub at http://hub.example.org:8000/ (connection refused)", "check c.Serve.hub_url and that the hub runs"),
    (FakeHub(token_ok=False), "the JupyterHub at http://hub.example.org:8000/ refused the API token (403 on GET )", TOKEN_HINT),
])
def test_an_unreachable_hub_or_a_refused_token_is_one_line(session: FakeHub, message: str, hint: str) -> None:
    with pytest.raises(LaunchError) as raised:
        hub(session).check()
    assert raised.value.message == message and raised.value.hint == hint
    assert "\n" not in str(raised.value)


class FakeEngine:
    def __init__(self, has_singleuser: bool = True) -> None:
        self.has_singleuser = has_singleuser

    def image_id(self, reference: str) -> str | None:
        return "sha256:1"

    def run(self, image: str, command: list[str]) -> tuple[int, str]:
        assert command == ["sh", "-c", "command -v jupyterhub-singleuser"]
        return (0, "/srv/venv/bin/jupyterhub-singleuser\n") if self.has_singleuser else (1, "")


def launches(session: FakeHub, engine: FakeEngine) -> HubLaunches:
    backend = HubLaunches.__new__(HubLaunches)  # only what _start_container and stop_server use
    backend.hub, backend.engine, backend.run_in_image, backend.log = hub(session), engine, engine.run, lambda _: None  # type: ignore[assignment]
    backend.serve = type("Serve", (), {"max_age": 0.0})()  # type: ignore[assignment]
    return backend


def test_the_hub_backend_reports_the_hubs_url_and_stops_through_the_hub() -> None:
    session = FakeHub()
    backend = launches(session, FakeEngine())
    container_id, url = backend._start_container("l-7", "img:7", "https://example.org/r")
    assert container_id == "hub:r2env-l-7"
    assert url == "http://hub.example.org:8000/user/r2env-l-7/?token=user-token-r2env-l-7"
    assert session.users["r2env-l-7"]["servers"][""]["user_options"]["image"] == "img:7"
    backend.stop_server(container_id)
    assert session.users == {}


@pytest.mark.parametrize(("session", "engine", "message", "hint"), [
    (FakeHub(refuse_image="Specifying image to launch is not allowed"), FakeEngine(),
     "the JupyterHub's spawner did not take the image to launch (Specifying image to launch is not allowed)", OPTIONS_HINT),
    (FakeHub(fail_spawn=True), FakeEngine(), "the JupyterHub's spawner failed to start the server for r2env-l-9", "see the hub's log"),
    (FakeHub(), FakeEngine(has_singleuser=False), "the image img:9 has no jupyterhub-singleuser, which the hub's spawner starts", None),
])
def test_a_failed_hub_launch_is_one_line_and_leaves_no_user(session: FakeHub, engine: FakeEngine, message: str, hint: str | None) -> None:
    with pytest.raises(LaunchError) as raised:
        launches(session, engine)._start_container("l-9", "img:9", "src")
    assert raised.value.message == message
    assert hint is None or raised.value.hint == hint
    assert session.users == {}  # no orphan user or server on the hub


def test_the_documented_kubespawner_hook_applies_the_image_r2env_sends() -> None:
    # No Kubernetes cluster here: the hook from docs/serve.md runs against a stand-in for KubeSpawner's attributes.
    text = (DOCS / "serve.md").read_text()
    snippet = text.split("<!-- kubespawner-config -->", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    c = _Config()
    exec(compile(snippet, "docs/serve.md", "exec"), {"c": c})
    hook = c.KubeSpawner.pre_spawn_hook
    spawner = type("Spawner", (), {"user_options": spawner_options("registry.example.org/r2env/x:1", "src", "l-1"),
                                   "image": "quay.io/jupyter/base-notebook", "environment": {}})()
    hook(spawner)
    assert spawner.image == "registry.example.org/r2env/x:1"
    plain = type("Spawner", (), {"user_options": {}, "image": "quay.io/jupyter/base-notebook", "environment": {}})()
    hook(plain)
    assert plain.image == "quay.io/jupyter/base-notebook"


class _Section:
    pass


class _Config:
    def __getattr__(self, name: str) -> Any:
        section = _Section()
        setattr(self, name, section)
        return section


@pytest.mark.parametrize(("overrides", "environ", "message"), [
    ({"launch_backend": "jupyterhub"}, {}, "--hub-url = '': is not the http(s) URL of a JupyterHub"),
    ({"launch_backend": "jupyterhub", "hub_url": "http://127.0.0.1:8000/"}, {},
     "launch_backend jupyterhub needs an API token: c.Serve.hub_api_token or JUPYTERHUB_API_TOKEN is empty"),
    ({"launch_backend": "jupyterhub", "hub_url": "http://127.0.0.1:8000/", "hub_user_prefix": "R2 env"}, {"JUPYTERHUB_API_TOKEN": "t"},
     "--hub-user-prefix = 'R2 env': is not a hub user name prefix"),
    ({"launch_docker_host": "localhost:2376"}, {}, "--launch-docker-host = 'localhost:2376': does not start with unix://"),
])
def test_bad_hub_or_launch_engine_configuration_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, overrides: dict[str, str],
                                                             environ: dict[str, str], message: str) -> None:
    from r2env.errors import UsageError
    from r2env.serve.config import load_serve_config

    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError) as raised:
        load_serve_config(None, {"state_dir": str(tmp_path / "state"), **overrides}, environ)
    assert raised.value.message.startswith(message), raised.value.message


def test_the_hub_token_comes_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from r2env.serve.config import load_serve_config

    monkeypatch.chdir(tmp_path)
    settings = load_serve_config(None, {"state_dir": str(tmp_path / "state"), "launch_backend": "jupyterhub", "hub_url": "http://127.0.0.1:8000/"},
                                 {"JUPYTERHUB_API_TOKEN": "from-env"})
    assert (settings.launch_backend, settings.hub_url, settings.hub_api_token) == ("jupyterhub", "http://127.0.0.1:8000/", "from-env")


def test_culling_reads_the_hubs_activity_and_a_vanished_server_is_stopped_through_the_hub() -> None:
    from datetime import datetime

    from r2env.serve.store import Launch

    session = FakeHub()
    backend = launches(session, FakeEngine())
    container_id, url = backend._start_container("l-5", "img:5", "src")
    launch = Launch("l-5", "b-1", "running", container_id, url, "", "", "", 0.0, None, None)
    assert backend.server_activity(launch) == datetime.fromisoformat("2026-12-06T02:00:00+00:00").timestamp()
    assert backend.server_state(launch) == (True, "")
    session.users["r2env-l-5"]["servers"].clear()  # the hub's own culler, or an admin, stopped it
    assert backend.server_state(launch) == (False, "the hub stopped its server")
    assert session.users == {}  # and its user is deleted too
