"""examples/chat in a real browser: headless Chromium, driven by Playwright.

Uses the system's Chromium (Debian's ``chromium``; never a browser that
Playwright downloads). Run with ``tox -e browser``. Leaves screenshots in
``test-artifacts/``: ``chat.png`` (one process) and ``chat-redis.png`` (two
gunicorn processes sharing the room through Redis).
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from examples.chat.app import create_app
from tests.conftest import ROOT, gunicorn_server, redis_server, require, serve_app, wait_time

try:
    from playwright.sync_api import Browser, Page, expect, sync_playwright
except ImportError:  # checked by require() in the test
    sync_playwright = None  # type: ignore[assignment]

ARTIFACTS = ROOT / "test-artifacts"
TIMEOUT_MS = wait_time(10) * 1000
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
XSS = '<img src=x onerror="window.injected = true">'


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@contextlib.contextmanager
def chromium() -> Iterator[Browser]:
    """Headless Chromium, closed (and Playwright's driver stopped) on exit."""
    executable = chromium_path()
    require(executable is not None, "Chromium is not installed (apt-get install chromium)")
    require(sync_playwright is not None, "Playwright is not installed (pip install playwright)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, args=CHROMIUM_ARGS, timeout=TIMEOUT_MS
        )
        try:
            yield browser
        finally:
            browser.close()


def open_chat(browser: Browser, url: str, nickname: str) -> Page:
    """A page of its own (a new browser context), joined as ``nickname``."""
    context = browser.new_context(viewport={"width": 720, "height": 520})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.goto(url)
    page.fill("#nickname", nickname)
    page.click("#join button")
    expect(page.locator("#status")).to_have_text(f"connected as {nickname}", timeout=TIMEOUT_MS)
    return page


def log_lines(page: Page) -> Any:
    return page.locator("#log li")


def here(page: Page) -> Any:
    return page.locator("#here li")


def send(page: Page, text: str) -> None:
    page.fill("#text", text)
    page.click("#send button")


def test_two_browsers_chat_and_see_join_and_leave_notices(tmp_path: Path) -> None:
    app = create_app({"SOCKETS_HUB_URL": None})
    with serve_app(app, tmp_path / "werkzeug.log") as server, chromium() as browser:
        alice = open_chat(browser, server.http + "/", "alice")
        assert alice.url == server.http + "/room/lobby"
        bob = open_chat(browser, server.http + "/room/lobby", "bob")
        expect(log_lines(alice).last).to_have_text("bob joined", timeout=TIMEOUT_MS)
        expect(here(alice)).to_have_text(["alice", "bob"], timeout=TIMEOUT_MS)

        send(alice, "hello bob")
        send(alice, XSS)
        # bob's log starts with the room's history: alice's join notice.
        expect(log_lines(bob)).to_have_text(
            ["alice joined", "bob joined", "alicehello bob", "alice" + XSS], timeout=TIMEOUT_MS
        )
        send(bob, "hi alice, <b>this</b> stays plain text")
        expect(log_lines(alice).last).to_have_text(
            "bobhi alice, <b>this</b> stays plain text", timeout=TIMEOUT_MS
        )
        for page in (alice, bob):
            assert page.locator("#log img, #log b").count() == 0
            assert page.evaluate("window.injected") is None

        bob.context.close()
        expect(log_lines(alice).last).to_have_text("bob left", timeout=TIMEOUT_MS)
        expect(here(alice)).to_have_text(["alice"], timeout=TIMEOUT_MS)
        ARTIFACTS.mkdir(exist_ok=True)
        alice.screenshot(path=str(ARTIFACTS / "chat.png"))
        alice.context.close()


def test_a_page_on_another_process_sees_earlier_messages_and_who_is_here(
    tmp_path: Path,
) -> None:
    with contextlib.ExitStack() as stack:
        redis = stack.enter_context(redis_server())
        servers = [
            stack.enter_context(
                gunicorn_server(
                    tmp_path / f"{name}.log",
                    threads=20,
                    env={"SOCKETS_HUB_URL": redis.url},
                    app_spec="examples.chat.app:app",
                    ready_path="/room/lobby",
                )
            )
            for name in ("first", "second")
        ]
        browser = stack.enter_context(chromium())
        alice = open_chat(browser, servers[0].http + "/room/lobby", "alice")
        send(alice, "said before bob came")
        send(alice, "and once more")
        expect(log_lines(alice).last).to_have_text("aliceand once more", timeout=TIMEOUT_MS)

        bob = open_chat(browser, servers[1].http + "/room/lobby", "bob")
        expect(log_lines(bob)).to_have_text(
            ["alice joined", "alicesaid before bob came", "aliceand once more", "bob joined"],
            timeout=TIMEOUT_MS,
        )
        expect(here(bob)).to_have_text(["alice", "bob"], timeout=TIMEOUT_MS)
        expect(here(alice)).to_have_text(["alice", "bob"], timeout=TIMEOUT_MS)
        send(bob, "hi alice, from the other process")
        expect(log_lines(alice).last).to_have_text(
            "bobhi alice, from the other process", timeout=TIMEOUT_MS
        )
        ARTIFACTS.mkdir(exist_ok=True)
        bob.screenshot(path=str(ARTIFACTS / "chat-redis.png"))
        for page in (bob, alice):
            page.context.close()
