"""The view's lifetime and close codes (SPEC §2, §5), on both servers."""

from __future__ import annotations

import contextlib
import socket
import struct
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed

from tests.client import connect
from tests.conftest import SERVERS, Server, wait_time
from tests.wire import BINARY, CLOSE, TEXT, RawClient, close_frame, frame

T = wait_time(5)


def key() -> str:
    return uuid.uuid4().hex


def finish(client: RawClient) -> bytes:
    """Answer the server's close frame; return every byte after it."""
    client.send(close_frame(1000))
    return client.read_rest()


def test_view_return_flushes_queued_messages_then_closes_with_1000(server: Server) -> None:
    entry = key()
    with RawClient(server.port) as client:
        client.open(f"/return-after/5?id={entry}")
        client.send(frame(TEXT, b"go"))
        frames = client.read_until_close()
        assert [f.text for f in frames[:-1]] == [f"go-{i}" for i in range(5)]
        assert frames[-1].close_code == 1000
        assert finish(client) == b""  # no stray HTTP response after the session
    result = server.journal(entry)
    assert result == {
        "done": True,
        "errors": [],
        "close_code": 1000,
        "close_reason": "",
        "threads_alive": [],
    }


def test_view_raise_closes_with_1011_and_logs_the_traceback(server: Server) -> None:
    entry = key()
    with RawClient(server.port) as client:
        client.open(f"/raise?id={entry}")
        client.send(frame(TEXT, b"go"))
        frames = client.read_until_close()
        assert frames[-1].close_code == 1011
        assert finish(client) == b""  # no HTML 500 page on the socket
    result = server.journal(entry)
    assert result["errors"] == []
    assert result["close_code"] == 1011
    log = server.wait_log("RuntimeError: view failed on purpose")
    assert "Traceback (most recent call last)" in log


@pytest.mark.parametrize("code", [1000, 1001, 4001])
def test_disconnect_closes_with_the_code_and_ignores_a_second(server: Server, code: int) -> None:
    entry = key()
    with RawClient(server.port) as client:
        client.open(f"/disconnect/{code}?id={entry}")
        client.send(frame(TEXT, b"go"))
        frames = client.read_until_close()
        assert frames[0].text == "before close"
        assert frames[-1].payload == struct.pack("!H", code) + b"bye"
        assert finish(client) == b""
    result = server.journal(entry)
    assert result["second_put"] < 0.5
    assert result["put_after"] == "Closed"
    assert result["close_code"] == code
    assert result["errors"] == []


def test_connection_close_sends_code_and_reason(server: Server) -> None:
    entry = key()
    with connect(f"{server.ws}/close/4002?id={entry}", open_timeout=T) as ws:
        ws.send("go")
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=T)
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4002, "closing on purpose")
    assert server.journal(entry)["close_code"] == 4002


@pytest.mark.parametrize(
    ("code", "error"),
    [(1000, None), (1001, None), (4005, "ConnectionClosedError"), (1011, "ConnectionClosedError")],
)
def test_peer_close_is_echoed_and_only_error_codes_are_errors(
    server: Server, code: int, error: str | None
) -> None:
    entry = key()
    with RawClient(server.port) as client:
        client.open(f"/probe?id={entry}")
        client.send(close_frame(code, b"peer says bye"))
        reply = client.read_frame()
        assert reply.opcode == CLOSE
        assert reply.close_code == code
        assert client.read_rest() == b""  # the server closes TCP first
    result = server.journal(entry)
    assert result["close_code"] == code
    assert result["errors"] == ([{"type": error, "code": code, "raw": None}] if error else [])
    assert result["threads_alive"] == []


def test_closed_escaping_the_view_after_the_close_is_a_normal_end(server: Server) -> None:
    entry = key()
    with RawClient(server.port) as client:
        client.open(f"/put-after-close?id={entry}")
        client.send(close_frame(1000))
        assert client.read_frame().close_code == 1000
    assert server.journal(entry)["close_code"] == 1000
    server.wait_log("/put-after-close: closed by peer (1000)")
    with RawClient(server.port) as client:  # the request of the view above has ended
        client.open("/echo")
    assert "/put-after-close: view raised" not in server.log()


def test_peer_close_without_code_is_answered_without_code(server: Server) -> None:
    entry = key()
    with RawClient(server.port) as client:
        client.open(f"/probe?id={entry}")
        client.send(close_frame(None))
        reply = client.read_frame()
        assert (reply.opcode, reply.payload) == (CLOSE, b"")
    result = server.journal(entry)
    assert result["errors"] == []
    assert result["close_code"] == 1005


def test_messages_before_peer_close_reach_the_view(server: Server) -> None:
    entry = key()
    with RawClient(server.port) as client:
        client.open(f"/probe/json?id={entry}")
        messages = b"".join(frame(TEXT, b'{"user": "u", "text": "%d"}' % i) for i in range(30))
        client.send(messages + close_frame(1000))
        assert client.read_frame().close_code == 1000
    assert server.journal(entry)["received"] == [str(i) for i in range(30)]


def test_message_too_big_closes_with_1009_and_reports_it(server: Server) -> None:
    entry = key()
    with RawClient(server.port) as client:
        client.open(f"/probe?id={entry}")
        client.send(frame(TEXT, b"small"))
        assert client.read_frame().text == "small"
        client.send(frame(TEXT, b"x" * 2000))
        assert client.read_frame().close_code == 1009
        assert client.read_rest() == b""  # TCP closed right after the close frame
    result = server.journal(entry)
    assert result["errors"] == [{"type": "MessageTooBig", "code": 1009, "raw": None}]
    assert result["close_code"] == 1009


def test_fragmented_message_too_big_closes_with_1009(server: Server) -> None:
    with RawClient(server.port) as client:
        client.open("/probe")
        client.send(frame(TEXT, b"x" * 600, fin=False) + frame(0, b"y" * 600))
        assert client.read_frame().close_code == 1009


def test_invalid_utf8_text_closes_with_1007(server: Server) -> None:
    entry = key()
    with RawClient(server.port) as client:
        client.open(f"/probe?id={entry}")
        client.send(frame(TEXT, b"ok \xff\xfe"))
        assert client.read_frame().close_code == 1007
    result = server.journal(entry)
    assert result["errors"] == [{"type": "ProtocolError", "code": 1007, "raw": None}]


def test_invalid_utf8_binary_in_text_mode_closes_with_1007(server: Server) -> None:
    with RawClient(server.port) as client:
        client.open("/probe")
        client.send(frame(BINARY, b"\xc3\x28"))
        assert client.read_frame().close_code == 1007


@pytest.mark.parametrize(
    "bad",
    [
        frame(TEXT, b"unmasked", mask=False),
        frame(TEXT, b"reserved bit", rsv=1),
        frame(0x3, b"reserved opcode"),
        frame(CLOSE, struct.pack("!H", 1005)),
        frame(0x9, b"p" * 126),  # control frame too long
    ],
    ids=["unmasked", "rsv", "opcode", "close-1005", "long-ping"],
)
def test_protocol_violation_closes_with_1002(server: Server, bad: bytes) -> None:
    entry = key()
    with RawClient(server.port) as client:
        client.open(f"/probe?id={entry}")
        client.send(bad)
        assert client.read_frame().close_code == 1002
        assert client.read_rest() == b""
    result = server.journal(entry)
    assert result["errors"] == [{"type": "ProtocolError", "code": 1002, "raw": None}]


@pytest.mark.parametrize("how", ["eof", "reset"])
def test_peer_vanishing_reports_1006_and_sets_done(server: Server, how: str) -> None:
    entry = key()
    client = RawClient(server.port).open(f"/probe?id={entry}")
    client.send(frame(TEXT, b"hi"))
    assert client.read_frame().text == "hi"
    if how == "reset":
        client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.sock.close()
    result = server.journal(entry, timeout=1)
    assert result["done"] is True
    assert result["errors"] == [{"type": "ConnectionClosedError", "code": 1006, "raw": None}]
    assert result["close_code"] == 1006


def test_ping_is_answered_with_pong(server: Server) -> None:
    with RawClient(server.port) as client:
        client.open("/echo")
        client.send(frame(0x9, b"are you there"))
        pong = client.read_frame()
        assert (pong.opcode, pong.payload) == (0xA, b"are you there")


def test_an_idle_connection_has_no_library_thread_of_its_own(server: Server) -> None:
    # Only the request thread that runs the view: the socket is parked with
    # the process's poller (tests/test_parking.py). A writer thread exists
    # only while a backlog does.
    with connect(f"{server.ws}/wait-done", open_timeout=T) as ws:
        assert ws.recv(timeout=T) == "ready"
        names = [n for n in server.threads() if n.startswith("ws-") and "/wait-done" in n]
    assert names == []


def test_without_parking_an_idle_connection_has_one_library_thread_named_after_it(
    server: Server,
) -> None:
    # idle_reader_timeout=None: a reader thread for the connection's life.
    with connect(f"{server.ws}/wait-done/reader", open_timeout=T) as ws:
        assert ws.recv(timeout=T) == "ready"
        names = [n for n in server.threads() if n.startswith("ws-") and "/wait-done" in n]
    assert len(names) == 1
    assert names[0].endswith(" reader")


def test_close_all_closes_every_connection_with_1001(server: Server) -> None:
    with contextlib.ExitStack() as stack:
        clients = [
            stack.enter_context(connect(f"{server.ws}/wait-done", open_timeout=T)) for _ in range(3)
        ]
        for ws in clients:
            assert ws.recv(timeout=T) == "ready"
        status, count = server.get("/_close_all")
        assert status == 200
        assert int(count) >= 3
        for ws in clients:
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=T)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001


@pytest.fixture(params=["werkzeug", "gunicorn"])
def fresh_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    with SERVERS[request.param](tmp_path / "server.log") as running:
        yield running


def test_no_error_logged_for_normal_closes(fresh_server: Server) -> None:
    for path in ["/echo", "/return-after/2"]:
        with connect(f"{fresh_server.ws}{path}", open_timeout=T) as ws:
            ws.send("x")
            ws.recv(timeout=T)
    entry = key()
    with RawClient(fresh_server.port) as client:
        client.open(f"/probe?id={entry}")
        client.send(close_frame(1000))
        client.read_frame()
    fresh_server.journal(entry)
    log = fresh_server.log()
    gunicorn_log = fresh_server.log_path.with_suffix(".gunicorn.log")
    if gunicorn_log.exists():
        log += gunicorn_log.read_text()
    assert "closed by peer (1000)" in log
    bad = [
        line
        for line in log.splitlines()
        if line.startswith(("ERROR", "WARNING", "CRITICAL"))
        or "Traceback" in line
        or "[ERROR]" in line
    ]
    assert bad == []


# -- frames held back while the view has messages to read ------------------------


def burst(*texts: str) -> bytes:
    """Text frames in one write: they reach ``receiver`` together."""
    return b"".join(frame(TEXT, text.encode()) for text in texts)


def test_an_answer_held_back_for_the_next_goes_out_when_none_comes(server: Server) -> None:
    """A view answers the first message of a burst (its answer is held back
    for the next one) and then blocks: the answer still arrives, long before
    the view goes on, and the rest follow in order."""
    entry = key()
    with RawClient(server.port, timeout=T) as client:
        client.open(f"/held/answer-then-wait?id={entry}")
        client.send(burst("a", "b", "c"))
        first = client.read_frame()  # times out (T) if the answer waits with the view
        assert first.text == "answer:a waiting:2"  # the held-back path was taken
        assert server.get(f"/_release/{entry}")[0] == 200
        assert [client.read_frame().text for _ in range(2)] == ["answer:b", "answer:c"]
        client.send(close_frame(1000))
        assert client.read_frame().close_code == 1000


def test_answers_held_back_go_out_before_the_close_when_the_view_returns(
    server: Server,
) -> None:
    with RawClient(server.port, timeout=T) as client:
        client.open("/held/answer-then-return")
        client.send(burst("a", "b", "c"))
        frames = client.read_until_close()
        assert [f.text for f in frames[:-1]] == ["answer:a waiting:2"]
        assert frames[-1].close_code == 1000
        assert finish(client) == b""
