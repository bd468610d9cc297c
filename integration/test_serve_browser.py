"""The daemon's web page in Debian's headless Chromium against a real `r2env serve` and a real engine: enter the
token, submit a repository, watch build log lines arrive, follow the notebook link into JupyterLab."""

from __future__ import annotations

import functools
import http.server
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

import docker
from playwright.sync_api import expect, sync_playwright

from serve_support import EXAMPLES, Daemon, GitServer
from test_browser import ARTIFACTS, fresh_chromium
from test_serve_api import shut_down


def test_the_page_builds_a_repository_and_links_to_its_notebook(tmp_path: Path, chromium: str, engine: docker.DockerClient) -> None:
    git_server = GitServer(tmp_path / "git").start()
    daemon = Daemon(tmp_path / "state").start()
    try:
        (tmp_path / "work").mkdir()
        # A new commit: the page must show a build really running, not a cached result.
        git_server.publish("browser", EXAMPLES / "requirements", tmp_path / "work", {"browser.txt": uuid.uuid4().hex})
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        with sync_playwright() as playwright:
            context = fresh_chromium(playwright, chromium, tmp_path / "profile", height=900)
            try:
                page = context.new_page()
                problems: list[str] = []
                page.on("pageerror", lambda error: problems.append(str(error)))
                page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
                page.goto(daemon.url + "/")
                page.fill("#token", daemon.token)
                page.fill("#repo", git_server.url("browser"))
                page.click("#launch")
                # Log lines arrive while the build runs, then the link to the running notebook.
                expect(page.locator("#log")).to_contain_text("[inspect] repository git://127.0.0.1", timeout=120_000)
                expect(page.locator("#log")).to_contain_text("--compile-bytecode -r requirements.txt", timeout=300_000)
                link = page.locator("#notebook-link")
                expect(link).to_be_visible(timeout=300_000)
                href = link.get_attribute("href") or ""
                assert href.startswith("http://127.0.0.1:") and "?token=" in href
                page.screenshot(path=str(ARTIFACTS / "serve-page.png"), full_page=True)
                with context.expect_page() as opened:
                    link.click()
                lab = opened.value
                lab.wait_for_selector(".jp-Launcher", timeout=60_000)
                lab.wait_for_selector(".jp-DirListing-item[title*='analysis.ipynb']", timeout=30_000)
                lab.screenshot(path=str(ARTIFACTS / "serve-jupyterlab.png"))
                assert problems == []
            finally:
                context.close()
    finally:
        shut_down(daemon)
        git_server.stop()


def test_a_page_on_a_listed_origin_may_call_the_api_and_others_may_not(tmp_path: Path, chromium: str,
                                                                        engine: docker.DockerClient) -> None:
    """CORS in a real browser: a front-end served from another origin reads the daemon's answers only when that
    origin is listed (c.Serve.allowed_origins)."""
    listed, unlisted = _static_site(tmp_path / "listed"), _static_site(tmp_path / "unlisted")
    daemon = Daemon(tmp_path / "state", options=("--allowed-origins", listed.origin)).start()
    try:
        with sync_playwright() as playwright:
            context = fresh_chromium(playwright, chromium, tmp_path / "profile")
            try:
                page = context.new_page()
                outcomes = []
                for site in (listed, unlisted):
                    page.goto(site.origin + "/")
                    outcomes.append(page.evaluate(CALL_THE_API, {"url": daemon.url + "/api/v1/builds", "token": daemon.token}))
            finally:
                context.close()
    finally:
        shut_down(daemon)
        for site in (listed, unlisted):
            site.server.shutdown()
            site.server.server_close()
    assert outcomes == ["200 []", "refused: TypeError"]


# fetch() with the token header: a cross-origin request the browser preflights, then lets the page read (or not).
CALL_THE_API = """async ({url, token}) => {
  try {
    const response = await fetch(url, {headers: {Authorization: `Bearer ${token}`}});
    return `${response.status} ${await response.text()}`;
  } catch (error) {
    return `refused: ${error.name}`;
  }
}"""


@dataclass
class StaticSite:
    origin: str
    server: http.server.ThreadingHTTPServer


def _static_site(root: Path) -> StaticSite:
    root.mkdir()
    (root / "index.html").write_text("<!doctype html><title>another front-end</title>")
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return StaticSite(f"http://127.0.0.1:{server.server_address[1]}", server)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass
