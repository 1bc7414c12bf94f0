"""examples/chat: on werkzeug with the in-process hub, and in two gunicorn
processes sharing rooms, presence and history through a real redis-server.

The browser test of the same example is tests/test_browser.py.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import ClientConnection

from examples.chat.app import create_app
from tests.client import connect
from tests.conftest import Server, gunicorn_server, redis_server, serve_app, wait_time

T = wait_time(5)


def new_room() -> str:
    return "room-" + uuid.uuid4().hex[:8]


def member(stack: contextlib.ExitStack, server: Server, room: str, user: str) -> ClientConnection:
    """A client in ``room`` as ``user``, closed when ``stack`` closes."""
    return stack.enter_context(connect(f"{server.ws}/ws/{room}?user={user}", open_timeout=T))


def receive(ws: ClientConnection, timeout: float = T) -> Any:
    """The next message, out of its envelope (the hub delivers each with its
    position); the notice of a join, and the heartbeat, are skipped."""
    deadline = time.monotonic() + timeout
    while True:
        text = ws.recv(timeout=max(0.0, deadline - time.monotonic()))
        if text == "":
            continue  # the heartbeat
        message = json.loads(text)
        if isinstance(message, dict) and "position" in message:
            if "data" not in message:
                continue  # where the room stands, as the member joined
            return message["data"]
        return message


def say(ws: ClientConnection, user: str, text: str) -> None:
    ws.send(json.dumps({"user": user, "text": text}))


def receive_until(ws: ClientConnection, expected: Any, timeout: float = T) -> list[Any]:
    """Receive until ``expected`` arrives; return what came before it."""
    skipped = []
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"{expected!r} did not arrive; got {skipped!r}"
        try:
            message = receive(ws, remaining)
        except TimeoutError:
            raise AssertionError(f"{expected!r} did not arrive; got {skipped!r}") from None
        if message == expected:
            return skipped
        skipped.append(message)


@contextlib.contextmanager
def chat_on_werkzeug(tmp_path: Path) -> Iterator[Server]:
    with serve_app(create_app({"SOCKETS_HUB_URL": None}), tmp_path / "werkzeug.log") as server:
        yield server


# -- one process, in-process hub --------------------------------------------


def test_root_redirects_to_the_lobby(tmp_path: Path) -> None:
    with chat_on_werkzeug(tmp_path) as server:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=T)
        try:
            connection.request("GET", "/")
            response = connection.getresponse()
            assert response.status == 302
            assert response.getheader("Location") == "/room/lobby"
        finally:
            connection.close()


def test_room_page_names_the_room_escaped_and_its_socket(tmp_path: Path) -> None:
    with chat_on_werkzeug(tmp_path) as server:
        status, page = server.get("/room/%3Cb%3Ebold")
    assert status == 200
    assert "<h1>#&lt;b&gt;bold</h1>" in page
    assert f'data-socket-url="{server.ws}/ws/%3Cb%3Ebold"' in page
    assert "<b>" not in page


def test_members_get_join_notices_messages_and_leave_notices(tmp_path: Path) -> None:
    room = new_room()
    with chat_on_werkzeug(tmp_path) as server, contextlib.ExitStack() as stack:
        alice = member(stack, server, room, "alice")
        assert receive(alice) == {"kind": "join", "user": "alice", "here": ["alice"]}
        with connect(f"{server.ws}/ws/{room}?user=bob", open_timeout=T) as bob:
            # bob first gets the room's history: alice's join notice.
            assert receive(bob) == {"kind": "join", "user": "alice", "here": ["alice"]}
            bob_joined = {"kind": "join", "user": "bob", "here": ["alice", "bob"]}
            assert receive(bob) == bob_joined
            assert receive(alice) == bob_joined
            say(bob, "bob", "hello <alice> & all")
            expected = {"user": "bob", "text": "hello <alice> & all"}
            assert receive(bob) == expected
            assert receive(alice) == expected
        assert receive(alice) == {"kind": "leave", "user": "bob", "here": ["alice"]}


def test_a_newcomer_gets_the_last_50_messages_then_live_ones(tmp_path: Path) -> None:
    room = new_room()
    with chat_on_werkzeug(tmp_path) as server, contextlib.ExitStack() as stack:
        alice = member(stack, server, room, "alice")
        receive(alice)  # her join notice
        for number in range(60):
            say(alice, "alice", f"line {number}")
        receive_until(alice, {"user": "alice", "text": "line 59"})
        bob = member(stack, server, room, "bob")
        history = [receive(bob) for _ in range(50)]
        assert history == [{"user": "alice", "text": f"line {n}"} for n in range(10, 60)]
        assert receive(bob) == {"kind": "join", "user": "bob", "here": ["alice", "bob"]}


def test_rooms_are_separate(tmp_path: Path) -> None:
    with chat_on_werkzeug(tmp_path) as server, contextlib.ExitStack() as stack:
        here = member(stack, server, new_room(), "here")
        elsewhere = member(stack, server, new_room(), "elsewhere")
        assert receive(here) == {"kind": "join", "user": "here", "here": ["here"]}
        assert receive(elsewhere) == {"kind": "join", "user": "elsewhere", "here": ["elsewhere"]}
        say(here, "here", "only here")
        assert receive(here) == {"user": "here", "text": "only here"}
        with pytest.raises(TimeoutError):
            elsewhere.recv(timeout=0.3)


def test_a_message_that_is_not_a_chat_message_is_dropped(tmp_path: Path) -> None:
    room = new_room()
    with chat_on_werkzeug(tmp_path) as server, contextlib.ExitStack() as stack:
        alice = member(stack, server, room, "alice")
        assert receive(alice)["kind"] == "join"
        alice.send("not json")
        alice.send(json.dumps({"user": "alice", "text": 42}))
        say(alice, "alice", "still here")
        assert receive(alice) == {"user": "alice", "text": "still here"}


# -- two gunicorn processes, one redis-server --------------------------------


def chat_on_gunicorn(log_path: Path, hub_url: str) -> contextlib.AbstractContextManager[Server]:
    """examples/chat under gunicorn gthread with ``SOCKETS_HUB_URL=hub_url``."""
    return gunicorn_server(
        log_path,
        threads=20,
        env={"SOCKETS_HUB_URL": hub_url},
        app_spec="examples.chat.app:app",
        ready_path="/room/lobby",
    )


def test_a_newcomer_in_another_process_sees_who_is_here_and_what_was_said(
    tmp_path: Path,
) -> None:
    room = new_room()
    with contextlib.ExitStack() as stack:
        redis = stack.enter_context(redis_server())
        first = stack.enter_context(chat_on_gunicorn(tmp_path / "first.log", redis.url))
        second = stack.enter_context(chat_on_gunicorn(tmp_path / "second.log", redis.url))
        alice = member(stack, first, room, "alice")
        assert receive(alice) == {"kind": "join", "user": "alice", "here": ["alice"]}
        say(alice, "alice", "said before bob came")
        receive_until(alice, {"user": "alice", "text": "said before bob came"})
        with connect(f"{second.ws}/ws/{room}?user=bob", open_timeout=T) as bob:
            # History from Redis, then bob's own notice, with presence from
            # both processes.
            assert receive(bob) == {"kind": "join", "user": "alice", "here": ["alice"]}
            assert receive(bob) == {"user": "alice", "text": "said before bob came"}
            bob_joined = {"kind": "join", "user": "bob", "here": ["alice", "bob"]}
            assert receive(bob) == bob_joined
            assert receive(alice) == bob_joined

            say(bob, "bob", "hello from the second process")
            expected = {"user": "bob", "text": "hello from the second process"}
            assert receive(bob) == expected
            assert receive(alice) == expected
        # bob's leave notice comes from the second process, after his message
        # went through Redis: a second copy of it would come first.
        assert receive(alice) == {"kind": "leave", "user": "bob", "here": ["alice"]}


def test_the_page_shows_the_open_count_and_the_limits_hold(tmp_path: Path) -> None:
    from websockets.exceptions import InvalidStatus

    room = new_room()
    with chat_on_werkzeug(tmp_path) as server, contextlib.ExitStack() as stack:
        page = server.get(f"/room/{room}")[1]
        assert 'id="open"' in page and 'data-stats-url="/stats"' in page
        clients = [member(stack, server, room, f"user{i}") for i in range(10)]
        assert json.loads(server.get("/stats")[1])["open"] == 10
        # The eleventh socket from the same address: 429, as the app says.
        with pytest.raises(InvalidStatus) as refused:
            connect(f"{server.ws}/ws/{room}?user=extra", open_timeout=T)
        assert refused.value.response.status_code == 429
        assert json.loads(server.get("/stats")[1])["rejected"] == {"429": 1}
        assert len(clients) == 10
