"""Headless Chromium for the cabinet's browser tests, with screenshots kept as test artifacts.

Playwright drives Debian's ``/usr/bin/chromium`` (``VOICEAI_TEST_CHROMIUM`` overrides it), so no
browser is downloaded. The web server under test is the real ``voiceai-web`` process on gevent
(``web_process`` fixture of tests/conftest.py). Screenshots go to ``VOICEAI_TEST_ARTIFACTS``
(default ``tests/artifacts/``), one folder per test.

The fixtures are registered in tests/conftest.py; a test simply asks for them::

    def test_page(web_process, cabinet): tab = cabinet(web_process()); tab.login(email, password)
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Iterator

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
CHROMIUM = os.environ.get("VOICEAI_TEST_CHROMIUM", "/usr/bin/chromium")


def artifacts_dir() -> Path:
    return Path(os.environ.get("VOICEAI_TEST_ARTIFACTS") or ROOT / "tests" / "artifacts")


@pytest.fixture()
def chromium() -> Iterator[Any]:
    """A headless Chromium for one test (contexts inside it keep sessions apart).

    Per test, not per session: Playwright's sync API keeps an event loop current while it runs, so a
    browser left open would break any other test that starts Playwright itself.
    """
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium chromium-driver (scripts/lib.sh does)")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"])
        yield browser
        browser.close()


class Cabinet:
    """A browser tab on the cabinet of one web server, with login and named screenshots."""

    def __init__(self, context: Any, base: str, shots: Path) -> None:
        self.context = context
        self.page = context.new_page()
        self.page.set_default_timeout(15_000)
        self.base = base
        self.shots = shots
        self.console_errors: list[str] = []
        self.failed_requests: list[str] = []  # "STATUS METHOD URL" of every response >= 400
        self.page.on("response", lambda r: self.failed_requests.append(f"{r.status} {r.request.method} {r.url}")
                     if r.status >= 400 else None)
        self.page.on("console", lambda m: self.console_errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.console_errors.append(str(e)))

    def goto(self, path: str) -> Any:
        return self.page.goto(self.base + path)

    def login(self, email: str, password: str, expect_path: str = "/cabinet/monitor") -> None:
        self.goto("/cabinet/login")
        self.page.fill("#email", email)
        self.page.fill("#password", password)
        self.page.click("#login-btn")
        self.page.wait_for_url(re.compile(re.escape(self.base + expect_path)))

    def shot(self, name: str) -> Path:
        self.shots.mkdir(parents=True, exist_ok=True)
        path = self.shots / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def cookie(self, name: str) -> dict | None:
        return next((c for c in self.context.cookies() if c["name"] == name), None)


@pytest.fixture()
def cabinet(chromium, request) -> Iterator[Any]:
    """Factory: ``cabinet(web)`` opens a fresh browser context on a started ``web_process``."""
    contexts: list[Any] = []
    shots = artifacts_dir() / re.sub(r"[^\w.-]+", "_", request.node.name)

    def open_tab(web: Any) -> Cabinet:
        ctx = chromium.new_context(locale="ru-RU", timezone_id="Europe/Moscow", viewport={"width": 1360, "height": 900})
        contexts.append(ctx)
        return Cabinet(ctx, web.base, shots)

    yield open_tab
    for ctx in contexts:
        ctx.close()
