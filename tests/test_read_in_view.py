"""A view waiting in ``receiver.get`` reads its parked socket itself.

With ``idle_reader_timeout`` set, a connection's socket is parked with the
process's poller while idle; a view whose ``get`` is about to wait takes it
back and reads it in its own thread (for up to ``READ_IN_VIEW`` seconds),
so that a request-response exchange costs no thread hand-off. Here the
window is made long, so that the test knows the view is reading: each
message's model records the thread that decoded it. Between two ``get``
calls the socket is held, watched by nobody, until the poller parks it
(within ``parking.HOLD_FOR``) or the connection closes. In process, with
the test client (the socket pair's server end is a real socket).
"""

from __future__ import annotations

import queue
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask

import flask_sockets_channels as sockets
from flask_sockets_channels import Connection, connection, parking
from flask_sockets_channels.exceptions import ConnectionClosed
from flask_sockets_channels.testing import WebSocketSession, WebSocketTestClient
from tests.conftest import until, wait_time

T = wait_time(5)


class Seen:
    """A message's model: its number, and the thread that decoded it."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.thread = threading.get_ident()


class Endpoint:
    """An app whose view answers ``{"n": n}`` to each message and records,
    for each, whether its own thread decoded it."""

    def __init__(self, **options: Any) -> None:
        self.app = Flask(__name__)
        sockets.Sockets(self.app)
        self.read_in_view: queue.Queue[bool] = queue.Queue()
        self.connections: queue.Queue[Connection] = queue.Queue()
        self.ended = threading.Event()
        self.go_on = threading.Event()

        @self.app.route("/works")
        @sockets.json_messages(Seen, idle_reader_timeout=0.1, **options)
        def works(receiver, sender, connection):  # type: ignore[no-untyped-def]
            """Answers one message, then works (waits for ``go_on``)."""
            self.connections.put(connection)
            item = receiver.get()
            sender.put({"n": item.n})
            self.go_on.wait(T)
            self.ended.set()

        @self.app.route("/once")
        @sockets.json_messages(Seen, idle_reader_timeout=0.1, **options)
        def once(receiver, sender, connection):  # type: ignore[no-untyped-def]
            """Answers one message and returns: the library closes (1000)."""
            self.connections.put(connection)
            sender.put({"n": receiver.get().n})

        @self.app.route("/seen")
        @sockets.json_messages(Seen, idle_reader_timeout=0.1, **options)
        def seen(receiver, sender, connection):  # type: ignore[no-untyped-def]
            self.connections.put(connection)
            for item in receiver:
                self.read_in_view.put(item.thread == threading.get_ident())
                sender.put({"n": item.n})
            self.ended.set()

        @self.app.route("/batches")
        @sockets.json_messages(Seen, idle_reader_timeout=0.1, **options)
        def batches(receiver, sender, connection):  # type: ignore[no-untyped-def]
            """Answers each ``get_many`` with the numbers it returned."""
            self.connections.put(connection)
            while True:
                try:
                    items = receiver.get_many()
                except sockets.Closed:
                    break
                sender.put({"batch": [item.n for item in items]})
            self.ended.set()

        @self.app.route("/tasks")
        @sockets.json_messages(Seen, idle_reader_timeout=0.1, **options)
        def tasks(receiver, sender, connection):  # type: ignore[no-untyped-def]
            """Marks each message done, and answers with what is unfinished."""
            self.connections.put(connection)
            for item in receiver:
                receiver.task_done()
                receiver.join()  # returns at once: nothing else was put
                sender.put({"n": item.n, "unfinished": receiver.unfinished_tasks})
            self.ended.set()

    def reading(self, conn: Connection) -> None:
        """Until the view reads the socket in its ``get``."""
        until(lambda: conn._reader._in_view, "the view reads the socket", T, 0.005)


@pytest.fixture(autouse=True)
def long_window(monkeypatch: pytest.MonkeyPatch) -> None:
    # The view reads until a message comes, however slow the machine.
    monkeypatch.setattr(connection, "READ_IN_VIEW", T)


@pytest.fixture
def endpoint() -> Endpoint:
    return Endpoint()


@pytest.fixture
def session(endpoint: Endpoint) -> Iterator[tuple[WebSocketSession, Connection]]:
    with WebSocketTestClient(endpoint.app, timeout=T).connect("/seen") as ws:
        yield ws, endpoint.connections.get(timeout=T)


pytestmark = pytest.mark.skipif(not parking.available(), reason="parking needs epoll (Linux)")


def test_a_waiting_view_reads_each_message_in_its_own_thread(
    endpoint: Endpoint, session: tuple[WebSocketSession, Connection]
) -> None:
    ws, conn = session
    for n in range(3):
        endpoint.reading(conn)
        ws.send_json({"n": n})
        assert ws.receive_json() == {"n": n}
        assert endpoint.read_in_view.get(timeout=T) is True


def test_what_does_not_fit_on_receiver_is_delivered_by_a_worker_in_order() -> None:
    """Six messages in one read, room for one: the view takes the first and
    leaves the rest to a worker of the poller, which waits for room."""
    endpoint = Endpoint(recv_channel_buffer=1)
    with WebSocketTestClient(endpoint.app, timeout=T).connect("/seen") as ws:
        conn = endpoint.connections.get(timeout=T)
        endpoint.reading(conn)
        for n in range(6):
            ws._protocol.send_text(f'{{"n": {n}}}'.encode())
        ws._sock.sendall(b"".join(ws._protocol.data_to_send()))  # one write
        assert [ws.receive_json()["n"] for _ in range(6)] == list(range(6))
    assert [endpoint.read_in_view.get(timeout=T) for _ in range(6)] == [True] * 6


def test_a_burst_read_by_the_view_comes_out_of_get_many_whole_and_in_order(
    endpoint: Endpoint,
) -> None:
    """The first message of a read is handed to the reading ``get`` and the
    rest put on ``receiver``: ``get_many`` returns them all, in order."""
    with WebSocketTestClient(endpoint.app, timeout=T).connect("/batches") as ws:
        conn = endpoint.connections.get(timeout=T)
        for round_ in range(3):
            endpoint.reading(conn)
            numbers = list(range(round_ * 5, round_ * 5 + 5))
            for n in numbers:
                ws._protocol.send_text(f'{{"n": {n}}}'.encode())
            ws._sock.sendall(b"".join(ws._protocol.data_to_send()))  # one write
            got: list[int] = []
            while len(got) < len(numbers):
                got += ws.receive_json()["batch"]
            assert got == numbers


def test_messages_read_by_the_view_count_for_task_done_and_join(endpoint: Endpoint) -> None:
    """A message handed straight to the reading ``get`` counts as put, as
    one taken from the channel does: ``task_done`` never raises, ``join``
    returns once each is done."""
    with WebSocketTestClient(endpoint.app, timeout=T).connect("/tasks") as ws:
        conn = endpoint.connections.get(timeout=T)
        for n in range(3):
            endpoint.reading(conn)
            ws.send_json({"n": n})
            assert ws.receive_json() == {"n": n, "unfinished": 0}
    assert endpoint.ended.wait(T)
    assert conn.errors.empty()


def test_a_close_read_by_the_view_ends_the_connection(
    endpoint: Endpoint, session: tuple[WebSocketSession, Connection]
) -> None:
    ws, conn = session
    endpoint.reading(conn)
    ws.close(1000, "bye")
    assert endpoint.ended.wait(T)
    assert conn.done.wait(T)
    assert conn.close_code == 1000
    assert not parking.lot.parked(conn._sock)


def test_a_peer_that_goes_away_while_the_view_reads_ends_the_connection(
    endpoint: Endpoint, session: tuple[WebSocketSession, Connection]
) -> None:
    ws, conn = session
    endpoint.reading(conn)
    ws._sock.shutdown(socket.SHUT_RDWR)  # TCP closed, no close frame
    assert endpoint.ended.wait(T)
    assert conn.done.wait(T)
    assert conn.close_code == 1006


def test_with_a_rate_limit_the_view_never_reads() -> None:
    """A rate limit's pauses are a reader's: the view waits as before."""
    endpoint = Endpoint(rate_limit=(100, 1.0))
    with WebSocketTestClient(endpoint.app, timeout=T).connect("/seen") as ws:
        conn = endpoint.connections.get(timeout=T)
        until(lambda: parking.lot.parked(conn._sock), "parked", T, 0.005)
        for n in range(2):
            ws.send_json({"n": n})
            assert ws.receive_json() == {"n": n}
    assert [endpoint.read_in_view.get(timeout=T) for _ in range(2)] == [False, False]


def test_a_view_that_works_after_a_message_leaves_its_socket_to_the_poller(
    endpoint: Endpoint,
) -> None:
    """The socket held after the view's ``get`` is parked by the poller's
    next sweep: the peer's close is read while the view still works."""
    with WebSocketTestClient(endpoint.app, timeout=T).connect("/works") as ws:
        conn = endpoint.connections.get(timeout=T)
        endpoint.reading(conn)
        ws.send_json({"n": 0})
        assert ws.receive_json() == {"n": 0}
        assert endpoint.read_in_view.empty()  # no queue here: the view works
        ws._protocol.send_close(1000, "")
        ws._sock.sendall(b"".join(ws._protocol.data_to_send()))
        with pytest.raises(ConnectionClosed):
            ws.receive()  # the server's answer: a worker read our close
        assert ws.close_code == 1000
        assert not endpoint.ended.is_set()  # the view still works
        endpoint.go_on.set()
        assert endpoint.ended.wait(T)
    assert conn.done.wait(T)
    assert conn.close_code == 1000


@pytest.fixture
def no_sweeps(monkeypatch: pytest.MonkeyPatch) -> Iterator[parking.ParkingLot]:
    """A poller of the test's own that never sweeps (an hour apart); its
    threads are gone when the test ends."""
    lot = parking.ParkingLot()
    monkeypatch.setattr(parking, "lot", lot)
    monkeypatch.setattr(parking, "HOLD_FOR", 3600.0)
    monkeypatch.setattr(parking, "WORKER_IDLE", 0.1)
    yield lot
    until(lambda: lot._epoll is None and lot._workers == 0, "the test's poller gone", T)


def test_closing_parks_a_held_socket_at_once(no_sweeps: parking.ParkingLot) -> None:
    """The view returns right after its ``get``: the library's close must
    not wait for a sweep to read the peer's answer, nor for
    ``close_timeout`` (made longer than the test waits)."""
    endpoint = Endpoint(close_timeout=3600)
    with WebSocketTestClient(endpoint.app, timeout=T).connect("/once") as ws:
        conn = endpoint.connections.get(timeout=T)
        endpoint.reading(conn)
        ws.send_json({"n": 0})
        assert ws.receive_json() == {"n": 0}
        with pytest.raises(ConnectionClosed):
            ws.receive()  # the server's close; the client answers it
        assert conn.done.wait(T)
        assert conn.close_code == 1000


@pytest.fixture
def short_window(monkeypatch: pytest.MonkeyPatch) -> None:
    # The view soon parks its socket for itself and waits to be woken.
    monkeypatch.setattr(connection, "READ_IN_VIEW", 0.01)


def parked_for_the_view(conn: Connection) -> None:
    until(lambda: conn.receiver._view_parked, "the socket parked for the view", T, 0.005)


@pytest.mark.usefixtures("short_window")
def test_a_view_waiting_past_its_window_is_woken_to_read_itself(endpoint: Endpoint) -> None:
    """After the window the socket is parked for the view's ``get``: the
    poller wakes that ``get``, which reads, instead of a worker."""
    with WebSocketTestClient(endpoint.app, timeout=T).connect("/seen") as ws:
        conn = endpoint.connections.get(timeout=T)
        for n in range(3):
            parked_for_the_view(conn)
            ws.send_json({"n": n})
            assert ws.receive_json() == {"n": n}
            assert endpoint.read_in_view.get(timeout=T) is True


@pytest.mark.usefixtures("short_window")
def test_closing_wakes_a_view_waiting_to_be_woken(endpoint: Endpoint) -> None:
    """``receiver.close()`` wakes every blocked ``get`` (SPEC), one waiting
    for its parked socket too, before the peer has answered the close."""
    with WebSocketTestClient(endpoint.app, timeout=T).connect("/seen") as ws:
        conn = endpoint.connections.get(timeout=T)
        parked_for_the_view(conn)
        conn.close(1001)
        assert endpoint.ended.wait(T)  # the client has not read anything yet
        with pytest.raises(ConnectionClosed):
            ws.receive()
    assert conn.done.wait(T)
    assert conn.close_code == 1001
