"""Wire-level behaviour: pong ordering, closing handshake timing, fuzzing."""

from __future__ import annotations

import os
import random
import socket
import struct
import time

import pytest

from tests.client import connect
from tests.conftest import Server, wait_time
from tests.wire import CLOSE, PING, PONG, TEXT, RawClient, close_frame, frame

T = wait_time(5)


def test_pong_comes_before_data_queued_after_the_ping(server: Server) -> None:
    with RawClient(server.port) as client:
        client.open("/echo")
        client.send(frame(PING, b"p1") + frame(TEXT, b"after the ping"))
        first, second = client.read_frame(), client.read_frame()
    assert (first.opcode, first.payload) == (PONG, b"p1")
    assert second.text == "after the ping"


def test_pong_in_the_middle_of_a_fragmented_message(server: Server) -> None:
    with RawClient(server.port) as client:
        client.open("/echo")
        client.send(frame(TEXT, b"frag-", fin=False) + frame(PING, b"mid") + frame(0, b"ment"))
        first, second = client.read_frame(), client.read_frame()
    assert (first.opcode, first.payload) == (PONG, b"mid")
    assert second.text == "frag-ment"


def test_close_in_the_middle_of_a_fragmented_message_is_answered_1000(server: Server) -> None:
    with RawClient(server.port) as client:
        client.open("/echo")
        client.send(frame(TEXT, b"half", fin=False) + close_frame(1000))
        reply = client.read_frame()
        assert (reply.opcode, reply.close_code) == (CLOSE, 1000)
        assert client.read_rest() == b""


def test_server_close_waits_close_timeout_for_the_peer_then_closes_tcp(server: Server) -> None:
    # The test app sets SOCKETS_CLOSE_TIMEOUT = 2.
    with RawClient(server.port, timeout=10) as client:
        client.open("/only-sender")
        assert client.read_frame().text == "hello"
        assert client.read_frame().close_code == 1000
        started = time.monotonic()
        assert client.read_rest() == b""  # we never answer; the server gives up
        waited = time.monotonic() - started
    assert 1.5 < waited < 2 + wait_time(3)


def test_server_close_then_peer_reply_closes_tcp_at_once(server: Server) -> None:
    with RawClient(server.port) as client:
        client.open("/only-sender")
        assert client.read_frame().text == "hello"
        assert client.read_frame().close_code == 1000
        started = time.monotonic()
        client.send(close_frame(1000))
        assert client.read_rest() == b""
        assert time.monotonic() - started < 1.5


def test_compression_is_negotiated_when_enabled(server: Server) -> None:
    with connect(f"{server.ws}/echo/deflate", open_timeout=T) as ws:
        assert "permessage-deflate" in ws.response.headers.get("Sec-WebSocket-Extensions", "")
        for message in ["squeeze me " * 100, b"\x00" * 5000]:
            ws.send(message)
            assert ws.recv(timeout=T) == message


def _fuzz_cases(seed: int, count: int) -> list[bytes]:
    rng = random.Random(seed)
    cases = []
    for _ in range(count):
        kind = rng.randrange(4)
        if kind == 0:  # random bytes as a request
            cases.append(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300))))
        elif kind == 1:  # a request with a damaged header line
            lines = [
                b"GET /echo HTTP/1.1",
                b"Host: x",
                b"Upgrade: websocket",
                b"Connection: Upgrade",
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                b"Sec-WebSocket-Version: 13",
            ]
            index = rng.randrange(len(lines))
            line = bytearray(lines[index])
            for _ in range(rng.randrange(1, 4)):
                line[rng.randrange(len(line))] = rng.randrange(256)
            lines[index] = bytes(line)
            cases.append(b"\r\n".join(lines) + b"\r\n\r\n")
        else:  # a good handshake followed by random frames
            cases.append(
                b"FRAMES" + bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400)))
            )
    return cases


@pytest.mark.parametrize("seed", [1, 2])
def test_malformed_input_never_kills_the_server(server: Server, seed: int) -> None:
    deadline = time.monotonic() + wait_time(20)
    for case in _fuzz_cases(seed, 40):
        if time.monotonic() > deadline:
            break
        with RawClient(server.port, timeout=3) as client:
            try:
                if case.startswith(b"FRAMES"):
                    client.open("/echo")
                    client.send(case[6:])
                else:
                    client.send(case)
                client.sock.shutdown(socket.SHUT_WR)
                client.read_rest()
            except OSError:
                pass  # the server may reset a connection it failed
    with connect(f"{server.ws}/echo", open_timeout=T) as ws:
        ws.send("still serving")
        assert ws.recv(timeout=T) == "still serving"
    assert server.get("/")[0] == 200


def test_oversized_frame_header_fails_with_1009_without_buffering(server: Server) -> None:
    with RawClient(server.port) as client:
        client.open("/probe")
        head = bytes([0x82, 0x80 | 127]) + struct.pack("!Q", 1 << 40) + os.urandom(4)
        client.send(head + b"\x00" * 2048)
        assert client.read_frame().close_code == 1009


def test_a_ping_made_before_our_close_frame_but_handed_over_after_it_is_not_sent() -> None:
    """The race of the timer's ping with the view's close: the ping is made
    while the connection is open, the close frame is written, then the
    ping reaches the write path. Nothing but pongs may follow our close."""
    from flask_sockets_channels import Options
    from flask_sockets_channels.connection import Codec, Connection
    from flask_sockets_channels.engine import Protocol, Side, State

    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.settimeout(T)
        options = Options(ping_period=None, pong_wait=None, close_timeout=T)
        protocol = Protocol(Side.SERVER, state=State.OPEN)
        connection = Connection(ours, protocol, options, Codec())
        connection.start()
        with connection._protocol_lock:  # what the timer's _send_ping makes
            connection._protocol.send_ping(b"late")
            ping = connection._protocol.data_to_send()
        connection.close(1000)
        peer = RawClient.__new__(RawClient)  # a client over the socket pair
        peer.sock, peer.buffer = theirs, b""
        assert [f.opcode for f in peer.read_until_close()] == [CLOSE]
        connection.sender.send_control(ping)  # the ping arrives after the close went out
        peer.send(close_frame(1000))
        rest = peer.read_rest()  # up to the server's EOF
        theirs.shutdown(socket.SHUT_RDWR)
        assert connection.wait_closed(T)
    assert rest == b""
