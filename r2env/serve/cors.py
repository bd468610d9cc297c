"""Cross-origin access for front-ends served from elsewhere (a BinderHub-style page on another host): only the origins
the administrator lists (c.Serve.allowed_origins) may read the daemon's answers from a browser. The API's credential is
a header, never a cookie, so no request is made with the browser's ambient authority (CORS "credentials" stay off).
See https://fetch.spec.whatwg.org/#http-cors-protocol."""

from __future__ import annotations

from typing import Awaitable, Callable

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ORIGINS = web.AppKey("allowed_origins", tuple)
ALLOWED_METHODS = "GET, POST, DELETE"
ALLOWED_HEADERS = "Authorization, Content-Type, Last-Event-ID"
PREFLIGHT_SECONDS = "600"


def allowed(origin: str, origins: tuple[str, ...]) -> bool:
    return bool(origin) and ("*" in origins or origin in origins)


@web.middleware
async def preflight(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A browser asks (OPTIONS, without the token) before a cross-origin POST, DELETE or request with a token header."""
    if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        if not allowed(request.headers.get("Origin", ""), request.app[ORIGINS]):
            return web.Response(status=403, headers={"Vary": "Origin"})
        return web.Response(status=204, headers={
            "Access-Control-Allow-Methods": ALLOWED_METHODS,
            "Access-Control-Allow-Headers": ALLOWED_HEADERS,
            "Access-Control-Max-Age": PREFLIGHT_SECONDS,
        })
    return await handler(request)


async def allow_origin(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """on_response_prepare: every answer to an allowed origin says so, event streams included."""
    origin = request.headers.get("Origin", "")
    response.headers.add("Vary", "Origin")
    if allowed(origin, request.app[ORIGINS]):  # type: ignore[attr-defined]
        response.headers["Access-Control-Allow-Origin"] = origin


def enable(app: web.Application, origins: tuple[str, ...]) -> None:
    app[ORIGINS] = origins
    app.on_response_prepare.append(allow_origin)
