"""The hub when things go wrong around it, each against a real
redis-server started by the test: a Redis that does not answer, and
members whose ``offer`` raises.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis as redis_py
from flask import Flask

import flask_sockets_channels as sockets
from flask_sockets_channels import redis_transport
from flask_sockets_channels.redis_transport import PREFIX
from tests.conftest import (
    Inbox,
    RedisServer,
    free_port,
    redis_server,
    wait_time,
)
from tests.test_hub_redis import (
    hub_at,
    new_room,
    receive,
    sender_channel,
    wait_for,
)

T = wait_time(5)


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with redis_server() as running:
        yield running


@contextlib.contextmanager
def admin_of(url: str) -> Iterator[redis_py.Redis]:
    """A plain client, to look at what the hub keeps."""
    client = redis_py.Redis.from_url(url)
    try:
        yield client
    finally:
        client.close()


@contextlib.contextmanager
def stopped(server: RedisServer) -> Iterator[None]:
    """``server`` stopped with SIGSTOP: connections open, nothing answers."""
    assert server.process is not None
    server.process.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        server.process.send_signal(signal.SIGCONT)


# -- wait_ready() of a hub that only publishes ----------------------------------


def test_wait_ready_of_a_hub_that_only_publishes_is_true_at_once_when_redis_answers(
    redis: RedisServer,
) -> None:
    with hub_at(redis.url) as hub:
        started = time.monotonic()
        assert hub.wait_ready(T) is True
        assert hub.wait_ready() is True
        assert time.monotonic() - started < wait_time(0.5)


def wait_ready_timings(hub: sockets.Hub) -> tuple[float, float]:
    """How long ``wait_ready(1)`` and ``wait_ready()`` took; both False."""
    started = time.monotonic()
    assert hub.wait_ready(1.0) is False
    with_timeout = time.monotonic() - started
    started = time.monotonic()
    assert hub.wait_ready() is False
    return with_timeout, time.monotonic() - started


def test_wait_ready_of_a_hub_that_only_publishes_is_false_in_time_when_nothing_listens() -> None:
    with hub_at(f"redis://127.0.0.1:{free_port()}/0") as hub:
        with_timeout, without = wait_ready_timings(hub)
    assert 0.9 <= with_timeout < 1.0 + wait_time(0.5)
    assert without < wait_time(0.5)  # refused at once: one attempt


def test_wait_ready_of_a_hub_that_only_publishes_is_false_in_time_when_redis_does_not_answer(
    redis: RedisServer,
) -> None:
    with hub_at(redis.url) as hub, stopped(redis):
        with_timeout, without = wait_ready_timings(hub)
    assert 0.9 <= with_timeout < 1.0 + wait_time(0.5)
    bound = redis_transport.CONNECT_TIMEOUT + redis_transport.COMMAND_TIMEOUT
    assert without < bound + wait_time(0.5)


# -- stats never wait for Redis --------------------------------------------------


def test_rooms_members_and_stats_do_not_wait_for_a_redis_that_does_not_answer(
    redis: RedisServer,
) -> None:
    names = [new_room() for _ in range(3)]
    app = Flask(__name__)
    app.config["SOCKETS_HUB_URL"] = redis.url
    extension = sockets.Sockets(app)
    hub = extension.hub
    inboxes = [sender_channel() for _ in names]
    try:
        for name, inbox in zip(names, inboxes):
            hub.join(name, inbox, presence=name)
        assert hub.wait_ready(T)
        for inbox in inboxes:
            inbox.close()  # their connections ended; they never left
        with stopped(redis):
            started = time.monotonic()
            assert extension.stats()["hub"]["rooms"] == 0
            assert hub.members(names[0]) == []
            assert hub.rooms() == []
            took = time.monotonic() - started
        assert took < wait_time(0.2)
        with admin_of(redis.url) as admin:
            # The reader writes what the sweep found, soon (its heartbeat).
            wait_for(
                lambda: not any(admin.exists(f"{PREFIX}presence:{n}") for n in names),
                wait_time(redis_transport.HEARTBEAT_PERIOD + 2),
                "presence removed by the reader",
            )
    finally:
        hub.close()


# -- members whose offer raises ----------------------------------------------------


class Raising(Inbox):
    def offer(self, frame: Any, max_backlog: int) -> bool:
        raise RuntimeError("a broken member")


@pytest.mark.parametrize("kind", ["in-process", "redis"])
def test_a_member_whose_offer_raises_is_logged_once_and_removed_and_the_others_go_on(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, "flask_sockets_channels")
    name = new_room()
    first, broken, last = sender_channel(), Raising(10), sender_channel()
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(redis_server()).url if kind == "redis" else None
        hub = stack.enter_context(hub_at(url))
        for member in (first, broken, last):
            stack.enter_context(hub.join(name, member))
        assert hub.wait_ready(T)
        for number in range(5):
            hub.publish(name, f"m{number}")
        expected = [f"m{number}" for number in range(5)]
        assert [receive(first) for _ in expected] == expected
        assert [receive(last) for _ in expected] == expected
        assert [m.sender for m in hub.members(name)] == [first, last]
        assert hub.reconnects == 0
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    assert errors[0].exc_info is not None and "a broken member" in str(errors[0].exc_info[1])
