"""A real browser (Debian's headless Chromium, driven by Playwright) opens the URL `r2env launch` prints
and sees JupyterLab's launcher with the repository's files. The screenshot is kept as a test artifact."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterator

import docker
import pytest
from playwright.sync_api import BrowserContext, Playwright, sync_playwright

from support import EXAMPLES, ROOT, build_ok, r2env

ARTIFACTS = Path(os.environ.get("R2ENV_ARTIFACTS", ROOT / "test-artifacts"))
# As root and on a closed network: no sandbox, and no background calls home that the network refuses.
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


def fresh_chromium(playwright: Playwright, chromium: str, profile: Path, height: int = 720) -> BrowserContext:
    """Chromium (the `chromium` fixture's) with a fresh profile (Playwright's persistent context is how it takes
    --user-data-dir)."""
    return playwright.chromium.launch_persistent_context(
        str(profile), executable_path=chromium, args=CHROMIUM_FLAGS, viewport={"width": 1280, "height": height},
    )


@pytest.fixture(scope="module")
def lab_url(engine: docker.DockerClient) -> Iterator[str]:
    build_ok(str(EXAMPLES / "requirements"), "--image-name", "r2env-it/launch")
    result = r2env("launch", "r2env-it/launch", "--detach")
    assert result.returncode == 0, result.stdout + result.stderr
    url = re.search(r"JupyterLab is ready: (\S+)", result.stdout)
    container = re.search(r"`r2env stop (\w+)`", result.stdout)
    assert url and container
    yield url.group(1)
    r2env("stop", container.group(1))


def test_the_printed_url_opens_jupyterlab_in_a_browser(chromium: str, lab_url: str, tmp_path: Path) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        context = fresh_chromium(playwright, chromium, tmp_path / "profile")
        try:
            page = context.new_page()
            page.goto(lab_url)
            page.wait_for_selector(".jp-Launcher", timeout=60_000)
            # The file browser lists the repository's own notebook: the server runs in the repository.
            page.wait_for_selector(".jp-DirListing-item[title*='analysis.ipynb']", timeout=30_000)
            assert page.title() == "JupyterLab"
            page.screenshot(path=str(ARTIFACTS / "launch-jupyterlab.png"))
        finally:
            context.close()
    assert (ARTIFACTS / "launch-jupyterlab.png").stat().st_size > 10_000
