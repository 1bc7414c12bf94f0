"""The Hub: rooms in-process and across processes through a real redis-server."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.sync.client import ClientConnection, connect

import flask_sockets_channels as sockets
from flask_sockets_channels.channels import Channel
from tests.conftest import RedisServer, Server, gunicorn_server, redis_server, wait_time
from tests.wire import CLOSE, RawClient

T = wait_time(5)


class Inbox(Channel[object]):
    """A hub member without a socket: what the hub offers lands here."""

    def offer(self, frame: object, max_backlog: int) -> bool:
        return self._put_past_limit((frame,), self.capacity + max_backlog)


def room() -> str:
    return "room-" + uuid.uuid4().hex[:8]


def join(
    stack: contextlib.ExitStack, server: Server, name: str, query: str = ""
) -> ClientConnection:
    ws = stack.enter_context(connect(f"{server.ws}/room/{name}{query}", open_timeout=T))
    assert ws.recv(timeout=T) == f"joined {name}"
    return ws


def test_publish_reaches_every_member_of_the_room_only(server: Server) -> None:
    name, other = room(), room()
    with contextlib.ExitStack() as stack:
        members = [join(stack, server, name) for _ in range(3)]
        outsider = join(stack, server, other)
        members[0].send("hello room")
        for ws in members:
            assert ws.recv(timeout=T) == "hello room"
        outsider.send("only me")
        assert outsider.recv(timeout=T) == "only me"
        for ws in members:
            with pytest.raises(TimeoutError):
                ws.recv(timeout=0.2)


def test_members_leave_when_their_connection_ends(server: Server) -> None:
    name = room()
    with contextlib.ExitStack() as stack:
        join(stack, server, name)
        join(stack, server, name)
        assert server.get(f"/_publish/{name}?text=x")[1].strip() == "2"
    deadline = time.monotonic() + T
    while server.get(f"/_publish/{name}?text=x")[1].strip() != "0":
        assert time.monotonic() < deadline, "members were not removed"
        time.sleep(0.02)  # leaving happens in the view's thread as it ends


def test_a_burst_smaller_than_the_backlog_reaches_every_member_in_order(
    server: Server,
) -> None:
    name, burst = room(), 500
    with contextlib.ExitStack() as stack:
        members = [join(stack, server, name) for _ in range(10)]
        assert server.get(f"/_publish/{name}?text=burst&count={burst}")[0] == 200
        for ws in members:
            assert [ws.recv(timeout=T) for _ in range(burst)] == [
                f"burst-{i}" for i in range(burst)
            ]


def test_a_slow_member_is_closed_with_1008_and_the_others_go_on(server: Server) -> None:
    # Under the fast member's backlog (1000), over the slow one's, and 8 MB
    # in all: more than the kernel's socket buffers hold for the slow one.
    name, burst = room(), 800
    with contextlib.ExitStack() as stack:
        fast = join(stack, server, name)
        slow = stack.enter_context(RawClient(server.port, timeout=10))
        slow.open(f"/room/{name}?backlog=20")
        assert slow.read_frame().text == f"joined {name}"
        started = time.monotonic()
        status, _ = server.get(f"/_publish/{name}?text={'p' * 1000}&repeat=10&count={burst}")
        assert status == 200
        assert time.monotonic() - started < T  # publish did not wait for the slow member
        received = [fast.recv(timeout=T) for _ in range(burst)]
        assert received[-1].endswith(f"-{burst - 1}")
        codes = [f.close_code for f in slow.read_until_close() if f.opcode == CLOSE]
        assert codes == [1008]


def test_view_that_raises_leaves_the_room() -> None:
    hub = sockets.Hub()
    channel = Inbox(1)
    with pytest.raises(RuntimeError), hub.join("r", channel):
        assert len(hub.members("r")) == 1
        raise RuntimeError("view failed")
    assert hub.members("r") == []


def test_join_rejects_a_plain_channel() -> None:
    with pytest.raises(TypeError):
        sockets.Hub().join("r", sockets.Channel(1))


def test_publish_of_an_unserialisable_message_raises_type_error() -> None:
    with pytest.raises(TypeError):
        sockets.Hub().publish("r", object())


# -- across processes, through Redis ----------------------------------------


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with redis_server() as running:
        yield running


@contextlib.contextmanager
def two_workers(tmp_path: Path, url: str) -> Iterator[tuple[Server, Server]]:
    env = {"FSC_TEST_HUB_URL": url}
    with (
        gunicorn_server(tmp_path / "a.log", env=env) as first,
        gunicorn_server(tmp_path / "b.log", env=env) as second,
    ):
        yield first, second


def test_redis_hub_carries_messages_between_processes(redis: RedisServer, tmp_path: Path) -> None:
    name = room()
    with two_workers(tmp_path, redis.url) as (first, second), contextlib.ExitStack() as stack:
        on_first, on_second = join(stack, first, name), join(stack, second, name)
        deadline = time.monotonic() + T
        while True:  # until the second process's listener is subscribed
            on_first.send("ping across")
            assert on_first.recv(timeout=T) == "ping across"
            with contextlib.suppress(TimeoutError):
                if on_second.recv(timeout=0.2) == "ping across":
                    break
            assert time.monotonic() < deadline, "no message crossed processes"
        on_second.send("from the second")
        assert on_first.recv(timeout=T) == "from the second"
        assert on_second.recv(timeout=T) == "from the second"
        with pytest.raises(TimeoutError):  # exactly once
            on_second.recv(timeout=0.3)


def test_hundred_members_across_two_processes_get_every_message_in_order(
    redis: RedisServer, tmp_path: Path
) -> None:
    name, count = room(), 50
    with two_workers(tmp_path, redis.url) as servers, contextlib.ExitStack() as stack:
        members = [join(stack, servers[i % 2], name) for i in range(100)]
        # Warm up: both listeners subscribed (a probe from each side arrives).
        for server, probe in ((servers[0], members[1]), (servers[1], members[0])):
            deadline = time.monotonic() + T
            while True:
                server.get(f"/_publish/{name}?text=probe")
                received = None
                with contextlib.suppress(TimeoutError):
                    received = probe.recv(timeout=0.3)
                if received == "probe":
                    break
                assert time.monotonic() < deadline
        for ws in members:  # drain probes
            with contextlib.suppress(TimeoutError):
                while True:
                    ws.recv(timeout=0.1)
        assert servers[0].get(f"/_publish/{name}?text=seq&count={count}")[0] == 200
        expected = [f"seq-{i}" for i in range(count)]
        for ws in members:
            assert [ws.recv(timeout=T) for _ in range(count)] == expected


def test_redis_outage_raises_hub_unavailable_and_recovers(
    redis: RedisServer, tmp_path: Path
) -> None:
    name = room()
    with two_workers(tmp_path, redis.url) as (first, second), contextlib.ExitStack() as stack:
        on_first, on_second = join(stack, first, name), join(stack, second, name)
        redis.stop()
        status, body = first.get(f"/_publish/{name}?text=lost")
        assert status == 503
        assert "unavailable" in body and f"127.0.0.1:{redis.port}" in body
        on_first.send("during the outage")
        assert on_first.recv(timeout=T) == "hub unavailable"  # still connected
        redis.start()
        deadline = time.monotonic() + wait_time(10)
        attempt = 0
        while True:  # until a message from the first process reaches the second
            attempt += 1
            status, _ = first.get(f"/_publish/{name}?text=back-{attempt}")
            if status == 200:
                with contextlib.suppress(TimeoutError):
                    if on_second.recv(timeout=0.5).startswith("back-"):
                        break
            assert time.monotonic() < deadline, "the hub did not recover"
        on_second.send("after the outage")
        received = on_first.recv(timeout=T)
        while received != "after the outage":  # skip the recovery probes
            received = on_first.recv(timeout=T)


def test_malformed_redis_message_is_logged_and_dropped(redis: RedisServer, tmp_path: Path) -> None:
    import redis as redis_py

    name = room()
    hub = sockets.Hub.from_url(redis.url)
    channel = Inbox(100)
    received: list[object] = []
    try:
        with hub.join(name, channel):
            assert hub.wait_ready(T)
            client = redis_py.Redis.from_url(redis.url)
            client.publish(f"flask-sockets-channels:{name}", b"garbage")
            client.publish(f"flask-sockets-channels:{name}", b"x" * 16 + b"t" + b"\xff")
            client.publish(f"flask-sockets-channels:{name}", b"y" * 16 + b"t" + b"valid")
            client.close()
            received.append(channel.get(timeout=T).data)
    finally:
        hub.close()
    assert received == [b"valid"]
    assert not [t for t in threading.enumerate() if t.name == "flask-sockets-channels hub"]


def test_sockets_hub_follows_the_config(redis: RedisServer) -> None:
    from flask import Flask

    app = Flask(__name__)
    app.config["SOCKETS_HUB_URL"] = redis.url
    ext = sockets.Sockets(app)
    assert ext.hub.url == redis.url
    plain = sockets.Sockets(Flask(__name__))
    assert plain.hub.url is None
