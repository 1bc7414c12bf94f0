"""The Hub: rooms in-process and across processes through a real redis-server."""

from __future__ import annotations

import contextlib
import gc
import threading
import time
import uuid
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from websockets.sync.client import ClientConnection

import flask_sockets_channels as sockets
from tests.client import connect
from tests.conftest import (
    Inbox,
    RedisServer,
    Server,
    gunicorn_server,
    redis_server,
    serve_app,
    wait_time,
)
from tests.wire import CLOSE, RawClient

T = wait_time(5)


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


def test_members_with_and_without_compression_get_every_message(server: Server) -> None:
    """A message is serialised once for the members without compression;
    the compressed ones still get theirs compressed, in order."""
    name = room()
    with contextlib.ExitStack() as stack:
        plain = [join(stack, server, name) for _ in range(2)]
        compressed = []
        for _ in range(2):
            ws = stack.enter_context(
                connect(f"{server.ws}/room/deflate/{name}", open_timeout=T, compression="deflate")
            )
            assert ws.recv(timeout=T) == f"joined {name}"
            assert ws.protocol.extensions, "permessage-deflate was not negotiated"
            compressed.append(ws)
        sent = [f"message {index} " + "x" * index for index in range(50)]
        for text in sent:
            plain[0].send(text)
        for ws in plain + compressed:
            assert [ws.recv(timeout=T) for _ in sent] == sent


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


def test_malformed_stream_entry_is_logged_and_dropped(
    redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    import redis as redis_py

    name = room()
    hub = sockets.Hub.from_url(redis.url)
    channel = sender_channel()
    client = redis_py.Redis.from_url(redis.url)
    try:
        with hub.join(name, channel):
            assert hub.wait_ready(T)
            stream = "flask-sockets-channels:stream"
            client.xadd(stream, {"garbage": "1"})
            client.xadd(stream, {"r": name, "f": b"t\xff"})  # text that is not UTF-8
            client.xadd(stream, {"r": name, "f": b"zkind"})
            hub.publish(name, "valid")
            assert channel.get(timeout=T).data == b"valid"
    finally:
        client.close()
        hub.close()
    dropped = [r for r in caplog.records if "dropped malformed message" in r.getMessage()]
    assert len(dropped) == 3
    assert not [t for t in threading.enumerate() if t.name == "flask-sockets-channels hub"]


def test_sockets_hub_follows_the_config(redis: RedisServer) -> None:
    from flask import Flask

    app = Flask(__name__)
    app.config["SOCKETS_HUB_URL"] = redis.url
    ext = sockets.Sockets(app)
    assert ext.hub.url == redis.url
    plain = sockets.Sockets(Flask(__name__))
    assert plain.hub.url is None


# -- exclude, and what a member keeps alive ------------------------------------


def sender_channel(maxsize: int = 100) -> Inbox:
    """A hub member with nothing behind it (the hub only offers frames to it
    and reads ``closed``)."""
    return Inbox(maxsize)


def frames(channel: Inbox) -> list[bytes]:
    """Everything queued on ``channel``, without waiting."""
    found = []
    while not channel.empty():
        found.append(channel.get_nowait().data)
    return found


def test_publish_excludes_a_member_given_as_the_member_returned_by_join() -> None:
    hub = sockets.Hub()
    first, second, third = sender_channel(), sender_channel(), sender_channel()
    with hub.join("r", first) as me, hub.join("r", second) as other, hub.join("r", third):
        assert hub.publish("r", "not to me", exclude=me) == 2
        hub.publish("r", "to the third", exclude=[me, other])
        hub.publish("r", "mixed", exclude=[me, second])
    assert frames(first) == []
    assert frames(second) == [b"not to me"]
    assert frames(third) == [b"not to me", b"to the third", b"mixed"]


def test_a_member_of_another_room_excludes_nobody() -> None:
    hub = sockets.Hub()
    here, there = sender_channel(), sender_channel()
    with hub.join("here", here), hub.join("there", there) as elsewhere:
        hub.publish("here", "for here", exclude=elsewhere)
    assert frames(here) == [b"for here"]


def leaky_app(hub: sockets.Hub, connections: list[weakref.ref[sockets.Connection]]) -> Flask:
    """A view that joins and never leaves (no ``with``, no ``leave()``)."""
    app = Flask(__name__)
    sockets.Sockets(app)

    @app.route("/leaky/<name>")
    @sockets.messages()
    def leaky(name, receiver, sender, connection):  # type: ignore[no-untyped-def]
        connections.append(weakref.ref(connection))
        hub.join(name, sender)
        sender.put("joined")
        for _ in receiver:
            pass

    return app


def test_a_member_that_never_leaves_does_not_keep_its_connection_alive(tmp_path: Path) -> None:
    hub, name = sockets.Hub(), room()
    connections: list[weakref.ref[sockets.Connection]] = []
    with serve_app(leaky_app(hub, connections), tmp_path / "leaky.log") as server:
        for _ in range(3):
            with connect(f"{server.ws}/leaky/{name}", open_timeout=T) as ws:
                assert ws.recv(timeout=T) == "joined"
        assert len(connections) == 3
        deadline = time.monotonic() + T
        while True:  # each view returns once its connection is done
            gc.collect()
            alive = [ref() for ref in connections if ref() is not None]
            if not alive:
                break
            assert time.monotonic() < deadline, f"connections kept alive: {alive}"
            del alive
            time.sleep(0.02)  # the views end in the server's threads; nothing to wait on
    assert hub.members(name) == []
    assert hub.rooms() == []


# -- presence and history, in process ------------------------------------------


def test_presence_lists_the_values_of_the_members_that_gave_one() -> None:
    hub = sockets.Hub()
    channels = [sender_channel() for _ in range(4)]  # kept alive, as connections keep them
    with (
        hub.join("r", channels[0], presence="ann"),
        hub.join("r", channels[1], presence={"name": "bob", "tags": (1, 2)}),
        hub.join("r", channels[2]),
        hub.join("elsewhere", channels[3], presence="cy"),
    ):
        assert hub.presence("r") == ["ann", {"name": "bob", "tags": [1, 2]}]
    assert hub.presence("r") == []


def test_a_member_whose_connection_closed_drops_out_of_presence() -> None:
    hub = sockets.Hub()
    channel = sender_channel()
    hub.join("r", channel, presence="gone soon")
    channel.close()
    assert hub.presence("r") == []
    assert hub.members("r") == []


@pytest.mark.parametrize("value", [object(), {"n": float("nan")}, {1j: "x"}])
def test_presence_that_is_not_json_is_refused_at_join(value: object) -> None:
    hub = sockets.Hub()
    with pytest.raises((TypeError, ValueError)):
        hub.join("r", sender_channel(), presence=value)
    assert hub.members("r") == []


def test_replay_delivers_the_last_n_messages_in_order_then_live_ones() -> None:
    hub = sockets.Hub(history=3)
    for number in range(5):
        hub.publish("r", f"m{number}")
    channel = sender_channel()
    with hub.join("r", channel, replay=True):
        hub.publish("r", "live")
    assert frames(channel) == [b"m2", b"m3", b"m4", b"live"]


def test_without_replay_or_history_a_member_gets_only_live_messages() -> None:
    kept, plain = sockets.Hub(history=3), sockets.Hub()
    for hub in (kept, plain):
        hub.publish("r", "old")
    channels = [sender_channel() for _ in range(2)]
    with kept.join("r", channels[0]), plain.join("r", channels[1], replay=True):
        kept.publish("r", "new")
        plain.publish("r", "new")
    assert [frames(c) for c in channels] == [[b"new"], [b"new"]]


def test_replay_while_others_publish_misses_nothing_and_repeats_nothing() -> None:
    hub, count, publishers = sockets.Hub(history=50), 2000, 4
    started = threading.Barrier(publishers + 1)

    def publish(prefix: str) -> None:
        started.wait(T)
        for number in range(count // publishers):
            hub.publish("r", f"{prefix}-{number}")

    threads = [
        threading.Thread(target=publish, args=(f"p{i}",), name=f"test publisher {i}")
        for i in range(publishers)
    ]
    for thread in threads:
        thread.start()
    started.wait(T)
    channels = []
    for _ in range(20):
        channel = sender_channel(maxsize=count + 100)
        hub.join("r", channel, replay=True)
        channels.append(channel)
    for thread in threads:
        thread.join(T)
    for channel in channels:
        received = [f.decode() for f in frames(channel)]
        assert len(received) == len(set(received))  # none twice
        for index in range(publishers):
            # Per publisher: a gap-free run that ends with its last message.
            numbers = [int(m.split("-")[1]) for m in received if m.startswith(f"p{index}-")]
            assert numbers == list(range(count // publishers - len(numbers), count // publishers))


def test_history_is_bounded_per_room() -> None:
    hub = sockets.Hub(history=2)
    for room_name in ("a", "b"):
        for number in range(100):
            hub.publish(room_name, f"{room_name}{number}")
    channel = sender_channel()
    hub.join("a", channel, replay=True)
    assert frames(channel) == [b"a98", b"a99"]


def test_history_of_a_room_without_members_expires() -> None:
    from flask_sockets_channels.transport import ROOM_TTL

    hub = sockets.Hub(history=5)
    hub.publish("idle", "old")
    hub.publish("busy", "old")
    member_channel = sender_channel()
    hub.join("busy", member_channel)
    hub._transport._expire(time.monotonic() + ROOM_TTL + 1)  # type: ignore[attr-defined]
    for room_name, expected in (("idle", []), ("busy", [b"old"])):
        channel = sender_channel()
        hub.join(room_name, channel, replay=True)
        assert frames(channel) == expected


def test_history_must_be_a_non_negative_int() -> None:
    for value in (-1, 1.5, True):
        with pytest.raises(ValueError):
            sockets.Hub(history=value)  # type: ignore[arg-type]


def test_sockets_hub_history_follows_the_config() -> None:
    app = Flask(__name__)
    app.config["SOCKETS_HUB_HISTORY"] = 4
    assert sockets.Sockets(app).hub.history == 4
    bad = Flask(__name__)
    bad.config["SOCKETS_HUB_HISTORY"] = "4"
    with pytest.raises(ValueError):
        sockets.Sockets(bad)


def test_sockets_hub_max_message_size_follows_the_config() -> None:
    app = Flask(__name__)
    app.config["SOCKETS_HUB_MAX_MESSAGE_SIZE"] = 8
    hub = sockets.Sockets(app).hub
    with pytest.raises(ValueError, match="max_message_size"):
        hub.publish("r", "nine byte")
    hub.publish("r", "8 bytes.")
    for value in (0, "8", True):
        bad = Flask(__name__)
        bad.config["SOCKETS_HUB_MAX_MESSAGE_SIZE"] = value
        with pytest.raises(ValueError, match="SOCKETS_HUB_MAX_MESSAGE_SIZE"):
            sockets.Sockets(bad)


def test_sockets_hub_max_resume_follows_the_config() -> None:
    app = Flask(__name__)
    app.config["SOCKETS_HUB_MAX_RESUME"] = 7
    assert sockets.Sockets(app).hub.max_resume == 7
    bad = Flask(__name__)
    bad.config["SOCKETS_HUB_MAX_RESUME"] = -1
    with pytest.raises(ValueError, match="SOCKETS_HUB_MAX_RESUME"):
        sockets.Sockets(bad)


def test_the_hub_counts_what_it_published_delivered_and_closed_as_too_slow() -> None:
    hub = sockets.Hub()
    steady, slow = Inbox(100), Inbox(1)
    with hub.join("r", steady), hub.join("r", slow, max_backlog=1):
        for index in range(3):
            hub.publish("r", f"m{index}")
    # The slow member took two (its buffer and its backlog), then was dropped.
    assert (hub.published, hub.delivered, hub.slow_consumers_closed) == (3, 5, 1)
    assert hub.reconnects == 0
