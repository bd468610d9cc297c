"""The web page `r2env serve` shows at `/` (r2env/serve/page.html) in Debian's headless Chromium, driven by Playwright,
against a small fake of the daemon's HTTP API (no engine, no daemon), served under the strict Content-Security-Policy the
daemon sends (the inline script and style allowed by their hashes only). The page's structure is read statically by
tests/test_serve_page.py; this module needs a real browser, hence its place here (the `chromium` fixture in conftest.py
skips without one, unless R2ENV_REQUIRE_BROWSER=1, as in CI)."""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterator

import pytest
from aiohttp import web
from playwright.sync_api import Browser, Page, expect, sync_playwright

from r2env.serve.app import content_security_policy
from test_browser import CHROMIUM_FLAGS

PAGE = Path(__file__).resolve().parent.parent / "r2env" / "serve" / "page.html"
TOKEN = "s3cret-token"


# --- a fake daemon ---------------------------------------------------------------------------------------------------

def sse(event: str, data: dict[str, Any], seq: int | None = None) -> bytes:
    head = f"id: {seq}\n" if seq is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data)}\n\n".encode()


BUILD_EVENTS: list[dict[str, Any]] = [
    {"phase": "fetch", "kind": "step", "message": "clone https://example.org/analysis.git", "progress": [1, 3]},
    # Log lines are attacker-controlled: this one must show as text, not become an element.
    {"phase": "build", "kind": "log", "message": "<img src=x id=injected> Collecting numpy", "progress": None},
    {"phase": "build", "kind": "cached", "message": "RUN pip install", "progress": [2, 3]},
]
EXPECTED_LOG = "[fetch 1/3] clone https://example.org/analysis.git\n    <img src=x id=injected> Collecting numpy\n    (cached)\n"


@dataclass
class FakeApi:
    """Answers like the daemon would (notes/serve-contract.md). The repository URL picks the story: a host with `evil`
    in it is refused, `…/broken` fails its build, `…/slow` builds until it is cancelled, `…/analysis` builds (its event
    stream dropped once halfway) and runs."""

    launches: list[dict[str, Any]] = field(default_factory=list)
    resumed_from: list[str | None] = field(default_factory=list)  # Last-Event-ID of each events request
    deleted: list[str] = field(default_factory=list)
    polls: int = 0
    url: str = ""
    cancelled: asyncio.Event | None = None

    def build_record(self, build: str, state: str, **more: Any) -> dict[str, Any]:
        return {"id": build, "repo": "https://example.org/a-very-long-organisation-name/an-even-longer-repository-name.git",
                "ref": "main", "commit": "0123456789abcdef0123456789abcdef01234567", "state": state,
                "error": None, "hint": None, "cached": False, "finished": "2025-01-02T03:04:05Z", **more}

    @web.middleware
    async def auth(self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        if request.path.startswith("/api/") and request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.json_response({"error": "missing or wrong token", "hint": "use the token `r2env serve` printed"}, status=401)
        return await handler(request)

    async def page(self, request: web.Request) -> web.StreamResponse:
        # The daemon's own policy, so a page change it would block fails here.
        policy = content_security_policy(PAGE.read_text(encoding="utf-8"))
        return web.FileResponse(PAGE, headers={"Content-Security-Policy": policy, "Content-Type": "text/html; charset=utf-8"})

    async def launch(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.launches.append(body)
        if "evil" in body["repo"]:
            return web.json_response({"error": "repository host evil.example is not allowed",
                                      "hint": "ask the administrator to add it to allowed_hosts"}, status=403)
        build = "b-" + body["repo"].rstrip("/").rsplit("/", 1)[-1]
        return web.json_response({"id": "l-1", "build": build, "state": "waiting", "url": None}, status=202)

    async def events(self, request: web.Request) -> web.StreamResponse:
        build = request.match_info["build"]
        last = request.headers.get("Last-Event-ID")
        self.resumed_from.append(last)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        if build == "b-slow":
            self.cancelled = asyncio.Event()
            await response.write(sse("log", BUILD_EVENTS[0], 1))
            await self.cancelled.wait()
            await response.write(sse("end", self.build_record(build, "cancelled", error="cancelled by request", hint="")))
            return response
        first = int(last or 0) + 1
        for seq in range(first, len(BUILD_EVENTS) + 1):
            chunk = sse("log", BUILD_EVENTS[seq - 1], seq)
            # One event split across two network writes: the page's parser must buffer a partial line.
            await response.write(chunk[:20])
            await asyncio.sleep(0.05)
            await response.write(chunk[20:] + b": keepalive\n\n")
            if seq == 2 and last is None and build == "b-analysis":
                return response  # the stream ends without `end`, as when a proxy drops it: the page must resume
        state = {"b-broken": "failed"}.get(build, "built")
        extra = {"error": "pip install failed (exit 1)", "hint": "check requirements.txt"} if state == "failed" else {}
        await response.write(sse("end", self.build_record(build, state, **extra)))
        return response

    async def cancel(self, request: web.Request) -> web.StreamResponse:
        assert self.cancelled is not None
        self.cancelled.set()
        return web.json_response(self.build_record(request.match_info["build"], "cancelled"), status=202)

    async def launch_state(self, request: web.Request) -> web.StreamResponse:
        self.polls += 1
        if self.polls == 1:
            return web.json_response({"id": "l-1", "build": "b-analysis", "state": "starting", "url": None})
        self.url = f"http://{request.host}/lab?token=notebook-token"
        return web.json_response({"id": "l-1", "build": "b-analysis", "state": "running", "url": self.url})

    async def stop(self, request: web.Request) -> web.StreamResponse:
        self.deleted.append(request.match_info["launch"])
        return web.json_response({"id": "l-1", "state": "stopped", "url": None, "stopped_reason": "stopped by request"},
                                 status=202)

    async def builds(self, request: web.Request) -> web.StreamResponse:
        return web.json_response([self.build_record("b-analysis", "built")])

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.auth])
        app.add_routes([
            web.get("/", self.page),
            web.post("/api/v1/launches", self.launch),
            web.get("/api/v1/launches/{launch}", self.launch_state),
            web.delete("/api/v1/launches/{launch}", self.stop),
            web.get("/api/v1/builds", self.builds),
            web.get("/api/v1/builds/{build}/events", self.events),
            web.delete("/api/v1/builds/{build}", self.cancel),
        ])
        return app


@pytest.fixture
def fake() -> Iterator[tuple[FakeApi, str]]:
    """The fake API on 127.0.0.1 (a free port), served by its own event loop in its own thread: Playwright's sync API
    keeps a loop running in the test's thread, where no second loop may run."""
    api = FakeApi()
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(api.app(), shutdown_timeout=1)  # a failed test may leave a stream open: do not wait 60 s
    ready = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", 0).start())
        ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(timeout=10)
    try:
        yield api, f"http://127.0.0.1:{runner.addresses[0][1]}/"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        assert not thread.is_alive()


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh context (its own localStorage) at a phone's width; fails the test on any script error or CSP violation."""
    context = browser.new_context(viewport={"width": 375, "height": 740})
    context.set_default_timeout(10_000)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"script error: {error}"))
    page.on("console", lambda message: problems.append(message.text) if "Content Security Policy" in message.text else None)
    yield page
    context.close()
    assert problems == []


def launch(page: Page, base: str, repo: str, token: str = TOKEN) -> None:
    page.goto(base)
    page.fill("#token", token)
    page.fill("#repo", repo)
    page.fill("#ref", "main")
    page.click("#launch")


def test_a_launch_shows_the_build_log_then_a_link_to_jupyterlab_and_can_be_stopped(fake: tuple[FakeApi, str], page: Page) -> None:
    api, base = fake
    launch(page, base, "https://example.org/analysis")
    expect(page.locator("#launch")).to_have_text("Build and launch")
    expect(page.locator("#status")).to_contain_text("starting the notebook server")
    link = page.locator("#notebook-link")
    expect(link).to_be_visible()
    assert (link.text_content(), link.get_attribute("href")) == ("Open JupyterLab", api.url)
    assert (link.get_attribute("target"), link.get_attribute("rel")) == ("_blank", "noopener")
    assert page.text_content("#log") == EXPECTED_LOG
    assert page.locator("#injected").count() == 0
    assert api.launches == [{"repo": "https://example.org/analysis", "ref": "main"}]
    assert api.resumed_from == [None, "2"]  # reconnected after the last seq it had seen
    # The table of recent builds, refreshed after the build, and nothing wider than the phone's screen.
    expect(page.locator("#builds tbody tr td").nth(2)).to_have_text("0123456789ab")
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    assert page.evaluate("localStorage.getItem('r2env-serve-token')") == TOKEN
    assert page.evaluate("location.search") == "?repo=https%3A%2F%2Fexample.org%2Fanalysis&ref=main"

    page.click("#stop")
    expect(page.locator("#status")).to_have_text("the notebook server stopped")
    expect(link).to_be_hidden()
    expect(page.locator("#stop")).to_be_hidden()
    assert api.deleted == ["l-1"]


def test_a_refused_token_is_said_next_to_the_field_which_gets_the_focus(fake: tuple[FakeApi, str], page: Page) -> None:
    api, base = fake
    launch(page, base, "https://example.org/analysis", token="wrong")
    expect(page.locator("#token-error")).to_be_visible()
    expect(page.locator("#token-error")).to_have_text("the server refused the token")
    expect(page.locator("#token")).to_be_focused()
    expect(page.locator("#status")).to_contain_text("missing or wrong token")
    assert api.launches == []
    page.fill("#token", TOKEN)  # typing a new token clears the message
    expect(page.locator("#token-error")).to_be_hidden()


def test_an_error_answer_and_a_failed_build_show_their_error_and_hint(fake: tuple[FakeApi, str], page: Page) -> None:
    api, base = fake
    launch(page, base, "https://evil.example/x")
    expect(page.locator("#status")).to_have_text("repository host evil.example is not allowedask the administrator to add it to allowed_hosts")
    page.fill("#repo", "https://example.org/broken")
    page.click("#launch")
    expect(page.locator("#status")).to_have_text("build failed: pip install failed (exit 1)check requirements.txt")
    assert page.text_content("#log") == EXPECTED_LOG
    expect(page.locator("#notebook-link")).to_be_hidden()
    assert api.polls == 0


def test_a_running_build_can_be_cancelled(fake: tuple[FakeApi, str], page: Page) -> None:
    _, base = fake
    launch(page, base, "https://example.org/slow")
    expect(page.locator("#log")).to_contain_text("[fetch 1/3]")
    page.click("#cancel")
    expect(page.locator("#status")).to_contain_text("build cancelled: cancelled by request")
    expect(page.locator("#cancel")).to_be_hidden()


def test_a_deep_link_fills_the_form_without_submitting_it(fake: tuple[FakeApi, str], page: Page) -> None:
    api, base = fake
    page.goto(base)
    page.evaluate(f"localStorage.setItem('r2env-serve-token', {json.dumps(TOKEN)})")
    page.goto(base + "?repo=https%3A%2F%2Fexample.org%2Fanalysis&ref=v1.2")
    expect(page.locator("#repo")).to_have_value("https://example.org/analysis")
    expect(page.locator("#ref")).to_have_value("v1.2")
    expect(page.locator("#token")).to_have_value(TOKEN)
    expect(page.locator("#builds tbody tr")).to_have_count(1)  # the remembered token lists the recent builds
    page.wait_for_load_state("networkidle")
    assert api.launches == []
