"""The daemon's HTTP layer (r2env/serve/app.py) against the real app, Store, Builds and Launches (tests/serve_fakes.py):
authentication, request bodies and error answers, event streams, launches, BinderHub's stream, the page's
Content-Security-Policy and the access log. No Docker, no network: the server listens on loopback."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
from html.parser import HTMLParser
from typing import Any, Callable, cast

import pytest

from r2env import __version__
from r2env.serve.app import AccessLog
from serve_fakes import AUTH, COMMIT, NOTEBOOK_URL, REPO, TOKEN, Client, Daemon


def stream_events(text: str) -> list[dict[str, str]]:
    """The events of a Server-Sent Events body, each as its fields (id, event, data); comments left out."""
    events = []
    for block in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if line and not line.startswith(":"))
        if fields:
            events.append(fields)
    return events


async def error_of(response: Any) -> dict[str, Any]:
    """An error answer: one line of JSON with exactly an error and a hint."""
    text = await response.text()
    assert "\n" not in text.strip()
    body = json.loads(text)
    assert set(body) == {"error", "hint"} and body["error"] and body["hint"]
    return cast(dict[str, Any], body)


# --- authentication ----------------------------------------------------------------------------------------

GUARDED = [
    ("GET", "/api/v1/builds"), ("POST", "/api/v1/builds"), ("GET", "/api/v1/builds/b-x"), ("DELETE", "/api/v1/builds/b-x"),
    ("GET", "/api/v1/builds/b-x/events"), ("POST", "/api/v1/launches"), ("GET", "/api/v1/launches"),
    ("GET", "/api/v1/launches/l-x"), ("DELETE", "/api/v1/launches/l-x"), ("GET", "/build/gh/org/analysis/main"),
]


@pytest.mark.parametrize(
    ("headers", "query", "said"),
    [
        ({}, "", "no token"),
        ({"Authorization": "Bearer wrong"}, "", "a wrong token"),
        ({"Authorization": f"Token {TOKEN}"}, "", "no token"),  # only the Bearer scheme
        ({"Authorization": "Bearer "}, "", "no token"),
        ({}, "?token=wrong", None),  # read on /build/ only: "a wrong token" there, "no token" elsewhere
    ],
)
def test_every_guarded_route_needs_the_token(daemon: Daemon, headers: dict[str, str], query: str, said: str | None) -> None:
    async def scenario(client: Client) -> None:
        for method, path in GUARDED:
            response = await client.request(method, path + query, headers=headers, json={"repo": REPO})
            assert response.status == 401, (method, path)
            assert response.headers["WWW-Authenticate"] == 'Bearer realm="r2env"'
            body = await error_of(response)
            expected = said or ("a wrong token" if path.startswith("/build/") else "no token")
            assert f"({expected} was given)" in body["error"], (method, path, body)
            assert "Authorization: Bearer" in body["hint"]

    daemon.run(scenario)
    assert daemon.mirrors.resolved == [] and daemon.store.builds() == []


def test_the_token_in_the_query_opens_binderhub_streams_only(daemon: Daemon) -> None:
    async def scenario(client: Client) -> None:
        refused = await client.get(f"/api/v1/builds?token={TOKEN}")
        assert refused.status == 401
        assert "no token" in (await error_of(refused))["error"]
        stream = await client.get(f"/build/nope/org/analysis/main?token={TOKEN}")
        assert stream.status == 200 and stream.headers["Content-Type"] == "text/event-stream"
        messages = [json.loads(event["data"]) for event in stream_events(await stream.text())]
        assert [message["phase"] for message in messages] == ["waiting", "failed"]
        assert "provider 'nope' is not supported" in messages[1]["message"]

    daemon.run(scenario)


def test_health_without_the_token_says_only_that_it_is_up(daemon: Daemon) -> None:
    async def scenario(client: Client) -> None:
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            response = await client.get("/api/v1/health", headers=headers)
            assert response.status == 200
            assert await response.json() == {"status": "ok", "version": __version__}

    daemon.run(scenario)


def test_health_with_the_token_reports_the_engine_and_the_work_in_progress(daemon: Daemon) -> None:
    daemon.add_build("building")
    daemon.add_build("queued")
    daemon.add_build("queued")

    async def scenario(client: Client) -> tuple[int, Any, int, Any]:
        healthy = await client.get("/api/v1/health", headers=AUTH)
        daemon.engine.unreachable = True
        degraded = await client.get("/api/v1/health", headers=AUTH)
        return healthy.status, await healthy.json(), degraded.status, await degraded.json()

    healthy_status, healthy, degraded_status, degraded = daemon.run(scenario)
    assert healthy_status == 200
    assert healthy == {"status": "ok", "version": __version__, "engine": "ok", "builds": {"queued": 2, "building": 1},
                       "launches": {"waiting": 0, "starting": 0, "running": 0}}
    assert degraded_status == 503
    assert (degraded["status"], degraded["engine"]) == ("degraded", "unreachable: ConnectionError")


# --- request bodies ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/api/v1/builds", b"repo=https://github.com/org/analysis", "the request body is not JSON"),
        ("/api/v1/builds", b"", "the request body is not JSON"),
        ("/api/v1/builds", b"\xff\xfe", "the request body is not JSON"),
        ("/api/v1/builds", b'["https://github.com/org/analysis"]', "the request body is not a JSON object"),
        ("/api/v1/builds", b'"https://github.com/org/analysis"', "the request body is not a JSON object"),
        ("/api/v1/builds", b'{"repo": "https://github.com/org/analysis", "branch": "main"}', "unknown field 'branch'"),
        ("/api/v1/builds", b'{"repo": ["https://github.com/org/analysis"]}', "field 'repo' must be a str"),
        ("/api/v1/builds", b'{"repo": "https://github.com/org/analysis", "ref": 1}', "field 'ref' must be a str"),
        ("/api/v1/builds", b'{"ref": "main"}', "field 'repo' is missing"),
        ("/api/v1/builds", b'{"repo": ""}', "field 'repo' is missing"),
        ("/api/v1/builds", b'{"repo": "https://github.com/org/analysis", "ref": "-x"}', "ref '-x' is not a valid"),
        ("/api/v1/launches", b'{}', "give either 'build'"),
        ("/api/v1/launches", b'{"build": "b-1", "repo": "https://github.com/org/analysis"}', "give either 'build'"),
        ("/api/v1/launches", b'{"build": 7}', "field 'build' must be a str"),
        # Nesting deep enough for Python's JSON parser to give up: still the client's mistake, not a crash.
        pytest.param("/api/v1/builds", b"[" * 60_000, "the request body is not JSON", id="nested-too-deep"),
    ],
)
def test_a_malformed_body_is_a_400_with_one_line_of_error_and_hint(daemon: Daemon, path: str, body: bytes, message: str) -> None:
    async def scenario(client: Client) -> tuple[int, dict[str, Any]]:
        response = await client.post(path, data=body, headers={**AUTH, "Content-Type": "application/json"})
        return response.status, await error_of(response)

    status, error = daemon.run(scenario)
    assert status == 400
    assert message in error["error"]
    assert daemon.mirrors.resolved == []


@pytest.mark.parametrize("repo", ["https://evil.example/org/analysis", "file:///etc", "/srv/repos/analysis", "ssh://git@github.com/o/r"])
def test_a_repository_the_policy_refuses_is_a_403(daemon: Daemon, repo: str) -> None:
    async def scenario(client: Client) -> tuple[int, dict[str, Any]]:
        response = await client.post("/api/v1/builds", json={"repo": repo}, headers=AUTH)
        return response.status, await error_of(response)

    status, error = daemon.run(scenario)
    assert status == 403
    assert "not allowed" in error["error"]
    assert daemon.mirrors.resolved == []


def test_a_ref_that_does_not_exist_is_a_422(daemon: Daemon) -> None:
    async def scenario(client: Client) -> tuple[int, dict[str, Any]]:
        response = await client.post("/api/v1/builds", json={"repo": REPO, "ref": "nope"}, headers=AUTH)
        return response.status, await error_of(response)

    status, error = daemon.run(scenario)
    assert status == 422 and "no branch, tag or commit 'nope'" in error["error"]


# --- builds over HTTP --------------------------------------------------------------------------------------


def test_a_build_is_created_once_then_found_again(daemon: Daemon) -> None:
    async def scenario(client: Client) -> list[tuple[int, Any]]:
        answers = []
        for body in ({"repo": REPO, "ref": "main"}, {"repo": REPO + "/", "ref": "v1"}):  # same commit, same spec
            response = await client.post("/api/v1/builds", json=body, headers=AUTH)
            answers.append((response.status, await response.json()))
        listed = await client.get("/api/v1/builds", headers=AUTH)
        one = await client.get(f"/api/v1/builds/{answers[0][1]['id']}", headers=AUTH)
        answers += [(listed.status, await listed.json()), (one.status, await one.json())]
        return answers

    (created_status, created), (again_status, again), (_, listed), (_, one) = daemon.run(scenario)
    assert (created_status, again_status) == (201, 200)
    assert again["id"] == created["id"] and [build["id"] for build in listed] == [created["id"]]
    assert one == created
    assert (created["state"], created["repo"], created["ref"], created["commit"]) == ("queued", REPO, "main", COMMIT)
    assert "checkout" not in created
    assert daemon.scheduled == [created["id"]]


def test_an_ended_builds_stream_replays_every_event_then_ends_with_its_record(daemon: Daemon) -> None:
    build = daemon.add_build("built", events=("one", "two", "three"))

    async def scenario(client: Client) -> tuple[int, str, str]:
        response = await client.get(f"/api/v1/builds/{build.id}/events", headers=AUTH)
        return response.status, response.headers["Content-Type"], await response.text()

    status, content_type, text = daemon.run(scenario)
    assert (status, content_type) == (200, "text/event-stream")
    events = stream_events(text)
    assert [(event.get("id"), event["event"]) for event in events] == [("1", "log"), ("2", "log"), ("3", "log"), (None, "end")]
    assert [json.loads(event["data"])["message"] for event in events[:3]] == ["one", "two", "three"]
    assert json.loads(events[-1]["data"]) == daemon.store.build(build.id).to_json()  # type: ignore[union-attr]


@pytest.mark.parametrize(("headers", "query"), [({"Last-Event-ID": "2"}, ""), ({}, "?after=2")])
def test_a_stream_resumes_after_the_last_event_received(daemon: Daemon, headers: dict[str, str], query: str) -> None:
    build = daemon.add_build("failed", events=("one", "two", "three", "four"))

    async def scenario(client: Client) -> str:
        response = await client.get(f"/api/v1/builds/{build.id}/events{query}", headers={**AUTH, **headers})
        return await response.text()

    events = stream_events(daemon.run(scenario))
    assert [event.get("id") for event in events] == ["3", "4", None]
    assert json.loads(events[-1]["data"])["state"] == "failed"


@pytest.mark.parametrize("last", ["abc", "-1", "1.5", "²", "1" * 20])
def test_a_last_event_id_that_is_not_an_event_number_is_a_400(daemon: Daemon, last: str) -> None:
    build = daemon.add_build("built", events=("one",))

    async def scenario(client: Client) -> tuple[int, dict[str, Any]]:
        response = await client.get(f"/api/v1/builds/{build.id}/events", params={"after": last}, headers=AUTH)
        return response.status, await error_of(response)

    status, error = daemon.run(scenario)
    assert status == 400
    assert "is not an event number" in error["error"]


def test_a_running_builds_stream_sends_events_as_they_happen_and_ends_with_the_build(daemon: Daemon) -> None:
    build = daemon.add_build("building", events=("before",))

    async def scenario(client: Client) -> tuple[bytes, str]:
        response = await client.get(f"/api/v1/builds/{build.id}/events", headers=AUTH)
        first = await response.content.readuntil(b"\n\n")
        daemon.builds._event(build.id, "build", "log", "while you watch")
        daemon.store.set_build(build.id, state="built")
        daemon.changes.fire()
        return first, await response.text()

    first, rest = daemon.run(scenario)
    assert json.loads(stream_events(first.decode())[0]["data"])["message"] == "before"
    events = stream_events(rest)
    assert [(event.get("id"), event["event"]) for event in events] == [("2", "log"), (None, "end")]
    assert json.loads(events[0]["data"])["message"] == "while you watch"
    assert json.loads(events[1]["data"])["state"] == "built"


def test_cancelling_a_queued_build_ends_it_and_cancelling_it_again_is_a_409(daemon: Daemon) -> None:
    build = daemon.add_build("queued")

    async def scenario(client: Client) -> list[tuple[int, Any]]:
        answers = []
        for _ in range(2):
            response = await client.delete(f"/api/v1/builds/{build.id}", headers=AUTH)
            answers.append((response.status, await response.json()))
        return answers

    (first_status, cancelled), (second_status, refused) = daemon.run(scenario)
    assert (first_status, cancelled["state"], cancelled["error"]) == (202, "cancelled", "the build was cancelled")
    assert [event.message for event in daemon.store.events(build.id)] == ["build cancelled"]
    assert second_status == 409
    assert refused["error"] == f"build {build.id} has ended (cancelled)"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/v1/builds/b-nope", None), ("DELETE", "/api/v1/builds/b-nope", None),
        ("GET", "/api/v1/builds/b-nope/events", None), ("GET", "/api/v1/launches/l-nope", None),
        ("DELETE", "/api/v1/launches/l-nope", None), ("POST", "/api/v1/launches", {"build": "b-nope"}),
    ],
)
def test_unknown_ids_are_404s(daemon: Daemon, method: str, path: str, body: dict[str, str] | None) -> None:
    async def scenario(client: Client) -> tuple[int, dict[str, Any]]:
        response = await client.request(method, path, json=body, headers=AUTH)
        return response.status, await error_of(response)

    status, error = daemon.run(scenario)
    assert status == 404
    assert "-nope'" in error["error"] and error["hint"].startswith("see GET /api/v1/")


# --- launches over HTTP ------------------------------------------------------------------------------------


def test_a_launch_of_a_built_build_runs_and_stops_on_request(daemon: Daemon) -> None:
    build = daemon.add_build("built")

    async def scenario(client: Client) -> list[Any]:
        created = await client.post("/api/v1/launches", json={"build": build.id}, headers=AUTH)
        answers: list[Any] = [created.status, await created.json()]
        while daemon.store.launch(answers[1]["id"]).state != "running":  # type: ignore[union-attr]
            await asyncio.sleep(0.01)
        got = await client.get(f"/api/v1/launches/{answers[1]['id']}", headers=AUTH)
        stopped = await client.delete(f"/api/v1/launches/{answers[1]['id']}", headers=AUTH)
        answers += [await got.json(), stopped.status, await stopped.json()]
        await asyncio.sleep(0.05)  # the container is stopped in a thread
        return answers

    created_status, created, running, stopped_status, stopped = daemon.run(scenario)
    assert (created_status, created["state"], created["build"], created["url"]) == (202, "waiting", build.id, None)
    assert (running["state"], running["url"], running["container_id"]) == ("running", NOTEBOOK_URL, f"container-{created['id']}")
    assert (stopped_status, stopped["state"], stopped["stopped_reason"]) == (202, "stopped", "stopped on request")
    assert daemon.engine.stopped == [f"container-{created['id']}"]


def test_a_launch_over_the_limit_is_a_429(daemon_with: Callable[..., Daemon]) -> None:
    daemon = daemon_with(max_launches=1)
    build = daemon.add_build("queued")
    daemon.store.add_launch(build.id)  # waiting for its build

    async def scenario(client: Client) -> tuple[int, dict[str, Any]]:
        response = await client.post("/api/v1/launches", json={"build": build.id}, headers=AUTH)
        return response.status, await error_of(response)

    status, error = daemon.run(scenario)
    launches = daemon.store.launches()
    assert status == 429
    assert "1 notebook server is running or starting" in error["error"] and "DELETE /api/v1/launches/ID" in error["hint"]
    assert len(launches) == 1

    async def by_repository(client: Client) -> int:
        response = await client.post("/api/v1/launches", json={"repo": REPO}, headers=AUTH)
        return response.status

    builds = len(daemon.store.builds())
    assert daemon.run(by_repository) == 429
    assert len(daemon.store.builds()) == builds  # refused before anything was built


def test_a_server_on_every_interface_is_shown_at_the_host_the_client_used(daemon_with: Callable[..., Daemon]) -> None:
    daemon = daemon_with(ip="0.0.0.0")
    launch = daemon.store.add_launch(daemon.add_build("built").id)
    daemon.store.set_launch(launch.id, state="running", url=NOTEBOOK_URL)

    async def scenario(client: Client) -> tuple[Any, Any]:
        headers = {**AUTH, "Host": "binder.example.org:8585"}
        one = await client.get(f"/api/v1/launches/{launch.id}", headers=headers)
        listed = await client.get("/api/v1/launches", headers=headers)
        return await one.json(), await listed.json()

    one, listed = daemon.run(scenario)
    stored = daemon.store.launch(launch.id)
    assert one["url"] == listed[0]["url"] == "http://binder.example.org:9000/?token=nb-token"
    assert stored is not None and stored.url == NOTEBOOK_URL  # the store keeps the URL as the engine gave it


# --- BinderHub's stream ------------------------------------------------------------------------------------


def test_the_binderhub_stream_of_a_cached_build_goes_from_built_to_ready(daemon: Daemon) -> None:
    queued, _ = asyncio.run(daemon.builds.submit(REPO, "main"))
    build = daemon.store.set_build(queued.id, state="built")
    daemon.engine.images.add(build.image)

    async def scenario(client: Client) -> str:
        response = await client.get(f"/build/gh/org/analysis/main?token={TOKEN}")
        return await response.text()

    messages = [json.loads(event["data"]) for event in stream_events(daemon.run(scenario))]
    assert [message["phase"] for message in messages] == ["waiting", "built", "launching", "ready"]
    assert messages[1]["imageName"] == build.image
    ready = messages[-1]
    assert (ready["url"], ready["token"], ready["resolved_ref"]) == ("http://127.0.0.1:9000/", "nb-token", COMMIT)
    assert ready["binder_persistent_request"] == f"v2/gh/org/analysis/{COMMIT}"
    assert daemon.store.builds() == [daemon.store.build(build.id)]  # no new build: the image exists


# --- the page and the access log ---------------------------------------------------------------------------


class InlineElements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.texts: dict[str, list[str]] = {"script": [], "style": []}
        self._open: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.texts:
            self._open = tag
            self.texts[tag].append("")

    def handle_endtag(self, tag: str) -> None:
        self._open = None

    def handle_data(self, data: str) -> None:
        if self._open:
            self.texts[self._open][-1] += data


def csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def test_the_page_needs_no_token_and_its_policy_allows_exactly_its_inline_script_and_style(daemon: Daemon) -> None:
    async def scenario(client: Client) -> tuple[int, Any, str]:
        response = await client.get("/")
        return response.status, response.headers, await response.text()

    status, headers, page = daemon.run(scenario)
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert (headers["Referrer-Policy"], headers["X-Content-Type-Options"]) == ("no-referrer", "nosniff")
    policy = dict(directive.strip().split(" ", 1) for directive in headers["Content-Security-Policy"].split(";"))
    parser = InlineElements()
    parser.feed(page)
    assert parser.texts["script"] and parser.texts["style"]
    for tag in ("script", "style"):
        assert policy[f"{tag}-src"].split() == [csp_hash(text) for text in parser.texts[tag]]
    assert policy["default-src"] == "'none'" and policy["connect-src"] == "'self'"
    assert "unsafe-inline" not in headers["Content-Security-Policy"]


def test_the_access_log_never_shows_a_query_string(daemon: Daemon, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    build = daemon.add_build("built", events=("one",))

    async def scenario(client: Client) -> None:
        await client.get("/build/gh/org/analysis/main?token=leaked-secret")
        await client.get(f"/api/v1/builds/{build.id}/events?after=0&token=other-secret", headers=AUTH)

    daemon.run(scenario, access_log_class=AccessLog)
    lines = [record.getMessage() for record in caplog.records if record.name == "aiohttp.access"]
    assert len(lines) == 2
    assert '"GET /build/gh/org/analysis/main" 401' in lines[0]
    assert f'"GET /api/v1/builds/{build.id}/events" 200' in lines[1]
    assert not any("secret" in line or "?" in line or "token" in line for line in lines)
