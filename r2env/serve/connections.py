"""The daemon's defences below aiohttp's request handling (issue 17): caps on open connections, overall and per client
address; a log that reports each kind of failure once per interval instead of a traceback per connection; and the
scrubbing of tokens from every log line, aiohttp's and asyncio's own included; and a deadline for a connection's
first request head. aiohttp closes idle connections between requests (`keepalive_timeout`), but only its newest
releases also time the first request (aio-libs/aiohttp#13681): before that, a half-sent request stayed open for
ever. The deadline is not moved by incoming bytes, so a head trickled a byte at a time is closed as well."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import resource
import time
from collections import Counter
from typing import TYPE_CHECKING, Any, Callable, TextIO

from aiohttp import web

if TYPE_CHECKING:
    from r2env.serve.config import ServeSettings

# `token=VALUE` in a query string or a logged URL, and `Bearer VALUE`/`token VALUE` in a logged header: up to the next
# separator. A raw byte aiohttp shows as `\x80` inside VALUE is consumed too (no backslash stops it).
_SECRET = re.compile(r"(?i)(token=|bearer\s+|authorization:\s*token\s+)[^&\s'\"<>;,]+")
REDACTED = "<redacted>"
# File descriptors the daemon needs besides its HTTP connections: SQLite, git and docker subprocesses' pipes, the
# engine's sockets, the event loop's own.
RESERVED_FILES = 256
LINGERING_SECONDS = 2.0


def one_line(error: BaseException, limit: int = 300) -> str:
    """`Type: message` on one line (aiohttp's parser errors span three), at most `limit` characters."""
    text = " ".join(f"{type(error).__name__}: {error}".split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def scrub(text: str) -> str:
    """`text` with every token value replaced: log lines must not carry a credential (issue 17)."""
    return _SECRET.sub(lambda match: match.group(1) + REDACTED, text)


class ScrubbingFormatter(logging.Formatter):
    """Scrubs the whole formatted line, exception text included: aiohttp quotes a request line it cannot parse
    (`BadStatusLine: ... b'GET /build/gh/o/r/main?token=...'`) in its exception."""

    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))


class RateLimitedLog:
    """Emits the first failure of each kind per `interval` seconds, with how many like it were left out since the
    last one: a flood of bad connections costs one line a minute, not a traceback each (149 MB in issue 17)."""

    def __init__(self, emit: Callable[[str], None], interval: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._emit = emit
        self._interval = interval
        self._clock = clock
        self._last: dict[str, float] = {}
        self._left_out: Counter[str] = Counter()

    def __call__(self, kind: str, message: str) -> None:
        now = self._clock()
        last = self._last.get(kind)
        if last is not None and now - last < self._interval:
            self._left_out[kind] += 1
            return
        self._last[kind] = now
        left_out = self._left_out.pop(kind, 0)
        more = f" ({left_out} more like it in the last {self._interval:g} s)" if left_out else ""
        self._emit(scrub(message) + more)


class OncePerInterval(logging.Filter):
    """For aiohttp's and asyncio's loggers: a record with a traceback (a request aiohttp cannot parse, an accept that
    fails with 'Too many open files') goes to the rate-limited log as one line and is dropped here."""

    def __init__(self, log: RateLimitedLog) -> None:
        super().__init__()
        self._log = log

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING and not record.exc_info:
            return True
        error = record.exc_info[1] if record.exc_info else None
        kind = f"{record.name}:{record.msg}:{type(error).__name__}"
        reason = f": {one_line(error)}" if error is not None else ""
        self._log(kind, f"{record.getMessage()}{reason}")
        return False


def loop_exception_handler(log: RateLimitedLog) -> Callable[[asyncio.AbstractEventLoop, dict[str, Any]], None]:
    """asyncio's default handler prints a traceback per failed accept (`socket.accept() out of system resource`):
    one line per kind and interval instead."""

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        error = context.get("exception")
        message = str(context.get("message", "event loop error"))
        reason = f": {one_line(error)}" if isinstance(error, BaseException) else ""
        log(f"asyncio:{message}:{type(error).__name__}", f"{message}{reason}")

    return handle


def raise_file_limit(needed: int) -> int:
    """Raise the soft limit of open files towards the hard one when `needed` exceeds it; return the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft if soft != resource.RLIM_INFINITY else needed


def _refusal(message: str, hint: str) -> bytes:
    body = json.dumps({"error": message, "hint": hint}).encode()
    head = ("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 5\r\n"
            f"Connection: close\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


class ConnectionLimits:
    """A protocol factory for loop.create_server around aiohttp's (web.AppRunner.server): past `total` open
    connections, or `per_client` from one address, a new connection gets a 503 and is closed before aiohttp sees it,
    so a flood of half-open connections can neither use up the daemon's file descriptors nor starve other clients."""

    def __init__(self, factory: Callable[[], asyncio.Protocol], total: int, per_client: int, log: RateLimitedLog,
                 head_timeout: float) -> None:
        self._factory = factory
        self.total = total
        self.per_client = per_client
        self.head_timeout = head_timeout
        self._log = log
        self.open: Counter[str] = Counter()

    def __call__(self) -> asyncio.Protocol:
        return _Guarded(self)

    def admit(self, client: str) -> tuple[str, str] | None:
        """None and the connection counted, or why it is refused (message, hint)."""
        if sum(self.open.values()) >= self.total:
            self._log("connections-total", f"refusing connections: {self.total} are open, the most this server allows (c.Serve.max_connections)")
            return (f"this server has {self.total} connections open, the most it allows", "try again in a few seconds")
        if self.open[client] >= self.per_client:
            self._log(f"connections-client:{client}",
                      f"refusing connections from {client}: it has {self.per_client} open (c.Serve.max_client_connections)")
            return (f"your address has {self.per_client} connections open to this server, the most it allows",
                    "close some (each open event stream is one) and try again")
        self.open[client] += 1
        return None

    def too_slow(self, client: str) -> None:
        self._log("slow-head", f"closing connections that sent no complete request within {self.head_timeout:g} s "
                               f"(c.Serve.request_timeout), the last from {client}")

    def release(self, client: str) -> None:
        self.open[client] -= 1
        if self.open[client] <= 0:
            del self.open[client]


class _Guarded(asyncio.Protocol):
    """One connection: aiohttp's RequestHandler behind the limits, every protocol call passed on to it."""

    def __init__(self, limits: ConnectionLimits) -> None:
        self._limits = limits
        self._inner: asyncio.Protocol | None = None
        self._client = ""
        self._transport: asyncio.Transport | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._tail = b""  # the last bytes received, to find the blank line that ends the first request head

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        self._client = str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"
        refused = self._limits.admit(self._client)
        if refused is not None:
            assert isinstance(transport, asyncio.WriteTransport)
            transport.write(_refusal(*refused))
            transport.close()
            return
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._deadline = asyncio.get_running_loop().call_later(self._limits.head_timeout, self._too_slow)
        self._inner = self._limits._factory()
        self._inner.connection_made(transport)

    def _too_slow(self) -> None:
        self._deadline = None
        if self._transport is not None and not self._transport.is_closing():
            self._limits.too_slow(self._client)
            self._transport.abort()

    def data_received(self, data: bytes) -> None:
        if self._deadline is not None:
            # The first head ends at its first blank line; later requests are aiohttp's keepalive_timeout's to time.
            seen = self._tail + data
            if b"\r\n\r\n" in seen or b"\n\n" in seen:
                self._deadline.cancel()
                self._deadline = None
            self._tail = seen[-3:]
        if self._inner is not None:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._transport = None
        if self._inner is not None:
            self._limits.release(self._client)
            inner, self._inner = self._inner, None
            inner.connection_lost(exc)


_NOISY_LOGGERS = ("aiohttp.server", "aiohttp.web", "asyncio")


def install_logging(stream: TextIO, interval: float = 60.0) -> RateLimitedLog:
    """The daemon's log on `stream`: every line scrubbed of tokens, and aiohttp's and asyncio's failures at most
    once per kind and `interval`. Installing again replaces what an earlier call installed."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "r2env_serve", False)]:
        root.removeHandler(handler)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(ScrubbingFormatter("%(asctime)s %(message)s"))
    handler.r2env_serve = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    emitter = logging.getLogger("r2env.serve")
    log = RateLimitedLog(emitter.warning, interval)
    for name in _NOISY_LOGGERS:
        logger = logging.getLogger(name)
        for old in [f for f in logger.filters if isinstance(f, OncePerInterval)]:
            logger.removeFilter(old)
        logger.addFilter(OncePerInterval(log))
    return log


async def listen(app: web.Application, serve: "ServeSettings", log: RateLimitedLog) -> tuple[web.AppRunner, asyncio.Server]:
    """Serve `app` on serve.host:serve.port behind the connection limits; OSError when the address cannot be used."""
    from r2env.serve.app import AccessLog

    # keepalive_timeout: how long an idle connection is kept between two requests. lingering_time: how long the rest
    # of a body is read (and dropped) after an early answer such as a 408, before the connection is closed.
    runner = web.AppRunner(app, access_log_class=AccessLog, handle_signals=False, keepalive_timeout=serve.request_timeout,
                           lingering_time=LINGERING_SECONDS)
    await runner.setup()
    assert runner.server is not None
    limits = ConnectionLimits(runner.server, serve.max_connections, serve.max_client_connections, log, serve.request_timeout)
    try:
        listener = await asyncio.get_running_loop().create_server(limits, serve.host, serve.port, reuse_address=True)
    except OSError:
        await runner.cleanup()
        raise
    return runner, listener
