"""No message lost between the server and the browser: examples/chat in
headless Chromium, with the browser client reconnecting and resuming its
room through server restarts, a page gone offline, and a history too short
for what was missed. Run with ``tox -e browser``."""

from __future__ import annotations

import contextlib
import signal
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import flask_sockets_channels as sockets
from examples.chat.app import create_app
from tests.conftest import ROOT, Server, gunicorn_server, redis_server, serve_app, wait_time
from tests.test_browser import TIMEOUT_MS, chromium, open_chat

with contextlib.suppress(ImportError):  # chromium() says what is missing
    from playwright.sync_api import Page, expect

T = wait_time(10)
CONFIG = str(ROOT / "examples" / "gunicorn.conf.py")


def new_room() -> str:
    return "room-" + uuid.uuid4().hex[:8]


def chat_messages(page: Page) -> Any:
    """The chat's messages (not its join and leave notices)."""
    return page.locator("#log li.message")


def texts(count: int) -> list[str]:
    return [f"pubn-{number:04d}" for number in range(count)]


class Publisher:
    """Publishes numbered chat messages to a room from this process, paced
    like a busy room; :meth:`wait_for` blocks until a number went out."""

    def __init__(self, hub: sockets.Hub, room: str, count: int, pause: float) -> None:
        self._hub, self._room, self._count, self._pause = hub, room, count, pause
        self._published = 0
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="test publisher")

    def __enter__(self) -> Publisher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(T)

    def wait_for(self, published: int) -> None:
        with self._changed:
            assert self._changed.wait_for(lambda: self._published >= published, T * 3)

    def _run(self) -> None:
        for number in range(self._count):
            if self._stop.wait(self._pause):  # pacing a busy room
                return
            self._hub.publish(self._room, {"user": "pub", "text": f"n-{number:04d}"})
            with self._changed:
                self._published += 1
                self._changed.notify_all()


@contextlib.contextmanager
def chat_on_gunicorn(log: Path, redis_url: str, port: int = 0) -> Iterator[Server]:
    """The chat on gunicorn with the example's configuration (its hook
    closes the sockets with 1001 on SIGTERM), rooms through Redis."""
    with gunicorn_server(
        log,
        threads=20,
        extra=("-c", CONFIG),
        env={"SOCKETS_HUB_URL": redis_url},
        app_spec="examples.chat.app:create_app({'SOCKETS_HUB_HISTORY': 2000})",
        ready_path="/room/lobby",
        port=port,
    ) as server:
        yield server


def test_a_page_shows_1000_messages_in_order_once_through_two_restarts(tmp_path: Path) -> None:
    """1,000 messages published from a plain process while the gunicorn
    worker serving the page is replaced (SIGHUP), then gunicorn itself
    (SIGTERM, and a new master on the same port)."""
    room, count = new_room(), 1000
    with contextlib.ExitStack() as stack:
        redis = stack.enter_context(redis_server())
        browser = stack.enter_context(chromium())
        first = contextlib.ExitStack()
        stack.callback(first.close)
        server = first.enter_context(chat_on_gunicorn(tmp_path / "first.log", redis.url))
        page = open_chat(browser, f"{server.http}/room/{room}", "watcher")
        hub = stack.enter_context(contextlib.closing(sockets.Hub.from_url(redis.url)))
        with Publisher(hub, room, count, pause=0.004) as publisher:
            publisher.wait_for(200)
            server.process.send_signal(signal.SIGHUP)  # type: ignore[attr-defined]
            publisher.wait_for(500)
            first.close()  # SIGTERM: the page is told 1001, then refused
            stack.enter_context(
                chat_on_gunicorn(tmp_path / "second.log", redis.url, port=server.port)
            )
            publisher.wait_for(count)
        hub.publish(room, {"user": "pub", "text": "end"})
        # Delivered in order: once "end" is shown, all that came before is.
        expect(chat_messages(page).last).to_have_text("pubend", timeout=TIMEOUT_MS * 3)
        shown = chat_messages(page).all_inner_texts()
        missing = sorted(set(texts(count)) - set(shown))
        twice = sorted({text for text in shown if shown.count(text) > 1})
        assert shown == [*texts(count), "pubend"], (missing[:20], twice[:20])
        assert page.locator("#status").get_attribute("data-state") == "open"
        page.context.close()


def chat_on_werkzeug(tmp_path: Path, history: int) -> Any:
    """The chat in this process, in-process rooms, keepalive in seconds (the
    page takes 1.5 s of silence as a dead connection)."""
    config = {
        "SOCKETS_HUB_URL": None,
        "SOCKETS_HUB_HISTORY": history,
        "SOCKETS_PING_PERIOD": 0.5,
        "SOCKETS_PONG_WAIT": 1.5,
    }
    app = create_app(config)
    return app, serve_app(app, tmp_path / "werkzeug.log")


def test_a_page_offline_for_5_s_gets_all_200_messages_once(tmp_path: Path) -> None:
    room = new_room()
    app, running = chat_on_werkzeug(tmp_path, history=500)
    hub = app.extensions["sockets_channels"].hub
    with running as server, chromium() as browser:
        page = open_chat(browser, f"{server.http}/room/{room}", "watcher")
        page.context.set_offline(True)
        for number in range(200):
            hub.publish(room, {"user": "pub", "text": f"n-{number:04d}"})
        # Silent past its idle timeout, the page gives the connection up.
        expect(page.locator("#status")).to_have_text("reconnecting…", timeout=TIMEOUT_MS)
        page.wait_for_timeout(5000)  # the page stays offline 5 s
        page.context.set_offline(False)  # the browser's "online" reconnects at once
        expect(chat_messages(page)).to_have_count(200, timeout=TIMEOUT_MS)
        hub.publish(room, {"user": "pub", "text": "end"})
        expect(chat_messages(page).last).to_have_text("pubend", timeout=TIMEOUT_MS)
        assert chat_messages(page).all_inner_texts() == [*texts(200), "pubend"]
        page.context.close()


def test_a_page_that_missed_more_than_the_history_is_told_and_starts_over(
    tmp_path: Path,
) -> None:
    room = new_room()
    app, running = chat_on_werkzeug(tmp_path, history=50)
    hub = app.extensions["sockets_channels"].hub
    with running as server, chromium() as browser:
        page = open_chat(browser, f"{server.http}/room/{room}", "watcher")
        hub.publish(room, {"user": "pub", "text": "seen"})
        expect(chat_messages(page)).to_have_text(["pubseen"], timeout=TIMEOUT_MS)
        page.context.set_offline(True)
        for number in range(100):
            hub.publish(room, {"user": "pub", "text": f"n-{number:04d}"})
        expect(page.locator("#status")).to_have_text("reconnecting…", timeout=TIMEOUT_MS)
        page.context.set_offline(False)
        notice = page.locator("#log li.notice", has_text="some messages were missed while away")
        expect(notice).to_have_count(1, timeout=TIMEOUT_MS)
        # It starts over from what the room keeps: its last 50 messages (the
        # room's join and leave notices among them).
        expect(chat_messages(page).last).to_have_text("pubn-0099", timeout=TIMEOUT_MS)
        shown = chat_messages(page).all_inner_texts()
        assert 40 <= len(shown) <= 50
        assert shown == texts(100)[-len(shown) :]
        page.context.close()
