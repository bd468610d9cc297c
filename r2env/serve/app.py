"""The daemon's HTTP face (aiohttp): the JSON API under /api/v1, Server-Sent Event streams of build events,
a BinderHub-compatible /build/<provider>/<spec> stream, and the web page at /."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import re
from importlib import resources
from typing import Any, Awaitable, Callable

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from r2env import __version__
from r2env.errors import EngineUnavailableError, LaunchError, R2envError, UsageError
from r2env.redact import safe_line
from r2env.serve.builds import Builds, Changes
from r2env.serve.launches import DaemonEngine, Launches
from r2env.serve import binderhub, cors
from r2env.serve.sources import binderhub_spec
from r2env.serve.store import BUILD_ENDED, LAUNCH_ACTIVE, Build, Store

KEEPALIVE_SECONDS = 15.0
MAX_BODY_BYTES = 64 * 1024
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

STORE = web.AppKey("store", Store)
BUILDS = web.AppKey("builds", Builds)
LAUNCHES = web.AppKey("launches", Launches)
CHANGES = web.AppKey("changes", Changes)
ENGINE = web.AppKey("engine", object)


class NotFound(UsageError):
    http_status = 404


class Conflict(UsageError):
    http_status = 409


class Unauthorized(UsageError):
    http_status = 401


class RequestTimeout(UsageError):
    http_status = 408


def http_status(error: R2envError) -> int:
    explicit = getattr(error, "http_status", None)
    if isinstance(explicit, int):
        return explicit
    if isinstance(error, UsageError):
        return 400
    if isinstance(error, EngineUnavailableError):
        return 503
    if isinstance(error, LaunchError):
        return 500
    return 422  # the repository cannot be fetched or built as it is: source, spec and lock errors


def error_body(error: R2envError) -> dict[str, str]:
    # As the CLI's error line: no credentials, no control characters, at most an excerpt of the input (r2env/redact.py).
    return {"error": safe_line(error.message), "hint": safe_line(error.hint)}


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error answer is one JSON line {error, hint}: r2env's, aiohttp's own (404, 405, 413) and bugs' (500)."""
    try:
        return await handler(request)
    except R2envError as error:
        response = web.json_response(error_body(error), status=http_status(error))
        if isinstance(error, Unauthorized):
            response.headers["WWW-Authenticate"] = 'Bearer realm="r2env"'
        if isinstance(error, RequestTimeout):
            response.force_close()  # the rest of the body may still come: this connection is done
        return response
    except web.HTTPException as error:
        if error.status < 400:
            raise
        hint = {404: "see docs/serve.md for the API", 405: "see docs/serve.md for the methods each route takes",
                413: f"send at most {MAX_BODY_BYTES // 1024} KiB"}.get(error.status, "see docs/serve.md")
        return web.json_response({"error": error.reason.lower(), "hint": hint}, status=error.status,
                                 headers={key: value for key, value in error.headers.items() if key == "Allow"})
    except Exception as error:
        logging.getLogger("r2env.serve").exception("%s %s failed", request.method, request.path)
        return web.json_response({"error": f"internal error: {type(error).__name__}", "hint": "see the daemon's log; please report it"}, status=500)


def _presented_token(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    # BinderHub front-ends follow /build/ with EventSource, which cannot send headers: there the token may be
    # in the query. Nowhere else: URLs end up in histories and proxies' logs.
    if request.method == "GET" and request.path.startswith("/build/"):
        return request.query.get("token", "")
    return ""


def authorized(request: web.Request) -> bool:
    token = _presented_token(request)
    return bool(token) and request.app[STORE].token_matches(token)


@web.middleware
async def authentication(request: web.Request, handler: Handler) -> web.StreamResponse:
    guarded = (request.path.startswith("/api/") and request.path != "/api/v1/health") or request.path.startswith("/build/")
    if guarded and not authorized(request):
        given = "a wrong token" if _presented_token(request) else "no token"
        raise Unauthorized(f"this server needs its API token ({given} was given)",
                           "send `Authorization: Bearer TOKEN`; the token was printed when the daemon first started")
    return await handler(request)


async def _body(request: web.Request, fields: dict[str, type]) -> dict[str, Any]:
    """A JSON object with only the given fields, each of its type; anything else is refused, not ignored."""
    timeout = request.app[BUILDS].serve.request_timeout
    try:
        # A body sent a byte at a time must not hold the connection open for ever (issue 17).
        body = await asyncio.wait_for(request.json(), timeout)
    except asyncio.TimeoutError:
        raise RequestTimeout(f"the request body did not arrive within {timeout:g} s", "send the whole body at once") from None
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nested deeper than json can parse
        raise UsageError("the request body is not JSON", "send a JSON object, e.g. {\"repo\": \"https://github.com/org/repo\"}") from None
    if not isinstance(body, dict):
        raise UsageError("the request body is not a JSON object", "send a JSON object")
    unknown = sorted(set(body) - set(fields))
    if unknown:
        raise UsageError(f"unknown field {unknown[0]!r}", f"fields: {', '.join(fields)}")
    for name, value in body.items():
        if not isinstance(value, fields[name]):
            raise UsageError(f"field {name!r} must be a {fields[name].__name__}", f"fields: {', '.join(fields)}")
    return body


# builds

async def create_build(request: web.Request) -> web.Response:
    body = await _body(request, {"repo": str, "ref": str})
    if not body.get("repo"):
        raise UsageError("field 'repo' is missing", "give the repository's URL")
    build, created = await request.app[BUILDS].submit(body["repo"], body.get("ref", ""))
    return web.json_response(build.to_json(), status=201 if created else 200)


def _build(request: web.Request) -> Build:
    build = request.app[STORE].build(request.match_info["build_id"])
    if build is None:
        raise NotFound(f"no build {request.match_info['build_id']!r}", "see GET /api/v1/builds")
    return build


async def list_builds(request: web.Request) -> web.Response:
    return web.json_response([build.to_json() for build in request.app[STORE].builds(limit=100)])


async def get_build(request: web.Request) -> web.Response:
    return web.json_response(_build(request).to_json())


async def cancel_build(request: web.Request) -> web.Response:
    build = _build(request)
    if build.state in BUILD_ENDED:
        raise Conflict(f"build {build.id} has ended ({build.state})", "only a queued or running build can be cancelled")
    return web.json_response(request.app[BUILDS].cancel(build.id).to_json(), status=202)


def _sse(event: str | None, data: object, event_id: int | None = None) -> bytes:
    lines = [f"id: {event_id}"] if event_id is not None else []
    if event:
        lines.append(f"event: {event}")
    lines.append("data: " + json.dumps(data))
    return ("\n".join(lines) + "\n\n").encode()


def stream(handler: Handler) -> Handler:
    """An event stream ends when its client goes away: that is not an error worth a traceback in the log."""

    async def handle(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except ConnectionResetError:  # aiohttp's ClientConnectionResetError is one
            return web.StreamResponse()

    return handle


async def _open_stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream", "Cache-Control": "no-cache",
        "X-Accel-Buffering": "no",  # a reverse proxy must pass events on at once
    })
    await response.prepare(request)
    return response


async def _follow_build(request: web.Request, build_id: str, after: int,
                        send: Callable[[Any], Awaitable[None]], keepalive: Callable[[], Awaitable[None]]) -> Build:
    """Every event of the build after `after`, replayed from the store and then live, until it has ended."""
    store, changes = request.app[STORE], request.app[CHANGES]
    while True:
        news = changes.current()
        events = store.events(build_id, after)
        for event in events:
            await send(event)
            after = event.seq
        build = store.build(build_id)
        assert build is not None
        if events:
            continue
        if build.state in BUILD_ENDED:
            return build
        try:
            await asyncio.wait_for(news.wait(), KEEPALIVE_SECONDS)
        except asyncio.TimeoutError:
            await keepalive()


@stream
async def build_events(request: web.Request) -> web.StreamResponse:
    build = _build(request)
    text = request.headers.get("Last-Event-ID") or request.query.get("after") or "0"
    # ASCII digits only (str.isdigit() accepts '²', which int() refuses), and few enough for SQLite's 64-bit
    # integers: checked before the stream opens, since an error after that can only cut the stream.
    if not re.fullmatch(r"[0-9]{1,18}", text):
        raise UsageError(f"Last-Event-ID {text!r} is not an event number", "give the id of the last event received")
    response = await _open_stream(request)

    async def send(event: Any) -> None:
        await response.write(_sse("log", event.to_json(), event.seq))

    async def keepalive() -> None:
        await response.write(b": keepalive\n\n")

    ended = await _follow_build(request, build.id, int(text), send, keepalive)
    await response.write(_sse("end", ended.to_json()))
    return response


# launches

async def create_launch(request: web.Request) -> web.Response:
    body = await _body(request, {"build": str, "repo": str, "ref": str})
    if bool(body.get("build")) == bool(body.get("repo")) or ("build" in body and "ref" in body):
        raise UsageError("give either 'build' (a build id) or 'repo' (and 'ref')", "e.g. {\"repo\": \"https://github.com/org/repo\"}")
    request.app[LAUNCHES].check_room()  # a full server refuses before building anything
    if body.get("build"):
        if request.app[STORE].build(body["build"]) is None:
            raise NotFound(f"no build {body['build']!r}", "see GET /api/v1/builds")
        build_id = body["build"]
    else:
        build, _ = await request.app[BUILDS].submit(body["repo"], body.get("ref", ""))
        build_id = build.id
    return web.json_response(request.app[LAUNCHES].record(request.app[LAUNCHES].submit(build_id), request.url.host), status=202)


def _launch_id(request: web.Request) -> str:
    launch_id = request.match_info["launch_id"]
    if request.app[STORE].launch(launch_id) is None:
        raise NotFound(f"no launch {launch_id!r}", "see GET /api/v1/launches")
    return launch_id


async def list_launches(request: web.Request) -> web.Response:
    launches = request.app[LAUNCHES]
    return web.json_response([launches.record(launch, request.url.host) for launch in request.app[STORE].launches(limit=100)])


async def get_launch(request: web.Request) -> web.Response:
    launch = request.app[STORE].launch(_launch_id(request))
    assert launch is not None
    return web.json_response(request.app[LAUNCHES].record(launch, request.url.host))


async def stop_launch(request: web.Request) -> web.Response:
    current = request.app[STORE].launch(_launch_id(request))
    assert current is not None
    if current.state not in LAUNCH_ACTIVE:
        raise Conflict(f"launch {current.id} has ended ({current.state})", "only a waiting, starting or running launch can be stopped")
    launch = request.app[LAUNCHES].stop(current.id, "stopped on request")
    return web.json_response(request.app[LAUNCHES].record(launch, request.url.host), status=202)


# BinderHub's build-and-launch stream

@stream
async def binderhub_build(request: web.Request) -> web.StreamResponse:
    """GET /build/<provider>/<spec>: build, launch and report as BinderHub does (data-only events with a phase)."""
    provider = request.match_info["provider"]
    raw_spec = request.rel_url.raw_path.split("/", 3)[3]  # still percent-encoded: a git URL inside it has slashes
    response = await _open_stream(request)

    async def send(message: dict[str, Any]) -> None:
        await response.write(_sse(None, message))

    async def keepalive() -> None:
        await response.write(b": keepalive\n\n")

    await send(binderhub.waiting())
    try:
        repo, ref = binderhub_spec(provider, raw_spec)
        request.app[LAUNCHES].check_room()
        build, _ = await request.app[BUILDS].submit(repo, ref)
        launch = request.app[LAUNCHES].submit(build.id)
    except R2envError as error:
        await send(binderhub.failed(safe_line(str(error))))
        return response

    async def send_event(event: Any) -> None:
        await send(binderhub.progress(event.phase, event.kind, event.message, tuple(event.progress) if event.progress else None))

    if build.state not in BUILD_ENDED:  # a finished build's log is history: BinderHub goes straight to "built"
        build = await _follow_build(request, build.id, 0, send_event, keepalive)
    if build.state != "built":
        await send(binderhub.failed(safe_line(f"{build.error}: {build.hint}" if build.hint else build.error)))
        return response
    await send(binderhub.built(build.image))
    await send(binderhub.launching())
    store, changes = request.app[STORE], request.app[CHANGES]
    while True:
        news = changes.current()
        current = store.launch(launch.id)
        assert current is not None
        if current.state == "running":
            url = str(request.app[LAUNCHES].record(current, request.url.host)["url"])
            await send(binderhub.ready(url, build.image, build.repo, build.commit, provider, raw_spec))
            return response
        if current.state in ("failed", "stopped"):
            await send(binderhub.failed(safe_line(current.error or current.stopped_reason)))
            return response
        try:
            await asyncio.wait_for(news.wait(), KEEPALIVE_SECONDS)
        except asyncio.TimeoutError:
            await keepalive()


# health and the page

async def health(request: web.Request) -> web.Response:
    body: dict[str, Any] = {"status": "ok", "version": __version__}
    if authorized(request):
        engine: DaemonEngine = request.app[ENGINE]  # type: ignore[assignment]
        try:
            await asyncio.to_thread(engine.image_id, "r2env-serve/health-probe:none")
            body["engine"] = "ok"
        except Exception as error:  # any failure to talk to the engine is what health reports
            body.update(status="degraded", engine=f"unreachable: {type(error).__name__}")
        body["builds"] = request.app[BUILDS].counts()
        body["launches"] = request.app[LAUNCHES].counts()
    return web.json_response(body, status=200 if body["status"] == "ok" else 503)


def page_text() -> str:
    return resources.files("r2env.serve").joinpath("page.html").read_text(encoding="utf-8")


def _inline_hashes(page: str, tag: str) -> str:
    found = re.findall(rf"<{tag}>(.*?)</{tag}>", page, re.DOTALL)
    return " ".join("'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'" for text in found) or "'none'"


def content_security_policy(page: str) -> str:
    """Only the page's own inline script and style apply (pinned by their hashes); it talks to this server only."""
    return (f"default-src 'none'; script-src {_inline_hashes(page, 'script')}; style-src {_inline_hashes(page, 'style')}; "
            "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


async def page(request: web.Request) -> web.Response:
    text = page_text()
    return web.Response(text=text, content_type="text/html", headers={
        "Content-Security-Policy": content_security_policy(text),
        "Referrer-Policy": "no-referrer",  # notebook links carry their token
        "X-Content-Type-Options": "nosniff",
    })


class AccessLog(AbstractAccessLogger):
    """Method, path, status and time: never the query string, where an event stream's token may be."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info('%s "%s %s" %s %.3fs', request.remote, request.method, request.path, response.status, time)


def make_app(store: Store, builds: Builds, launches: Launches, changes: Changes, engine: DaemonEngine,
             allowed_origins: tuple[str, ...] = ()) -> web.Application:
    app = web.Application(middlewares=[cors.preflight, errors, authentication], client_max_size=MAX_BODY_BYTES)
    cors.enable(app, allowed_origins)
    app[STORE], app[BUILDS], app[LAUNCHES], app[CHANGES], app[ENGINE] = store, builds, launches, changes, engine
    app.router.add_get("/", page)
    app.router.add_get("/api/v1/health", health)
    app.router.add_post("/api/v1/builds", create_build)
    app.router.add_get("/api/v1/builds", list_builds)
    app.router.add_get("/api/v1/builds/{build_id}", get_build)
    app.router.add_delete("/api/v1/builds/{build_id}", cancel_build)
    # No HEAD twins for the streams: a HEAD of /build/... would start a build and a server.
    app.router.add_get("/api/v1/builds/{build_id}/events", build_events, allow_head=False)
    app.router.add_post("/api/v1/launches", create_launch)
    app.router.add_get("/api/v1/launches", list_launches)
    app.router.add_get("/api/v1/launches/{launch_id}", get_launch)
    app.router.add_delete("/api/v1/launches/{launch_id}", stop_launch)
    app.router.add_get("/build/{provider}/{spec:.+}", binderhub_build, allow_head=False)
    return app

