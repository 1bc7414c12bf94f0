"""Faults of a real network (tests/netns.py: a link that goes down, so no
FIN or RST): a peer that vanishes is found within ``pong_wait``, whatever
the view is doing: reading, writing, waiting, or with its reader paused
for the rate limit (where no pong can be read, the kernel's
``TCP_USER_TIMEOUT``, set to ``pong_wait``, ends it); a Redis server whose
link goes down and comes back loses the hub nothing."""

from __future__ import annotations

import contextlib
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from flask_sockets_channels.redis_timing import READ_TIMEOUT
from tests.conftest import SERVERS, RedisServer, Server, free_port, wait_time
from tests.netns import VethPeer, veth_peer
from tests.test_hub_redis import (
    Collector,
    drain,
    hub_app_server,
    hub_at,
    new_room,
    open_member,
    publishing,
    wait_until_every_member_hears,
)

PONG_WAIT = 1.5  # the /vanish views' options (tests/server_app.py)
CLOSE_TIMEOUT = 0.5


@pytest.fixture(scope="module")
def peer() -> Iterator[VethPeer]:
    with veth_peer() as made:
        yield made


@pytest.fixture(params=sorted(SERVERS))
def far_server(request: pytest.FixtureRequest, peer: VethPeer, tmp_path: Path) -> Iterator[Server]:
    with SERVERS[request.param](tmp_path / "server.log", address=peer.server_ip) as running:
        yield running


@pytest.mark.parametrize("mode", ["reads", "writes", "waits", "paused"])
def test_a_peer_that_vanishes_is_found_within_pong_wait(
    far_server: Server, peer: VethPeer, mode: str
) -> None:
    entry = uuid.uuid4().hex
    url = f"{far_server.ws}/vanish/{mode}?id={entry}"
    client = peer.python("-m", "tests.vanishing_client", url, mode, stdout=subprocess.PIPE)
    try:
        assert client.stdout is not None
        assert client.stdout.readline().strip() == "open"
        peer.vanish()
        vanished, vanished_at = time.monotonic(), time.time()
        result = far_server.journal(entry, timeout=PONG_WAIT + CLOSE_TIMEOUT + 10)
        took = time.monotonic() - vanished
    finally:
        client.kill()
        client.wait()
        if client.stdout is not None:
            client.stdout.close()
        peer.restore()
    assert result["ended_at"] > vanished_at, "the view ended before its peer vanished"
    assert took < PONG_WAIT + CLOSE_TIMEOUT + wait_time(2), result
    assert [error["type"] for error in result["errors"]] == ["KeepaliveTimeout"], result
    # 1011 when the timer finds the silence first, 1006 when the kernel does
    # (a paused reader reads no pong: always the kernel)
    assert result["close_code"] in ((1006,) if mode == "paused" else (1006, 1011)), result
    assert result["threads_alive"] == []


@contextlib.contextmanager
def redis_across(peer: VethPeer) -> Iterator[RedisServer]:
    """A redis-server in the peer's namespace, on the peer's address (what
    the server's hub uses) and on the namespace's loopback (the publisher
    beside it, which keeps publishing while the link is down)."""
    redis = RedisServer(free_port(), peer.peer_ip, peer.exec_prefix)
    try:
        redis.start()
        yield redis
    finally:
        redis.stop()


def test_a_redis_behind_a_link_that_goes_down_and_comes_back_loses_nothing(
    peer: VethPeer, tmp_path: Path
) -> None:
    """Redis's link goes down for longer than the hub reader's socket
    timeout while a process beside Redis publishes: the reader gives up the
    dead connection, connects again once the link is back, and every member
    gets every message once, in order."""
    room, count = new_room(), 1000
    with redis_across(peer) as redis, contextlib.ExitStack() as stack:
        server = stack.enter_context(hub_app_server(tmp_path, "far", redis.url))
        prober = stack.enter_context(hub_at(redis.url))
        members = [open_member(stack, server, room)[0] for _ in range(2)]
        wait_until_every_member_hears(prober, room, members)
        collectors = [Collector(ws, f"n-{count - 1}") for ws in members]
        near = f"redis://127.0.0.1:{redis.port}/0"
        with publishing(near, room, count, 0.01, prefix=peer.exec_prefix) as publisher:
            publisher.wait_for(200)
            peer.vanish()
            try:
                # The fault's length, not a wait for something: past the
                # reader's socket timeout, so that it must connect again.
                time.sleep(READ_TIMEOUT + 3)
            finally:
                peer.restore()
            publisher.wait_for(None)
        for collector in collectors:
            assert collector.numbers() == list(range(count))
        for ws in members:
            assert drain(ws) == []  # and nothing twice
        log = server.wait_log("hub: reconnected to")
        assert "hub: lost" in log  # the dead connection was given up, not waited out
