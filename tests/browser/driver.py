"""A console tab in headless Chromium that fails the test on any error the page meets.

Every console error, uncaught exception, failed request and answer of 400 or more is recorded,
unless the test said it expects that answer (``expect``); ``check`` asserts there was none.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, ConsoleMessage, Page, Request, Response, expect

from tests.support import ROOT

CHROMIUM = Path("/usr/bin/chromium")  # Debian's: Playwright never downloads a browser here
CHROMIUM_ARGS = [
    "--no-sandbox",  # the tests run as root in a container
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
README_SHOT = ROOT / "docs" / "console.png"
README_CLIP = {"x": 0, "y": 0, "width": 1280, "height": 1300}  # the top of a desktop page
TIMEOUT_MS = 60_000  # two shared cores: the stack, the browser and training compete


@dataclass
class Console:
    """One signed-out console tab on the stack's API, and what went wrong in it."""

    page: Page
    base_url: str
    shots: Path
    problems: list[str] = field(default_factory=list)
    expected: list[tuple[int, re.Pattern[str]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.page.on("response", self._on_response)
        self.page.on("console", self._on_console)
        self.page.on("pageerror", lambda exc: self.problems.append(f"uncaught: {exc}"))
        self.page.on("requestfailed", self._on_request_failed)

    def expect(self, status: int, path: str) -> None:
        """Allow answers of ``status`` from URLs whose path matches the regex ``path``."""
        self.expected.append((status, re.compile(path)))

    def open(self, route: str = "") -> None:
        """Load the console at a hash route (``#/jobs``)."""
        self.page.goto(f"{self.base_url}/console/{route}")

    def sign_in(self, key: str) -> None:
        """Sign in with ``key`` through the login form and land on the jobs page."""
        self.open()
        self.heading("Sign in")
        self.page.get_by_label("API key").fill(key)
        self.page.get_by_role("button", name="Sign in").click()
        self.heading("Jobs")

    def go(self, name: str) -> None:
        """Follow a link of the top navigation."""
        self.page.get_by_role("navigation", name="Pages").get_by_role("link", name=name).click()
        self.heading(name)

    def heading(self, text: str) -> None:
        """Wait until the page's title heading says ``text``."""
        expect(self.page.locator("h1")).to_have_text(text)

    def shot(self, name: str, readme: bool = False) -> Path:
        """Save a screenshot of the whole page under the test's folder (and the README's)."""
        path = self.shots / f"{name}.png"
        self.page.screenshot(path=path, full_page=True)
        if readme and os.environ.get("AIGC_SCREENSHOTS") == "1":
            self.page.screenshot(path=README_SHOT, full_page=True, clip=README_CLIP)
        return path

    def check(self) -> None:
        """Fail the test on anything that went wrong in the page."""
        assert not self.problems, "the console met problems:\n" + "\n".join(self.problems)

    def _allowed(self, status: int, url: str) -> bool:
        return any(s == status and p.search(url) for s, p in self.expected)

    def _on_response(self, resp: Response) -> None:
        if resp.status >= 400 and not self._allowed(resp.status, resp.url):
            self.problems.append(f"HTTP {resp.status} from {resp.request.method} {resp.url}")

    def _on_console(self, msg: ConsoleMessage) -> None:
        if msg.type != "error":
            return
        # Chromium logs each answer >= 400 too; an answer the test expects is no error.
        status = re.search(r"status of (\d{3})", msg.text)
        if status and self._allowed(int(status[1]), msg.location.get("url", "")):
            return
        self.problems.append(f"console error: {msg.text} ({msg.location.get('url')})")

    def _on_request_failed(self, request: Request) -> None:
        failure = request.failure or ""
        # The console aborts its own fetches (streams, list refreshes) when it leaves a page.
        if failure == "net::ERR_ABORTED" and request.resource_type == "fetch":
            return
        self.problems.append(f"request failed: {request.method} {request.url}: {failure}")


def open_console(browser: Browser, base_url: str, shots: Path, **context: Any) -> Console:
    """Open a new tab (its own context: nothing shared with other tests) that records problems."""
    ctx = browser.new_context(accept_downloads=True, **context)
    ctx.set_default_timeout(TIMEOUT_MS)
    expect.set_options(timeout=TIMEOUT_MS)
    return Console(ctx.new_page(), base_url, shots)
