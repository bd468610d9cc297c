"""The web page `r2env serve` shows at `/` (r2env/serve/page.html): its structure, read statically. Its behaviour in a
real browser is integration/test_serve_page_browser.py (Chromium against a fake of the daemon's API), so this suite needs
no browser."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parent.parent / "r2env" / "serve" / "page.html"
REQUIRED_IDS = ["token", "token-error", "launch-form", "repo", "ref", "launch", "status", "log", "notebook-link", "stop",
                "cancel", "builds"]


class PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {name: value or "" for name, value in attrs}))
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts.append(data)


@pytest.fixture(scope="module")
def parsed() -> PageParser:
    parser = PageParser()
    parser.feed(PAGE.read_text(encoding="utf-8"))
    parser.close()
    return parser


def test_every_element_the_page_is_driven_by_exists_once(parsed: PageParser) -> None:
    ids = [attrs["id"] for _, attrs in parsed.elements if "id" in attrs]
    assert {element_id: ids.count(element_id) for element_id in REQUIRED_IDS} == dict.fromkeys(REQUIRED_IDS, 1)
    assert len(ids) == len(set(ids))
    tags = {attrs["id"]: tag for tag, attrs in parsed.elements if "id" in attrs}
    assert [tags[name] for name in ("launch-form", "token", "repo", "ref", "launch", "log", "notebook-link", "builds")] == [
        "form", "input", "input", "input", "button", "pre", "a", "table"]
    element = {attrs["id"]: attrs for _, attrs in parsed.elements if "id" in attrs}
    assert element["token"]["type"] == "password"
    assert "required" in element["repo"] and "required" not in element["ref"]
    assert element["ref"]["placeholder"] == "default branch"
    assert element["launch"]["type"] == "submit"
    assert (element["status"]["role"], element["status"]["aria-live"]) == ("status", "polite")
    assert (element["notebook-link"]["target"], element["notebook-link"]["rel"]) == ("_blank", "noopener")


def test_the_page_is_self_contained_and_fits_a_strict_content_security_policy(parsed: PageParser) -> None:
    handlers = [(tag, name) for tag, attrs in parsed.elements for name in attrs if name.startswith("on")]
    assert handlers == []
    assert [tag for tag, attrs in parsed.elements if "style" in attrs] == []
    external = [(tag, name, value) for tag, attrs in parsed.elements for name, value in attrs.items()
                if name in ("src", "href", "action", "srcset", "poster", "data") and re.match(r"(?i)\s*(https?:)?//", value)]
    assert external == []
    scripts = [attrs for tag, attrs in parsed.elements if tag == "script"]
    assert scripts == [{}], "exactly one inline script, no src"
    assert [tag for tag, _ in parsed.elements].count("style") == 1
    assert [tag for tag, _ in parsed.elements if tag in ("iframe", "object", "embed", "base")] == []
    # The one link is the empty icon that saves the browser a /favicon.ico request the daemon would answer with 404.
    assert [attrs for tag, attrs in parsed.elements if tag == "link"] == [{"rel": "icon", "href": "data:,"}]


def test_the_script_never_parses_strings_as_markup_or_code(parsed: PageParser) -> None:
    script = "".join(parsed.scripts)
    assert "getElementById" in script
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function", "setTimeout(\"",
                 "new EventSource"):
        assert sink not in script
