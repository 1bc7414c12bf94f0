"""Faults of a real network: a peer that vanishes without FIN or RST (its
link goes down, tests/netns.py) is found within ``pong_wait``, whatever
the view is doing: reading, writing, waiting, or with its reader paused
for the rate limit (where no pong can be read, the kernel's
``TCP_USER_TIMEOUT``, set to ``pong_wait``, ends it)."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import SERVERS, Server, wait_time
from tests.netns import VethPeer, veth_peer

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
        subprocess.run(["ip", "-n", peer.name, "link", "set", peer.link, "up"], check=True)
    assert result["ended_at"] > vanished_at, "the view ended before its peer vanished"
    assert took < PONG_WAIT + CLOSE_TIMEOUT + wait_time(2), result
    assert [error["type"] for error in result["errors"]] == ["KeepaliveTimeout"], result
    # 1011 when the timer finds the silence first, 1006 when the kernel does
    # (a paused reader reads no pong: always the kernel)
    assert result["close_code"] in ((1006,) if mode == "paused" else (1006, 1011)), result
    assert result["threads_alive"] == []
