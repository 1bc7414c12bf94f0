"""``idle_reader_timeout``: an idle connection gives its reader thread up.

Its socket is parked with the process's poller, which hands it to a worker
at the next input; every guarantee holds across a park: messages (a frame
cut in two by the park too), pings and ``pong_wait``, the closing handshake
from either side. The endpoints park after 0.1 s without input.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest
from websockets.exceptions import ConnectionClosed

from tests.client import connect
from tests.conftest import Server, until, wait_time
from tests.wire import CLOSE, PING, TEXT, RawClient, close_frame, frame

T = wait_time(5)


def parked(server: Server) -> int:
    return int(json.loads(server.get("/_parked")[1]))


def readers_of(server: Server, key: str) -> list[str]:
    """The threads named after the connection of ``key``: its own reader."""
    return [n for n in server.threads() if n.startswith("ws-") and key in n]


def test_an_idle_connection_parks_and_reads_on_at_the_next_input(server: Server) -> None:
    key = uuid.uuid4().hex
    with RawClient(server.port) as client:
        client.open(f"/parking/{key}")
        for text in ("one", "two"):
            until(lambda: parked(server) == 1, "parked", T)
            assert readers_of(server, key) == []
            client.send(frame(TEXT, text.encode()))
            assert client.read_frame().text == text
        # A frame cut in two by a park: the engine keeps what it parsed.
        whole = frame(TEXT, b"cut in two")
        until(lambda: parked(server) == 1, "parked", T)
        client.send(whole[:4])
        until(lambda: parked(server) == 1 and not readers_of(server, key), "parked mid-frame", T)
        client.send(whole[4:])
        assert client.read_frame().text == "cut in two"
        until(lambda: parked(server) == 1, "parked", T)
        client.send(close_frame(1000))
        reply = client.read_frame()
        assert (reply.opcode, reply.close_code) == (CLOSE, 1000)
        assert client.read_rest() == b""
    result = server.journal(key)
    assert result["done"] is True
    assert result["errors"] == []
    assert result["close_code"] == 1000
    assert result["threads_alive"] == []
    until(lambda: parked(server) == 0, "nothing parked", T)


def test_a_parked_connection_answered_by_pongs_stays_open(server: Server) -> None:
    """Pings every 0.2 s, ``pong_wait`` 0.8 s: each pong wakes the parked
    reader, which reads it and parks again; open after three pong_waits."""
    key = uuid.uuid4().hex
    with connect(f"{server.ws}/parking-pinged/{key}", open_timeout=T) as ws:
        until(lambda: parked(server) == 1, "parked", T)
        time.sleep(2.4)  # what is tested: three pong_waits pass
        ws.send("still here")
        assert ws.recv(timeout=T) == "still here"
    result = server.journal(key)
    assert result["errors"] == []
    assert result["close_code"] == 1000


def test_a_parked_connection_whose_peer_answers_no_ping_is_closed_within_pong_wait(
    server: Server,
) -> None:
    key = uuid.uuid4().hex
    with RawClient(server.port) as client:
        client.open(f"/parking-pinged/{key}")
        started = time.monotonic()
        frames = client.read_until_close()
        took = time.monotonic() - started
    assert frames[0].opcode == PING
    assert frames[-1].close_code == 1011
    assert took < 0.8 + wait_time(1)
    result = server.journal(key)
    assert [error["type"] for error in result["errors"]] == ["KeepaliveTimeout"]
    assert result["close_code"] == 1011
    assert result["threads_alive"] == []


def test_a_parked_connection_closed_by_the_server_finishes_the_handshake(
    server: Server,
) -> None:
    key = uuid.uuid4().hex
    with connect(f"{server.ws}/parking/{key}", open_timeout=T) as ws:
        until(lambda: parked(server) == 1, "parked", T)
        status, _ = server.get("/_close_all")
        assert status == 200
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=T)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    result = server.journal(key)
    assert result["done"] is True
    assert result["close_code"] == 1001
    assert result["threads_alive"] == []
    until(lambda: parked(server) == 0, "nothing parked", T)
    # With nothing parked and nothing to read on, the poller and its
    # workers end too (EMPTY_FOR, WORKER_IDLE).
    deadline = time.monotonic() + wait_time(15)
    while any(n.startswith("flask-sockets-channels poller") for n in server.threads()):
        assert time.monotonic() < deadline, "the poller did not end"
        time.sleep(0.1)
