"""Faults a production server meets: silent peers, stalled readers, floods."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import struct
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from tests.client import connect
from tests.conftest import ROOT, Server, gunicorn_server, wait_time, werkzeug_process_server
from tests.wire import BINARY, PING, PONG, TEXT, RawClient, frame

T = wait_time(5)


def key() -> str:
    return uuid.uuid4().hex


def test_peer_that_never_answers_pings_is_closed_with_1011(server: Server) -> None:
    entry = key()
    with RawClient(server.port) as client:
        client.open(f"/keepalive?id={entry}")
        assert client.read_frame().text == "ready"
        pings, close = [], None
        while close is None:
            received = client.read_frame()
            if received.opcode == PING:
                pings.append(time.monotonic())
            elif received.opcode == 0x8:
                close = received
        assert close.close_code == 1011
        assert close.payload[2:] == b"keepalive timeout"
    result = server.journal(entry)
    assert result["errors"] == [{"type": "KeepaliveTimeout", "code": None, "raw": None}]
    assert result["done"] is True
    # pong_wait 0.9 s, ping_period 0.3 s: two or three pings, one per period.
    assert 2 <= len(pings) <= 3
    gaps = [b - a for a, b in zip(pings, pings[1:])]
    assert all(gap > 0.2 for gap in gaps), gaps


def test_peer_that_answers_pings_stays_connected_past_pong_wait(server: Server) -> None:
    with connect(f"{server.ws}/keepalive", open_timeout=T) as ws:
        assert ws.recv(timeout=T) == "ready"
        deadline = time.monotonic() + 2.0  # more than twice pong_wait
        while time.monotonic() < deadline:
            ws.send("tick")
            assert ws.recv(timeout=T) == "tick"
            ws.ping().wait(T)  # also keeps the client reading control frames
            time.sleep(0.1)  # pacing a live client, not synchronisation


def test_heartbeat_sends_an_empty_text_message_with_each_ping(server: Server) -> None:
    """What a browser's page can see of keepalive (it never sees pings)."""
    with RawClient(server.port) as client:
        client.open("/heartbeat")
        assert client.read_frame().text == "ready"
        seen = []
        while len(seen) < 6:
            received = client.read_frame()
            if received.opcode == PING:
                client.send(frame(PONG, received.payload))
            seen.append((received.opcode, received.payload if received.opcode == TEXT else None))
        client.send(frame(TEXT, b"echo"))
        while (received := client.read_frame()).opcode != TEXT or received.payload == b"":
            pass
        assert received.text == "echo"
    assert seen == [(PING, None), (TEXT, b"")] * 3


def test_frames_from_the_peer_count_as_alive(server: Server) -> None:
    """A client that sends data but never pongs is alive: frames reset the clock."""
    with RawClient(server.port) as client:
        client.open("/keepalive")
        assert client.read_frame().text == "ready"
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            client.send(frame(TEXT, b"alive"))
            received = client.read_frame()
            while received.opcode == PING:
                received = client.read_frame()
            assert received.text == "alive"
            time.sleep(0.1)  # pacing a live client, not synchronisation


def test_write_timeout_cuts_tcp_reports_and_releases_the_view(server: Server) -> None:
    entry = key()
    client = RawClient(server.port)
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.open(f"/firehose?id={entry}")
    try:
        # Read nothing more: the server's write blocks, then times out.
        result = server.journal(entry, timeout=15)
    finally:
        client.sock.close()
    assert result["put_raised"] == "Closed"
    assert result["done"] is True
    assert result["errors"] == [{"type": "WriteTimeout", "code": None, "raw": None}]
    assert result["threads_alive"] == []


def test_dead_peer_is_detected_while_the_view_does_not_read(server: Server) -> None:
    """The reader is paused on a full receiver; the next ping's write fails
    on the dead socket, and that must still end the connection."""
    entry = key()
    client = RawClient(server.port).open(f"/wait-done-fast?id={entry}")
    assert client.read_frame().text == "ready"
    client.send(b"".join(frame(TEXT, b"unread %d" % i) for i in range(50)))
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.sock.close()  # TCP reset
    result = server.journal(entry, timeout=10)
    assert result["done"] is True
    assert result["threads_alive"] == []
    assert [e["code"] for e in result["errors"]] == [1006]


def _rss_kib(server: Server) -> int:
    return int(server.get("/_rss")[1])


def test_flood_at_a_view_that_never_reads_is_pushed_back(server: Server) -> None:
    entry = key()
    message_size, total = 32 * 1024, 64 * 1024 * 1024
    count = total // message_size
    with RawClient(server.port, timeout=60) as client:
        client.open(f"/stall?id={entry}")
        assert client.read_frame().payload == b"ready"
        rss_before = _rss_kib(server)
        client.sock.settimeout(0.5)
        sent = 0
        pushed_back = False
        frames = (
            frame(BINARY, index.to_bytes(8, "big") + b"f" * (message_size - 8))
            for index in range(count)
        )
        pending = b""
        while True:
            if not pending:
                pending = next(frames, b"")
                if not pending:
                    break
            try:
                written = client.sock.send(pending)
            except socket.timeout:
                pushed_back = True
                break
            sent += written
            pending = pending[written:]
        rss_after = _rss_kib(server)
        assert pushed_back, "the server read the whole flood without pushing back"
        assert sent < total // 2
        assert rss_after - rss_before < 40 * 1024, (rss_before, rss_after)
        # The peer is paused, not dead: no keepalive timeout while pushed back.
        time.sleep(1.5)  # longer than pong_wait (0.9 s), to prove the point
        assert server.get(f"/_release/{entry}")[0] == 200
        client.sock.settimeout(60)
        client.sock.sendall(pending)
        for rest in frames:
            client.sock.sendall(rest)
        client.sock.sendall(frame(0x8, (1000).to_bytes(2, "big")))
        while client.read_frame().opcode != 0x8:
            pass
    result = server.journal(entry, timeout=30)
    assert result["count"] == count
    assert result["in_order"] is True
    assert result["errors"] == []


def test_threads_return_to_baseline_after_many_connections(server: Server) -> None:
    def connection_threads() -> int:
        return len([n for n in server.threads() if n.startswith(("ws-", "flask-sockets-channels"))])

    def churn(rounds: int) -> None:
        for index in range(rounds):
            how = index % 4
            if how == 0:  # normal close by the client
                with connect(f"{server.ws}/echo", open_timeout=T) as ws:
                    ws.send("x")
                    ws.recv(timeout=T)
            elif how == 1:  # the view returns
                with connect(f"{server.ws}/only-sender", open_timeout=T) as ws:
                    ws.recv(timeout=T)
            elif how == 2:  # the view raises
                with RawClient(server.port) as client:
                    client.open("/raise")
                    client.send(frame(TEXT, b"go"))
                    client.read_until_close()
            else:  # reset
                client = RawClient(server.port).open("/echo")
                client.sock.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                )
                client.sock.close()

    # gthread's pool keeps every thread it starts (up to --threads, 64 here):
    # fill it once, so that later rounds cannot grow it and only a leak of
    # ours could move the count.
    with contextlib.ExitStack() as stack:
        for _ in range(63):
            ws = stack.enter_context(connect(f"{server.ws}/wait-done", open_timeout=T))
            assert ws.recv(timeout=T) == "ready"
    churn(50)
    deadline = time.monotonic() + T
    while connection_threads() and time.monotonic() < deadline:
        time.sleep(0.05)  # the server offers no event for "threads ended"
    baseline = len(server.threads())
    for _ in range(4):
        churn(50)
    deadline = time.monotonic() + T
    while time.monotonic() < deadline and (
        connection_threads() or abs(len(server.threads()) - baseline) > 2
    ):
        time.sleep(0.05)
    assert connection_threads() == 0
    assert abs(len(server.threads()) - baseline) <= 2, json.dumps(server.threads())


def ready_clients(stack: contextlib.ExitStack, server: Server, count: int) -> list[Any]:
    """``count`` clients of /wait-done, each told "ready" by its view."""
    clients = [
        stack.enter_context(connect(f"{server.ws}/wait-done", open_timeout=T)) for _ in range(count)
    ]
    for ws in clients:
        assert ws.recv(timeout=T) == "ready"
    return clients


def close_codes_after_sigterm(server: Server, clients: list[Any]) -> list[int | None]:
    """SIGTERM the server; the close code each client then receives."""
    server.process.send_signal(signal.SIGTERM)  # type: ignore[attr-defined]
    codes = []
    for ws in clients:
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=T)
        codes.append(closed.value.rcvd.code if closed.value.rcvd else None)
    return codes


def test_sigterm_over_the_default_handler_closes_every_connection_with_1001(
    tmp_path: Path,
) -> None:
    """werkzeug, where SIGTERM's handler was Python's default (end the
    process at once): the clients get 1001 before the process ends."""
    env = {"FSC_TEST_SIGTERM_HANDLER": "1"}
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(werkzeug_process_server(tmp_path / "log", env=env))
        clients = ready_clients(stack, server, 3)
        assert close_codes_after_sigterm(server, clients) == [1001] * 3
        # Then it ends as SIGTERM's default handling would have.
        assert server.process.wait(T) == -signal.SIGTERM  # type: ignore[attr-defined]


def test_sigterm_closes_every_connection_with_1001_at_once(tmp_path: Path) -> None:
    config = str(ROOT / "examples" / "gunicorn.conf.py")
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(gunicorn_server(tmp_path / "log", extra=("-c", config)))
        clients = ready_clients(stack, server, 20)
        started = time.monotonic()
        codes = close_codes_after_sigterm(server, clients)
        elapsed = time.monotonic() - started
        assert codes == [1001] * 20
        assert elapsed < 5  # the graceful timeout is 10 s: closed at its start
        assert server.process.wait(wait_time(10)) == 0  # type: ignore[attr-defined]
