"""Cross-origin access over the real app: only listed origins may read answers from a browser; the preflight needs
no token, every other request still does."""

from __future__ import annotations

from typing import Callable

from serve_fakes import AUTH, Client, Daemon

FRONT_END = "https://binder.example.org"
PREFLIGHT = {"Origin": FRONT_END, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization, content-type"}


def test_a_listed_origin_passes_the_preflight_and_reads_answers(daemon_with: Callable[..., Daemon]) -> None:
    daemon = daemon_with(allowed_origins=(FRONT_END,))
    build = daemon.add_build("built", events=("one line",))

    async def scenario(client: Client) -> list[tuple[int, dict[str, str]]]:
        answers = [await client.options("/api/v1/builds", headers=PREFLIGHT),
                   await client.get("/api/v1/builds", headers={**AUTH, "Origin": FRONT_END}),
                   await client.get(f"/api/v1/builds/{build.id}/events", headers={**AUTH, "Origin": FRONT_END}),
                   await client.get("/api/v1/builds", headers={"Origin": FRONT_END})]  # no token
        for answer in answers:
            await answer.read()
        return [(answer.status, dict(answer.headers)) for answer in answers]

    (preflight, status, (events, stream_headers), (refused, refused_headers)) = daemon.run(scenario)
    assert preflight[0] == 204
    assert preflight[1]["Access-Control-Allow-Origin"] == FRONT_END
    assert preflight[1]["Access-Control-Allow-Methods"] == "GET, POST, DELETE"
    assert preflight[1]["Access-Control-Allow-Headers"] == "Authorization, Content-Type, Last-Event-ID"
    assert status[0] == 200 and status[1]["Access-Control-Allow-Origin"] == FRONT_END and status[1]["Vary"] == "Origin"
    assert events == 200 and stream_headers["Access-Control-Allow-Origin"] == FRONT_END
    assert "Access-Control-Allow-Credentials" not in status[1]
    assert refused == 401  # CORS decides who may read, the token who may act
    assert refused_headers["Access-Control-Allow-Origin"] == FRONT_END  # so the page can show the 401's error


def test_other_origins_get_no_permission(daemon_with: Callable[..., Daemon]) -> None:
    daemon = daemon_with(allowed_origins=(FRONT_END,))

    async def scenario(client: Client) -> list[tuple[int, dict[str, str]]]:
        elsewhere = "https://evil.example.net"
        answers = [await client.options("/api/v1/builds", headers={**PREFLIGHT, "Origin": elsewhere}),
                   await client.get("/api/v1/builds", headers={**AUTH, "Origin": elsewhere})]
        return [(answer.status, dict(answer.headers)) for answer in answers]

    (preflight, listed) = daemon.run(scenario)
    assert preflight[0] == 403 and "Access-Control-Allow-Origin" not in preflight[1]
    assert listed[0] == 200 and "Access-Control-Allow-Origin" not in listed[1]


def test_by_default_no_origin_is_listed_and_star_lists_every_one(daemon_with: Callable[..., Daemon]) -> None:
    closed = daemon_with()

    async def ask(client: Client) -> int:
        return (await client.options("/api/v1/builds", headers=PREFLIGHT)).status

    assert closed.run(ask) == 403
    assert daemon_with(allowed_origins=("*",)).run(ask) == 204
