"""The daemon's connection-level defences (r2env/serve/connections.py) against the real app over loopback, wired the way
`r2env serve` wires it (connections.listen): half-sent requests are closed, connections are capped overall and per
client address, a slow body times out, failures are logged once per interval without tracebacks, and no log line
carries a token. Every load here is bounded in count and time and goes to 127.0.0.0/8 only."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
from dataclasses import replace
from typing import Awaitable, Callable, Iterator, TypeVar

import pytest

from r2env.serve.app import make_app
from r2env.serve.connections import RateLimitedLog, install_logging, listen, scrub
from serve_fakes import AUTH, Daemon

T = TypeVar("T")
Scenario = Callable[[int], Awaitable[T]]
LOAD_SECONDS = 20.0  # the most any scenario here may take


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    """The daemon's log (standard error in `r2env serve`), as install_logging sets it up; removed afterwards."""
    stream = io.StringIO()
    install_logging(stream)
    yield stream
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "r2env_serve", False)]:
        root.removeHandler(handler)
    for name in ("aiohttp.server", "aiohttp.web", "asyncio"):
        logging.getLogger(name).filters.clear()


def serving(daemon: Daemon, scenario: Scenario[T], stream: io.StringIO, **limits: object) -> T:
    """Run `scenario(port)` against the daemon's app listening on 127.0.0.1, behind the given limits."""
    serve = replace(daemon.builds.serve, host="127.0.0.1", port=0, **limits)  # type: ignore[arg-type]
    daemon.builds.serve = serve  # the app reads the request timeout from here

    async def main() -> T:
        failures = install_logging(stream)
        asyncio.get_running_loop().set_exception_handler(None)
        app = make_app(daemon.store, daemon.builds, daemon.launches, daemon.changes, daemon.engine, ())  # type: ignore[arg-type]
        runner, listener = await listen(app, serve, failures)
        try:
            return await asyncio.wait_for(scenario(listener.sockets[0].getsockname()[1]), LOAD_SECONDS)
        finally:
            listener.close()
            await runner.cleanup()

    return asyncio.run(main())


async def request(port: int, raw: bytes, source: str = "127.0.0.1", timeout: float = 5.0) -> bytes:
    """Send `raw` and read until the server closes (or `timeout`)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    writer.write(raw)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()


async def health(port: int) -> tuple[int, float]:
    started = time.monotonic()
    answer = await request(port, b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", timeout=2.0)
    return int(answer.split(b" ", 2)[1]), time.monotonic() - started


HALF_SENT = b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nX-Slow: "  # no blank line: the head never ends


async def closed_by_server(reader: asyncio.StreamReader, within: float) -> bytes | None:
    """What the server sent before closing, or None if it kept the connection open for `within` seconds."""
    try:
        return await asyncio.wait_for(reader.read(), within)
    except asyncio.TimeoutError:
        return None
    except ConnectionResetError:
        return b""


def test_300_half_sent_requests_from_one_client_neither_starve_others_nor_stay_open(daemon: Daemon, log_stream: io.StringIO) -> None:
    async def scenario(port: int) -> None:
        streams = []
        for _ in range(300):  # one attacker address: 127.0.0.2
            reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=("127.0.0.2", 0))
            writer.write(HALF_SENT)
            streams.append((reader, writer))
        try:
            await writer.drain()
            for _ in range(5):  # another client still gets answers, at once
                status, seconds = await health(port)
                assert status == 200 and seconds < 1.0
            outcomes = await asyncio.gather(*(closed_by_server(reader, 2.0 + 3.0) for reader, _ in streams))
        finally:
            for _, writer in streams:
                writer.close()
        refused = [answer for answer in outcomes if answer and answer.startswith(b"HTTP/1.1 503")]
        assert len(refused) == 300 - 64  # past c.Serve.max_client_connections, refused at once
        body = json.loads(refused[0].split(b"\r\n\r\n", 1)[1])
        assert body["error"] == "your address has 64 connections open to this server, the most it allows"
        # The 64 admitted ones are closed at the request timeout: none is left open.
        assert outcomes.count(None) == 0
        assert len([answer for answer in outcomes if not answer]) == 64

    serving(daemon, scenario, log_stream, request_timeout=2.0)
    log = log_stream.getvalue()
    assert "Traceback" not in log and len(log) < 2000, log
    assert log.count("refusing connections from 127.0.0.2") == 1  # once per interval, not once per connection
    assert log.count("closing connections that sent no complete request within 2 s") == 1


def test_a_request_head_trickled_a_byte_at_a_time_is_closed_at_the_deadline(daemon: Daemon, log_stream: io.StringIO) -> None:
    async def scenario(port: int) -> float:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        started = time.monotonic()
        try:
            for byte in HALF_SENT * 10:
                if reader.at_eof():
                    break
                writer.write(bytes([byte]))
                await asyncio.sleep(0.1)
                if writer.is_closing() or reader.at_eof():
                    break
                try:
                    await writer.drain()
                except ConnectionError:
                    break
            await closed_by_server(reader, 5.0)
            return time.monotonic() - started
        finally:
            writer.close()

    assert serving(daemon, scenario, log_stream, request_timeout=1.5) < 4.0


def test_past_the_overall_cap_every_client_gets_a_503_with_a_hint(daemon: Daemon, log_stream: io.StringIO) -> None:
    async def scenario(port: int) -> None:
        held = [await asyncio.open_connection("127.0.0.1", port, local_addr=(f"127.0.0.{3 + i}", 0)) for i in range(4)]
        try:
            await asyncio.sleep(0.1)
            answer = await request(port, b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
            body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
            assert body == {"error": "this server has 4 connections open, the most it allows", "hint": "try again in a few seconds"}
        finally:
            for _, writer in held:
                writer.close()
        await asyncio.sleep(0.2)
        assert (await health(port))[0] == 200  # room again once they are gone

    serving(daemon, scenario, log_stream, max_connections=4, request_timeout=5.0)
    assert "refusing connections: 4 are open, the most this server allows (c.Serve.max_connections)" in log_stream.getvalue()


def test_a_body_that_does_not_arrive_in_time_is_a_408(daemon: Daemon, log_stream: io.StringIO) -> None:
    async def scenario(port: int) -> bytes:
        head = (f"POST /api/v1/builds HTTP/1.1\r\nHost: x\r\nAuthorization: {AUTH['Authorization']}\r\n"
                "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n").encode()
        return await request(port, head + b'{"repo": ', timeout=5.0)

    answer = serving(daemon, scenario, log_stream, request_timeout=1.0)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1]) == {"error": "the request body did not arrive within 1 s", "hint": "send the whole body at once"}
    assert daemon.store.builds() == []


SECRET = "sEcReT-" + "t" * 40


@pytest.mark.parametrize(
    "request_line",
    [
        f"GET /build/gh/org/analysis/main?token={SECRET}\x80 HTTP/1.1".encode("latin-1"),  # a raw non-ASCII byte
        f"GET /build/gh/org/analysis/main?token={SECRET}\tx HTTP/1.1".encode(),  # a tab
        f"GET /build/gh/org/analysis/main?token={SECRET} HTTP/9.9".encode(),  # a bad HTTP version
        f"GET\x01 /build/gh/org/analysis/main?token={SECRET} HTTP/1.1".encode(),  # a bad method
    ],
)
def test_a_request_line_aiohttp_cannot_parse_leaves_no_token_in_the_log(daemon: Daemon, log_stream: io.StringIO, request_line: bytes) -> None:
    async def scenario(port: int) -> bytes:
        return await request(port, request_line + b"\r\nHost: x\r\n\r\n")

    answer = serving(daemon, scenario, log_stream)
    assert answer.split(b"\r\n", 1)[0].endswith(b" 400 Bad Request")
    log = log_stream.getvalue()
    assert SECRET not in log and SECRET[:10] not in log, log
    assert "Traceback" not in log


def test_every_log_line_is_scrubbed_of_tokens_whoever_logs_it(log_stream: io.StringIO) -> None:
    logging.getLogger("aiohttp.access").info('127.0.0.1 "GET /build/gh/o/r/main?token=%s&x=1" 200', SECRET)
    logging.getLogger("r2env.serve").warning("notebook at http://127.0.0.1:9000/?token=%s", SECRET)
    logging.getLogger("aiohttp.server").error("header Authorization: Bearer %s", SECRET)
    log = log_stream.getvalue()
    assert SECRET not in log
    assert "?token=<redacted>&x=1" in log and "Bearer <redacted>" in log


@pytest.mark.parametrize(
    ("text", "scrubbed"),
    [
        ("b'GET /build/x?token=abc\\x80def HTTP/1.1'", "b'GET /build/x?token=<redacted> HTTP/1.1'"),
        ("url?TOKEN=abc;x", "url?TOKEN=<redacted>;x"),
        ("Authorization: token abc123 rest", "Authorization: token <redacted> rest"),
        ("no secret here", "no secret here"),
    ],
)
def test_scrub_replaces_token_values_only(text: str, scrubbed: str) -> None:
    assert scrub(text) == scrubbed


def test_the_rate_limited_log_says_how_many_it_left_out() -> None:
    lines: list[str] = []
    now = [0.0]
    log = RateLimitedLog(lines.append, interval=60.0, clock=lambda: now[0])
    for _ in range(1000):
        log("accept", "socket.accept() out of system resource: OSError: [Errno 24] Too many open files")
    log("other", "something else")
    now[0] = 61.0
    log("accept", "socket.accept() out of system resource: OSError: [Errno 24] Too many open files")
    assert lines == [
        "socket.accept() out of system resource: OSError: [Errno 24] Too many open files",
        "something else",
        "socket.accept() out of system resource: OSError: [Errno 24] Too many open files (999 more like it in the last 60 s)",
    ]


def test_a_flood_of_malformed_requests_is_one_log_line(daemon: Daemon, log_stream: io.StringIO) -> None:
    async def scenario(port: int) -> None:
        for _ in range(50):
            await request(port, b"GET / HTTP/9.9\r\n\r\n")

    serving(daemon, scenario, log_stream)
    log = log_stream.getvalue()
    assert "Traceback" not in log
    assert log.count("Error handling request") == 1, log
