"""User callbacks on library threads: one that raises is logged once with
its traceback and changes nothing else, in the reader, the writer and the
process-wide timer thread (the hub's reader: tests/test_hub*.py). And the
log lines a peer can make us repeat are capped per connection."""

from __future__ import annotations

import json
import re
import uuid

import pytest

from flask_sockets_channels import loglimit
from tests.client import connect
from tests.conftest import Server, wait_time
from tests.wire import CLOSE, PING, TEXT, RawClient, frame

T = wait_time(5)


def key() -> str:
    return uuid.uuid4().hex


def assert_logged_once_with_traceback(server: Server, name: str) -> None:
    log = server.wait_log(f"{name}: on_error callback")
    lines = [
        line for line in log.splitlines()
        if line.startswith("ERROR ") and f"{name}: on_error callback" in line
    ]  # fmt: skip
    assert len(lines) == 1, lines
    after = log[log.index(lines[0]) :]
    assert after.splitlines()[1] == "Traceback (most recent call last):"
    assert "RuntimeError: the user's on_error callback raised" in after


def test_a_raising_callback_in_the_timer_thread_leaves_keepalive_running(server: Server) -> None:
    entry = key()
    with RawClient(server.port) as silent:
        silent.open(f"/callback/keepalive?id={entry}")
        assert silent.read_frame().text == "ready"
        frames = silent.read_until_close()  # never answers the pings
        assert frames[-1].close_code == 1011
    result = server.journal(entry)
    assert result["done"] is True
    assert result["close_code"] == 1011
    assert result["errors"] == ["KeepaliveTimeout"]
    assert result["callback_threads"] == ["flask-sockets-channels timers"]
    assert_logged_once_with_traceback(server, result["name"])
    # The timer thread serves every connection of the process: it still
    # sends the next connection its pings.
    with RawClient(server.port) as later:
        later.open("/keepalive")
        assert later.read_frame().text == "ready"
        assert later.read_frame().opcode == PING


def test_a_raising_callback_in_the_writer_thread_still_cuts_the_connection(
    server: Server,
) -> None:
    entry = key()
    client = RawClient(server.port).open(f"/callback/write-timeout?id={entry}")
    try:
        # Read nothing: the server's write blocks, then times out.
        result = server.journal(entry, timeout=15)
    finally:
        client.sock.close()
    assert result["done"] is True
    assert result["close_code"] == 1006
    assert result["errors"] == ["WriteTimeout"]
    assert result["put_raised"] == "Closed"
    assert result["callback_threads"] == [f"{result['name']} writer"]
    assert_logged_once_with_traceback(server, result["name"])


@pytest.mark.parametrize("parked", [False, True], ids=["reader thread", "parked"])
def test_a_raising_callback_in_the_reader_leaves_the_connection_open(
    server: Server, parked: bool
) -> None:
    entry = key()
    route = "/callback/decode/parked" if parked else "/callback/decode"
    with connect(f"{server.ws}{route}?id={entry}", open_timeout=T) as ws:
        assert json.loads(ws.recv(timeout=T)) == "ready"
        ws.send("not json")
        ws.send(json.dumps({"user": "ann", "text": "still here"}))
        assert json.loads(ws.recv(timeout=T)) == {"user": "ann", "text": "still here"}
    result = server.journal(entry)
    assert result["done"] is True
    assert result["close_code"] == 1000
    assert result["errors"] == ["DecodeError"]
    (thread,) = result["callback_threads"]
    if parked:
        # The view's thread, in its get; a worker of the poller if the
        # message came before the get took the socket.
        assert thread in (result["view_thread"], "flask-sockets-channels reader")
    else:
        assert thread == f"{result['name']} reader"
    assert_logged_once_with_traceback(server, result["name"])


def test_a_flood_of_undecodable_messages_logs_a_few_lines_and_says_how_many_it_left_out(
    server: Server,
) -> None:
    """5,000 one-byte messages that do not decode, and ``errors`` never read:
    each is a DecodeError (the first 64 are held on ``errors``), but the log
    has a few lines for them, then the count of those left out."""
    entry = key()
    count = 5000
    with RawClient(server.port) as client:
        client.open(f"/flood/undecodable?id={entry}")
        client.send(b"".join(frame(TEXT, b"x") for _ in range(count)))
        client.send(frame(TEXT, json.dumps({"user": "ann", "text": "after"}).encode()))
        echoed = client.read_frame()
        assert json.loads(echoed.text) == {"user": "ann", "text": "after"}
        client.send(frame(CLOSE, b"\x03\xe8"))
        assert client.read_until_close()[-1].close_code == 1000
    result = server.journal(entry)
    assert result["done"] is True
    assert result["errors_held"] == 64
    name = result["name"]
    log = server.log()  # the last line was written before `done` was set
    lines = [line for line in log.splitlines() if f"{name}:" in line]
    capped = [line for line in lines if "DecodeError" in line or "errors channel full" in line]
    # LOG_BURST in a row, then one per LOG_INTERVAL / LOG_BURST seconds.
    assert loglimit.LOG_BURST <= len(capped) <= loglimit.LOG_BURST + 2, capped
    told = sum(int(n) for n in re.findall(r"\((\d+) similar lines left out\)", log))
    (summary,) = [line for line in lines if "left out (log limit)" in line]
    left_out = int(summary.split(" more lines left out")[0].rsplit(" ", 1)[1])
    # Every DecodeError, and every one dropped from the full channel, is a
    # line written or counted.
    assert len(capped) + told + left_out == count + (count - 64)
