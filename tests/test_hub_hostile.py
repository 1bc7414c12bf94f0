"""The hub when things go wrong around it: Redis restarted from an older
snapshot, a stream that outgrows its bounds, processes killed without
leaving, a Redis that does not answer, a reader that falls behind, and
members whose ``offer`` raises. Each against a real redis-server started by
the test.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as redis_py
from flask import Flask

import flask_sockets_channels as sockets
from flask_sockets_channels import redis_stream, redis_timing
from flask_sockets_channels.modes import to_frame
from flask_sockets_channels.redis_scripts import PREFIX, STREAM, STREAM_BYTES_KEY
from tests.conftest import (
    Inbox,
    RedisServer,
    die_with_parent,
    free_port,
    have,
    redis_server,
    require,
    wait_time,
)
from tests.test_hub_redis import (
    hub_app_server,
    hub_at,
    new_room,
    open_member,
    presence_query,
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


def receive_until(channel: Inbox, last: str) -> list[str]:
    found: list[str] = []
    while not found or found[-1] != last:
        found.append(receive(channel))
    return found


# -- Redis restarted from an older snapshot ----------------------------------


class SnapshotRedis(RedisServer):
    """A redis-server that loads its data from ``directory`` when it starts
    and writes it there on ``SAVE`` only; :meth:`kill` ends it at once,
    without saving: a restart from an older snapshot."""

    def __init__(self, port: int, directory: Path) -> None:
        super().__init__(port)
        self.directory = directory

    def start(self) -> None:
        require(have("redis-server"), "redis-server is missing (apt-get install redis-server)")
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--protected-mode", "no", "--loglevel", "warning",
             "--dir", str(self.directory), "--dbfilename", "dump.rdb"],
            stdout=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
        )  # fmt: skip
        with admin_of(self.url) as client:
            deadline = time.monotonic() + wait_time(10)
            while True:
                try:
                    client.ping()  # answers once the snapshot is loaded
                    return
                except redis_py.exceptions.ConnectionError:  # BusyLoadingError included
                    if time.monotonic() > deadline or self.process.poll() is not None:
                        raise AssertionError("redis-server did not start") from None
                    time.sleep(0.02)  # redis-server offers no readiness signal but PING

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(T)
        self.process = None


def test_redis_restarted_from_an_older_snapshot_delivers_nothing_twice(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "flask_sockets_channels.hub")
    name, inbox = new_room(), sender_channel()
    server = SnapshotRedis(free_port(), tmp_path)
    server.start()
    try:
        with (
            hub_at(server.url) as hub,
            hub.join(name, inbox),
            hub_at(server.url) as outside,
            admin_of(server.url) as admin,
        ):
            assert hub.wait_ready(T)
            for number in range(100):
                outside.publish(name, f"n-{number}")
            admin.save()
            for number in range(100, 150):
                outside.publish(name, f"n-{number}")
            before = [receive(inbox) for _ in range(150)]
            server.kill()
            server.start()
            assert admin.xlen(STREAM) == 100  # the snapshot's
            wait_for(lambda: hub.reconnects == 1 and hub.wait_ready(0), T, "the reader is back")
            for number in range(150, 200):
                outside.publish(name, f"n-{number}")
            outside.publish(name, "end")
            after = receive_until(inbox, "end")
    finally:
        server.stop()
    assert before + after == [f"n-{number}" for number in range(200)] + ["end"]
    went_back = [r for r in caplog.records if "went back from" in r.getMessage()]
    assert len(went_back) == 1 and went_back[0].levelno == logging.WARNING
    text = went_back[0].getMessage()
    assert "older snapshot" in text and "lagging replica" in text and "lost here" in text


# -- what a message, and the stream, may cost ----------------------------------


@pytest.mark.parametrize("kind", ["in-process", "redis"])
def test_a_message_over_max_message_size_raises_and_reaches_no_one(kind: str) -> None:
    name, inbox = new_room(), sender_channel()
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(redis_server()).url if kind == "redis" else None
        hub = stack.enter_context(hub_at(url, max_message_size=1000))
        stack.enter_context(hub.join(name, inbox))
        assert hub.wait_ready(T)
        hub.publish(name, "x" * 1000)
        for too_big in ("x" * 1001, b"\0" * 5000, {"text": "é" * 600}):
            with pytest.raises(ValueError) as raised:
                hub.publish(name, too_big)
            size = len(to_frame(too_big).data)
            assert f"{size} bytes" in str(raised.value) and "1000" in str(raised.value)
        hub.publish(name, "after")
        assert [receive(inbox), receive(inbox)] == ["x" * 1000, "after"]
        assert inbox.empty()
        assert hub.published == 2
        if url is not None:
            with admin_of(url) as admin:
                assert admin.xlen(STREAM) == 2


def test_max_message_size_must_be_a_positive_int() -> None:
    for value in (0, -1, 1.5, True, None):
        with pytest.raises(ValueError):
            sockets.Hub(max_message_size=value)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            sockets.Hub.from_url("redis://127.0.0.1:1/0", max_message_size=value)  # type: ignore[arg-type]


def stream_bytes(admin: redis_py.Redis) -> int:
    """The bytes of the stream's entries' fields and values, counted from
    the stream itself."""
    return sum(
        len(key) + len(value) for _, fields in admin.xrange(STREAM) for key, value in fields.items()
    )


def test_the_stream_is_bounded_in_bytes(
    redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    budget, size = 256 * 1024, 16 * 1024
    monkeypatch.setattr(redis_stream, "STREAM_BYTES", budget)
    name = new_room()
    with hub_at(redis.url) as hub, admin_of(redis.url) as admin:
        for number in range(200):  # 3.2 MB: over twelve times the budget
            hub.publish(name, f"{number:05}" + "x" * (size - 5))
        counted, length = int(admin.get(STREAM_BYTES_KEY) or 0), admin.xlen(STREAM)
        assert counted == stream_bytes(admin)  # the running total is exact
        entry = counted // length  # the message, its room, its publisher's id
        assert counted == entry * length and size < entry < size + 100
        assert counted <= budget < counted + entry  # as many as the budget holds
        newest = admin.xrevrange(STREAM, count=1)[0][1][b"f"]
        assert newest == b"t" + b"00199" + b"x" * (size - 5)
        # What Redis holds for it: the budget, plus what its allocator rounds up.
        assert admin.memory_usage(STREAM, samples=0) < budget * 1.3


def test_the_stream_is_bounded_in_count_and_the_count_goes_through_the_accounting(
    redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_stream, "STREAM_LENGTH", 50)
    with hub_at(redis.url) as hub, admin_of(redis.url) as admin:
        for number in range(500):
            hub.publish(new_room(), f"m{number}")
        assert admin.xlen(STREAM) == 50
        assert int(admin.get(STREAM_BYTES_KEY) or 0) == stream_bytes(admin)


def test_a_stream_written_before_its_bytes_were_counted_is_counted_from_then_on(
    redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An app upgraded in place: the old entries are not in the total, and
    are not taken out of it when trimmed."""
    monkeypatch.setattr(redis_stream, "STREAM_LENGTH", 20)
    name = new_room()
    with hub_at(redis.url) as hub, admin_of(redis.url) as admin:
        for _ in range(10):
            admin.xadd(STREAM, {"r": name, "f": b"t" + b"old" * 100, "o": "x", "x": ""})
        for number in range(40):
            hub.publish(name, f"new-{number:02}")
        assert admin.xlen(STREAM) == 20
        assert int(admin.get(STREAM_BYTES_KEY) or 0) == stream_bytes(admin)


# -- presence of a process killed without leaving -----------------------------


@pytest.mark.slow
def test_a_killed_process_presence_is_removed_from_redis_by_the_live_ones(
    redis: RedisServer, tmp_path: Path
) -> None:
    name = new_room()
    key = f"{PREFIX}presence:{name}"
    with (
        contextlib.ExitStack() as stack,
        hub_app_server(tmp_path, "survivor", redis.url) as survivor,
        hub_app_server(tmp_path, "victim", redis.url) as victim,
        admin_of(redis.url) as admin,
    ):
        open_member(stack, survivor, name, presence_query("stays"))
        _, pid = open_member(stack, victim, name, presence_query("killed"))
        fields = {k.decode(): json.loads(v) for k, v in admin.hgetall(key).items()}
        assert sorted(fields.values()) == [["killed"], ["stays"]]
        (victim_id,) = [k for k, v in fields.items() if v == ["killed"]]
        assert admin.sismember(f"{PREFIX}rooms:{victim_id}", name)
        os.kill(pid, signal.SIGKILL)  # no leave, no clean-up
        killed = time.monotonic()
        bound = redis_timing.PROCESS_TTL + redis_timing.HEARTBEAT_PERIOD
        took = wait_for(
            lambda: victim_id.encode() not in admin.hgetall(key), wait_time(bound + 5), "removed"
        )
        assert time.monotonic() - killed < bound + wait_time(1), took
        assert [json.loads(v) for v in admin.hgetall(key).values()] == [["stays"]]
        assert not admin.exists(f"{PREFIX}rooms:{victim_id}")
        assert admin.zscore(f"{PREFIX}processes", victim_id) is None


@pytest.mark.slow
def test_a_process_stopped_past_the_presence_expiry_writes_its_presence_again(
    redis: RedisServer, tmp_path: Path
) -> None:
    """Stopped (SIGSTOP) for longer than PROCESS_TTL, a process looks dead:
    the others remove its presence. When it goes on, its next heartbeat
    writes it again, although a presence write of its own (another room's
    join) may have renewed its liveness key meanwhile."""
    name = new_room()
    key = f"{PREFIX}presence:{name}"
    with (
        contextlib.ExitStack() as stack,
        hub_app_server(tmp_path, "survivor", redis.url) as survivor,
        # Longer than the stop: gunicorn's master must not replace it.
        hub_app_server(tmp_path, "sleeper", redis.url, "--timeout", "120") as sleeper,
        admin_of(redis.url) as admin,
    ):
        open_member(stack, survivor, name, presence_query("stays"))
        _, pid = open_member(stack, sleeper, name, presence_query("sleeps"))
        fields = {k.decode(): json.loads(v) for k, v in admin.hgetall(key).items()}
        (sleeper_id,) = [k for k, v in fields.items() if v == ["sleeps"]]
        os.kill(pid, signal.SIGSTOP)
        try:
            bound = redis_timing.PROCESS_TTL + redis_timing.HEARTBEAT_PERIOD
            wait_for(
                lambda: sleeper_id.encode() not in admin.hgetall(key),
                wait_time(bound + 5),
                "removed while stopped",
            )
            # Its liveness key, renewed as a presence write of its own would.
            admin.set(f"{PREFIX}process:{sleeper_id}", 1, ex=redis_timing.PROCESS_TTL)
        finally:
            os.kill(pid, signal.SIGCONT)
        wait_for(
            lambda: sleeper_id.encode() in admin.hgetall(key),
            wait_time(redis_timing.HEARTBEAT_PERIOD + 2),
            "written again",
        )
        assert json.loads(admin.hget(key, sleeper_id) or b"null") == ["sleeps"]
        assert admin.zscore(f"{PREFIX}processes", sleeper_id) is not None


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
    bound = redis_timing.CONNECT_TIMEOUT + redis_timing.COMMAND_TIMEOUT
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
                wait_time(redis_timing.HEARTBEAT_PERIOD + 2),
                "presence removed by the reader",
            )
    finally:
        hub.close()


# -- a reader that falls behind the stream ---------------------------------------


class Holding(Inbox):
    """A member whose ``offer`` holds the hub's reader on the message
    ``hold`` until released."""

    def __init__(self, maxsize: int) -> None:
        super().__init__(maxsize)
        self.holding = threading.Event()
        self.release = threading.Event()

    def offer(self, frame: Any, max_backlog: int) -> bool:
        if frame.data == b"hold":
            self.holding.set()
            self.release.wait(T)
        return super().offer(frame, max_backlog)


def test_a_reader_that_falls_behind_the_stream_says_what_it_lost(
    redis: RedisServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "flask_sockets_channels.hub")
    monkeypatch.setattr(redis_stream, "STREAM_LENGTH", 50)
    name, member = new_room(), Holding(1000)
    with (
        hub_at(redis.url) as hub,
        hub.join(name, member),
        hub_at(redis.url) as outside,
        contextlib.ExitStack() as releasing,
    ):
        releasing.callback(member.release.set)  # the hub's reader goes on, whatever happens
        assert hub.wait_ready(T)
        outside.publish(name, "hold")
        assert member.holding.wait(T)
        for number in range(200):  # the stream keeps the last 50
            outside.publish(name, f"n-{number}")
        member.release.set()
        got = receive_until(member, "n-199")
        assert hub.messages_lost == 150
    assert got == ["hold"] + [f"n-{number}" for number in range(150, 200)]
    lost = [r for r in caplog.records if "lost here" in r.getMessage()]
    assert len(lost) == 1 and lost[0].levelno == logging.WARNING
    assert "150 messages" in lost[0].getMessage()


def test_a_reader_away_while_the_stream_overflows_says_what_it_lost(
    redis: RedisServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "flask_sockets_channels.hub")
    monkeypatch.setattr(redis_stream, "STREAM_LENGTH", 50)
    name, inbox = new_room(), sender_channel()
    with admin_of(redis.url) as admin:
        admin.acl_setuser("reader", enabled=True, passwords=["+reader-pw"], keys=["*"],
                          channels=["*"], commands=["+@all"])  # fmt: skip
        url = f"redis://reader:reader-pw@127.0.0.1:{redis.port}/0"
        with hub_at(url) as hub, hub.join(name, inbox), hub_at(redis.url) as outside:
            assert hub.wait_ready(T)
            outside.publish(name, "first")
            assert receive(inbox) == "first"
            # The reader away: its connection closed, and refused until the
            # burst is in.
            admin.acl_setuser("reader", enabled=True, commands=["-xread", "-eval", "-evalsha"])
            for client in admin.client_list():
                if client["name"].startswith(f"{PREFIX}reader:"):
                    admin.client_kill_filter(_id=client["id"])
            for number in range(120):  # with "first": 121, of which the stream keeps 50
                outside.publish(name, f"n-{number}")
            admin.acl_setuser("reader", enabled=True, commands=["+@all"])
            got = receive_until(inbox, "n-119")
            assert hub.messages_lost == 70
    assert got == [f"n-{number}" for number in range(70, 120)]
    lost = [r.getMessage() for r in caplog.records if "lost here" in r.getMessage()]
    assert len(lost) == 1 and "70 messages" in lost[0], lost


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
