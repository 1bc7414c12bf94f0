"""Operating at capacity: connection limits (503 / 429 before the 101), the
rate limit, and a thread budget that plain HTTP keeps a share of."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import struct
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable

import pytest
from flask import Flask
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.http11 import Response
from websockets.sync.client import ClientConnection

import flask_sockets_channels as sockets
from flask_sockets_channels import Options, limits
from flask_sockets_channels.testing import HandshakeRejected, WebSocketTestClient
from tests.capacity_app import create_app
from tests.client import connect
from tests.conftest import (
    Server,
    capacity_server,
    gunicorn_server,
    redis_server,
    serve_app,
    wait_time,
)
from tests.wire import TEXT, RawClient, close_frame, frame

# -- options ----------------------------------------------------------------


def test_limits_are_off_by_default() -> None:
    options = Options()
    assert options.max_connections is None
    assert options.max_connections_per_client is None
    assert options.rate_limit is None


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        ((50, 1.0), (50.0, 1.0)),
        ([200, 2], (200.0, 2.0)),  # a list, as JSON config gives it
        ((5, timedelta(milliseconds=500)), (5.0, 0.5)),
        ((0.5, 1), (0.5, 1.0)),
        (None, None),
    ],
)
def test_rate_limit_is_messages_per_seconds(value: Any, stored: Any) -> None:
    assert Options(rate_limit=value).rate_limit == stored


@pytest.mark.parametrize(
    "value",
    [(0, 1.0), (10, 0), (-1, 1.0), (10, -1), (True, 1.0), (10,), (1, 2, 3), "50/s", 50,
     (float("inf"), 1.0), (10, float("nan"))],
)  # fmt: skip
def test_invalid_rate_limit_raises_at_decoration(value: Any) -> None:
    with pytest.raises(ValueError, match="rate_limit must be"):
        sockets.messages(rate_limit=value)


@pytest.mark.parametrize(
    ("name", "bad"),
    [
        ("max_connections", -1),
        ("max_connections", 1.5),
        ("max_connections", True),
        ("max_connections", "10"),
        ("max_connections_per_client", 0),
        ("max_connections_per_client", -3),
        ("max_connections_per_client", 2.0),
    ],
)
def test_invalid_connection_limits_raise_at_decoration(name: str, bad: Any) -> None:
    with pytest.raises(ValueError, match=name):
        sockets.messages(**{name: bad})


def test_zero_max_connections_is_accepted() -> None:
    assert Options(max_connections=0).max_connections == 0


def test_limits_come_from_app_config() -> None:
    app = Flask(__name__)
    app.config.update(
        SOCKETS_MAX_CONNECTIONS=15,
        SOCKETS_MAX_CONNECTIONS_PER_CLIENT=3,
        SOCKETS_RATE_LIMIT=[50, 1],
    )

    @app.route("/config")
    @sockets.messages()
    def from_config(receiver: Any) -> None:
        pass

    @app.route("/override")
    @sockets.messages(max_connections=2, rate_limit=None)
    def overridden(receiver: Any) -> None:
        pass

    sockets.Sockets(app)
    config = from_config.__sockets_channels__.options_for(app)  # type: ignore[attr-defined]
    assert (config.max_connections, config.max_connections_per_client) == (15, 3)
    assert config.rate_limit == (50.0, 1.0)
    override = overridden.__sockets_channels__.options_for(app)  # type: ignore[attr-defined]
    assert (override.max_connections, override.max_connections_per_client) == (2, 3)
    assert override.rate_limit is None


def test_invalid_limit_in_config_raises_at_init_app() -> None:
    app = Flask(__name__)
    app.config["SOCKETS_MAX_CONNECTIONS"] = -5
    with pytest.raises(ValueError, match="max_connections"):
        sockets.Sockets(app)


# -- connection limits on real servers ----------------------------------------

T = wait_time(5)
MAX_TOTAL = 5  # the capacity app's max_total_connections in these tests


@pytest.fixture(scope="module", params=["werkzeug", "gunicorn"])
def cap_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """The capacity app, with ``max_total_connections=MAX_TOTAL``."""
    log_path = tmp_path_factory.mktemp("cap-" + request.param) / "server.log"
    with capacity_server(request.param, log_path, max_total=MAX_TOTAL) as running:
        yield running


@contextlib.contextmanager
def open_ready(server: Server, path: str, source: str = "127.0.0.1") -> Iterator[ClientConnection]:
    """A connection from ``source`` (any 127.x address works on loopback)
    whose view has started (it sent "ready")."""
    with (
        contextlib.closing(_socket_from(server, source)) as sock,
        _connect(server, path, sock) as ws,
    ):
        assert ws.recv(timeout=T) == "ready"
        yield ws


def refusal(server: Server, path: str, source: str = "127.0.0.1") -> Response:
    """The HTTP response that refused a handshake from ``source``."""
    with contextlib.closing(_socket_from(server, source)) as sock:
        try:
            with _connect(server, path, sock):
                pass
        except InvalidStatus as exc:
            return exc.response
    raise AssertionError(f"{path}: the handshake was accepted; a refusal was expected")


def _socket_from(server: Server, source: str) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), T, source_address=(source, 0))


def _connect(server: Server, path: str, sock: socket.socket | None = None) -> ClientConnection:
    # close_timeout: websockets 13's client (the min env) may wait it out
    # after a refused handshake whose answer came in one read with the EOF.
    return connect(f"{server.ws}{path}", sock=sock, open_timeout=T, close_timeout=wait_time(1))


def wait_idle(server: Server) -> None:
    """Wait until every connection the server has open is done."""
    status, body = server.get(f"/_wait_idle?timeout={T}", timeout=T + 5)
    assert status == 200, "connections still open on the server"
    assert json.loads(body) == 0


def server_stats(server: Server) -> dict[str, Any]:
    return json.loads(server.get("/_stats")[1])  # type: ignore[no-any-return]


def test_past_max_connections_the_handshake_is_503_with_retry_after(cap_server: Server) -> None:
    with contextlib.ExitStack() as stack:
        for _ in range(3):
            stack.enter_context(open_ready(cap_server, "/held"))
        runs = server_stats(cap_server)["view_runs"]["held"]
        response = refusal(cap_server, "/held")
        assert response.status_code == 503
        assert response.headers["Retry-After"] == str(limits.RETRY_AFTER)
        assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
        assert response.body == b"503 Service Unavailable: too many connections; try again later\n"
        assert server_stats(cap_server)["view_runs"]["held"] == runs  # the view did not run
    wait_idle(cap_server)
    log = cap_server.wait_log("handshake refused (503): held is at max_connections=3")
    assert "Traceback" not in log


def test_past_max_connections_per_client_the_handshake_is_429(cap_server: Server) -> None:
    with contextlib.ExitStack() as stack:
        for _ in range(2):
            stack.enter_context(open_ready(cap_server, "/per-client"))
        response = refusal(cap_server, "/per-client")
        assert response.status_code == 429
        assert response.headers["Retry-After"] == str(limits.RETRY_AFTER)
        assert response.body.startswith(b"429 Too Many Requests: this client has 2 connections")
        # Another client still gets in.
        stack.enter_context(open_ready(cap_server, "/per-client", source="127.0.0.2"))
    wait_idle(cap_server)
    cap_server.wait_log(
        "handshake refused (429): client 127.0.0.1 is at max_connections_per_client=2"
    )


def test_max_total_connections_counts_every_view_together(cap_server: Server) -> None:
    with contextlib.ExitStack() as stack:
        for _ in range(3):
            stack.enter_context(open_ready(cap_server, "/held"))
        for _ in range(MAX_TOTAL - 3):
            stack.enter_context(open_ready(cap_server, "/crowd"))
        # /crowd has no limit of its own, /per-client is under its own:
        # the app's total refuses both.
        assert refusal(cap_server, "/crowd").status_code == 503
        assert refusal(cap_server, "/per-client", source="127.0.0.3").status_code == 503
    wait_idle(cap_server)
    cap_server.wait_log("handshake refused (503): the app is at max_total_connections=5")
    with open_ready(cap_server, "/crowd"):
        pass


def test_a_client_over_its_own_limit_gets_429_even_when_the_server_is_full(
    cap_server: Server,
) -> None:
    with contextlib.ExitStack() as stack:
        for _ in range(2):
            stack.enter_context(open_ready(cap_server, "/per-client"))
        for _ in range(MAX_TOTAL - 2):
            stack.enter_context(open_ready(cap_server, "/held"))
        assert refusal(cap_server, "/per-client").status_code == 429
        assert refusal(cap_server, "/per-client", source="127.0.0.2").status_code == 503
    wait_idle(cap_server)


def _end_by_client_close(ws: ClientConnection) -> None:
    ws.close()


def _end_by_view_return(ws: ClientConnection) -> None:
    ws.send("return")
    with pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=T)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000


def _end_by_view_raising(ws: ClientConnection) -> None:
    ws.send("raise")
    with pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=T)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011


def _end_by_message_too_big(ws: ClientConnection) -> None:
    ws.send("x" * 17)  # max_message_size=16
    with pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=T)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


@pytest.mark.parametrize(
    "end",
    [
        _end_by_client_close,
        _end_by_view_return,
        _end_by_view_raising,
        _end_by_message_too_big,
    ],
)
def test_the_place_is_given_back_when_the_connection_is_done(
    cap_server: Server, end: Callable[[ClientConnection], None]
) -> None:
    with open_ready(cap_server, "/one") as ws:
        assert refusal(cap_server, "/one").status_code == 503
        end(ws)
    wait_idle(cap_server)
    with open_ready(cap_server, "/one") as again:
        again.send("still echoes")
        assert again.recv(timeout=T) == "still echoes"
    wait_idle(cap_server)


def test_a_place_is_held_until_the_view_returns_so_limits_bound_view_threads(
    cap_server: Server,
) -> None:
    """/lingering (max_connections=2) runs on after its connection ended: a
    third client is refused while two such views run, and admitted once
    they have returned."""
    entry = uuid.uuid4().hex
    for _ in range(2):
        with open_ready(cap_server, f"/lingering?id={entry}") as ws:
            ws.send("work")
    status, _ = cap_server.get(f"/_lingering/{entry}?count=2&timeout={T}", timeout=T + 5)
    assert status == 200
    stats = server_stats(cap_server)
    assert stats["open"] == 2
    assert stats["open_by_endpoint"]["lingering"] == 2
    for _ in range(8):
        assert refusal(cap_server, f"/lingering?id={entry}").status_code == 503
    assert cap_server.get(f"/_release/{entry}")[0] == 200
    wait_idle(cap_server)
    with open_ready(cap_server, f"/lingering?id={entry}"):
        pass
    wait_idle(cap_server)


def test_the_place_is_given_back_after_a_tcp_reset(cap_server: Server) -> None:
    client = RawClient(cap_server.port).open("/one")
    try:
        assert client.read_frame().text == "ready"
        assert refusal(cap_server, "/one").status_code == 503
        client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    finally:
        client.sock.close()  # RST, no close frame
    wait_idle(cap_server)
    with open_ready(cap_server, "/one"):
        pass
    wait_idle(cap_server)


def test_two_handshakes_never_both_take_the_last_place(cap_server: Server) -> None:
    attempts = 12
    start = threading.Barrier(attempts)
    accepted: list[ClientConnection] = []
    statuses: list[int] = []
    lock = threading.Lock()
    stack = contextlib.ExitStack()

    def attempt() -> None:
        start.wait(T)
        try:
            ws = _connect(cap_server, "/held")
        except InvalidStatus as exc:
            with lock:
                statuses.append(exc.response.status_code)
        else:
            with lock:
                accepted.append(stack.enter_context(ws))

    threads = [threading.Thread(target=attempt) for _ in range(attempts)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(T * 4)
    try:
        assert not [t for t in threads if t.is_alive()]
        assert len(accepted) == 3
        assert statuses == [503] * (attempts - 3)
    finally:
        stack.close()
    wait_idle(cap_server)


def test_view_limit_works_without_the_extension(tmp_path: Path) -> None:
    app = Flask(__name__)
    done_events: list[threading.Event] = []

    @app.route("/solo", websocket=True)
    @sockets.messages(max_connections=1)
    def solo(sender: Any, receiver: Any, done: threading.Event) -> None:
        done_events.append(done)
        sender.put("ready")
        for _ in receiver:
            pass

    with serve_app(app, tmp_path / "log") as server:
        with open_ready(server, "/solo"):
            assert refusal(server, "/solo").status_code == 503
        # The place is given back once the connection is done and the view
        # has returned (just after `done`: no event says when).
        assert done_events[0].wait(T)
        deadline = time.monotonic() + T
        while limits.limits_for(app).open_count("solo"):
            assert time.monotonic() < deadline, "the place was not given back"
            time.sleep(0.005)
        with open_ready(server, "/solo"):
            pass
        assert done_events[1].wait(T)


def test_the_place_is_given_back_when_the_server_has_no_socket_to_take() -> None:
    app = Flask(__name__)
    sockets.Sockets(app)

    @app.route("/solo")
    @sockets.messages(max_connections=1)
    def solo(sender: Any) -> None:
        sender.put("never")

    upgrade = {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13",
    }
    http = app.test_client()  # a WSGI environ without the client's socket
    assert [http.get("/solo", headers=upgrade).status_code for _ in range(2)] == [500, 500]
    assert limits.limits_for(app).open_count() == 0


def test_test_client_sees_the_refusal_with_its_body() -> None:
    app = create_app(max_total=0)
    client = WebSocketTestClient(app)
    with pytest.raises(HandshakeRejected) as rejected:
        client.connect("/echo")
    assert rejected.value.status == 503
    assert rejected.value.headers["Retry-After"] == str(limits.RETRY_AFTER)
    assert rejected.value.body == "503 Service Unavailable: too many connections; try again later\n"


def test_invalid_max_total_connections_raises() -> None:
    with pytest.raises(ValueError, match="max_total_connections"):
        sockets.Sockets(max_total_connections=-1)
    app = Flask(__name__)
    app.config["SOCKETS_MAX_TOTAL_CONNECTIONS"] = "lots"
    with pytest.raises(ValueError, match="SOCKETS_MAX_TOTAL_CONNECTIONS"):
        sockets.Sockets(app)


def test_max_total_connections_argument_wins_over_config() -> None:
    app = Flask(__name__)
    app.config["SOCKETS_MAX_TOTAL_CONNECTIONS"] = 100
    sockets.Sockets(app, max_total_connections=7)
    assert limits.limits_for(app).max_total == 7
    other = Flask(__name__)
    other.config["SOCKETS_MAX_TOTAL_CONNECTIONS"] = 100
    sockets.Sockets(other)
    assert limits.limits_for(other).max_total == 100


# -- shutdown: close_all() in a signal handler --------------------------------


@contextlib.contextmanager
def failing_if_blocked(seconds: float) -> Iterator[None]:
    """Interrupt the main thread with an error if it is still inside the
    block after ``seconds``: a lock acquired in a signal handler that the
    interrupted code holds would otherwise hang the test for ever (a lock
    wait is interrupted by a signal whose handler raises)."""

    def blocked(signum: int, frame: Any) -> None:
        raise TimeoutError(f"still blocked after {seconds} s (deadlock in the signal handler?)")

    previous = signal.signal(signal.SIGUSR2, blocked)
    main = threading.main_thread().ident
    assert main is not None
    watchdog = threading.Timer(seconds, signal.pthread_kill, (main, signal.SIGUSR2))
    watchdog.start()
    try:
        yield
    finally:
        watchdog.cancel()
        watchdog.join(T)
        signal.signal(signal.SIGUSR2, previous)


def call_in_signal_handler(function: Callable[[], object], held: list[Any]) -> float:
    """Run ``function`` in a SIGUSR1 handler that interrupts this (the main)
    thread while it holds every lock in ``held``; return how long it took."""
    took: list[float] = []

    def handler(signum: int, frame: Any) -> None:
        started = time.monotonic()
        function()
        took.append(time.monotonic() - started)

    previous = signal.signal(signal.SIGUSR1, handler)
    try:
        with failing_if_blocked(T), contextlib.ExitStack() as locks:
            for lock in held:
                locks.enter_context(lock)
            signal.raise_signal(signal.SIGUSR1)  # the handler runs before this returns
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert len(took) == 1
    return took[0]


def _hub_member_app(hub_url: str | None = None) -> tuple[Flask, sockets.Sockets]:
    app = Flask(__name__)
    app.config["SOCKETS_HUB_URL"] = hub_url
    ext = sockets.Sockets(app)

    @app.route("/member")
    @sockets.messages()
    def member(receiver: Any, sender: Any) -> None:
        with ext.hub.join("room", sender):
            sender.put("ready")
            for _ in receiver:
                pass

    return app, ext


def test_close_all_in_a_signal_handler_takes_no_lock_the_interrupted_thread_may_hold(
    tmp_path: Path,
) -> None:
    app, ext = _hub_member_app()
    with serve_app(app, tmp_path / "log") as server, contextlib.ExitStack() as stack:
        clients = [stack.enter_context(open_ready(server, "/member")) for _ in range(3)]
        connection = next(iter(ext.connections))
        held = [
            ext._lock,  # the extension's
            ext._stats._lock,  # the registry's
            ext.hub._lock,  # the hub's
            connection.sender.mutex,  # a connection's channel
            # threading's own, held while any thread is being started (as
            # gunicorn's main thread starts its pool threads)
            threading._active_limbo_lock,  # type: ignore[attr-defined]
        ]
        took = call_in_signal_handler(ext.close_all, held)
        assert took < 1.0  # it waited for nothing (close_timeout is 5 s)
        for ws in clients:
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=T)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
        for connection in list(ext.connections):
            assert connection.wait_closed(T)
    # Started from a thread unknown to `threading`, the closing thread left
    # no dummy Thread behind, and it has ended.
    assert not [t.name for t in threading.enumerate() if t.name.startswith("Dummy")]
    deadline = time.monotonic() + T
    while [t for t in threading.enumerate() if t.name.endswith("close_all")]:
        assert time.monotonic() < deadline, "the close_all thread did not end"
        time.sleep(0.01)  # a thread offers no event for "ended" but join, and it is not ours


def test_close_all_in_a_signal_handler_does_not_wait_for_the_hub_listener(
    tmp_path: Path,
) -> None:
    with redis_server() as redis:
        app, ext = _hub_member_app(redis.url)
        with serve_app(app, tmp_path / "log") as server, open_ready(server, "/member") as ws:
            assert ext.hub.wait_ready(T)
            listener = next(t for t in threading.enumerate() if t.name.endswith(" hub"))
            alive_after: list[bool] = []

            def close_all_then_look() -> None:
                ext.close_all()
                alive_after.append(listener.is_alive())

            took = call_in_signal_handler(close_all_then_look, [])
            # The listener looks at its stop flag every 0.5 s: had the handler
            # stopped it, it would have waited for that, and found it ended.
            assert alive_after == [True]
            assert took < 1.0  # and it waited for nothing else (close_timeout is 5 s)
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=T)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
            listener.join(T)
            assert not listener.is_alive()


def test_close_all_rejects_an_unsendable_code_at_once() -> None:
    ext = sockets.Sockets()
    with pytest.raises(ValueError, match="1006"):
        ext.close_all(1006)
    with pytest.raises(ValueError, match="123 bytes"):
        ext.close_all(1001, "x" * 124)


# -- the thread budget under gunicorn gthread ---------------------------------


def crowd(
    server: Server, stack: contextlib.ExitStack, clients: int, open_timeout: float
) -> tuple[int, list[int], int]:
    """``clients`` connect to /crowd at once. The ones served stay open (in
    ``stack``). Returns how many were served, the statuses of the refused
    ones, and how many got no answer within ``open_timeout``."""
    start = threading.Barrier(clients)
    lock = threading.Lock()
    served: list[ClientConnection] = []
    statuses: list[int] = []
    unanswered: list[int] = []

    def attempt() -> None:
        start.wait(T)
        try:
            ws = connect(f"{server.ws}/crowd", open_timeout=open_timeout)
        except InvalidStatus as exc:
            with lock:
                statuses.append(exc.response.status_code)
            return
        except TimeoutError:
            with lock:
                unanswered.append(1)
            return
        with lock:
            served.append(stack.enter_context(ws))
        assert ws.recv(timeout=T) == "ready"

    threads = [threading.Thread(target=attempt) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(open_timeout + T)
    assert not [t for t in threads if t.is_alive()]
    return len(served), statuses, len(unanswered)


def http_answer_time(server: Server, limit: float) -> float | None:
    """How long a plain HTTP request took, or None if it got no answer
    within ``limit`` seconds."""
    started = time.monotonic()
    try:
        with urllib.request.urlopen(server.http + "/", timeout=limit) as response:
            assert response.status == 200
    except OSError:  # URLError, TimeoutError; socket.timeout on Python 3.9
        return None
    return time.monotonic() - started


def test_with_a_limit_plain_http_still_answers_while_sockets_fill_gunicorn(
    tmp_path: Path,
) -> None:
    env = {"FSC_CAP_MAX_TOTAL": "15"}
    app_spec = "tests.capacity_app:create_app()"
    with contextlib.ExitStack() as stack:  # the clients close before the server stops
        server = stack.enter_context(
            gunicorn_server(tmp_path / "log", threads=20, app_spec=app_spec, env=env)
        )
        served, refused, unanswered = crowd(server, stack, 30, open_timeout=T)
        assert (served, unanswered) == (15, 0)
        assert refused == [503] * 15
        took = http_answer_time(server, wait_time(1))
        assert took is not None, "plain HTTP got no answer within 1 s"


def test_without_a_limit_sockets_take_every_thread_and_http_starves_gunicorn(
    tmp_path: Path,
) -> None:
    """Why the limits exist: with --threads 20, 20 sockets hold every
    thread, and everything else waits in gthread's queue."""
    app_spec = "tests.capacity_app:create_app()"
    with contextlib.ExitStack() as stack:  # the clients close before the server stops
        server = stack.enter_context(
            gunicorn_server(tmp_path / "log", threads=20, app_spec=app_spec)
        )
        served, refused, unanswered = crowd(server, stack, 30, open_timeout=wait_time(2))
        assert (served, refused, unanswered) == (20, [], 10)
        assert http_answer_time(server, wait_time(1)) is None, "HTTP did not starve"


# -- the rate limit -------------------------------------------------------------


def test_rate_limit_slows_a_flood_and_drops_nothing(tmp_path: Path) -> None:
    count = 2000  # at (200 messages, 1 s): 200 at once, then 9 s for the rest
    with serve_app(create_app(), tmp_path / "log") as server, _connect(server, "/rate") as ws:
        started = time.monotonic()

        def flood() -> None:
            for index in range(count):
                ws.send(str(index))

        sender = threading.Thread(target=flood)
        sender.start()
        try:
            # The reader may hand over what one read brought in at once, after
            # waiting for the rate to allow all of it: seconds between two
            # messages are fine, only the total counts.
            received = [ws.recv(timeout=wait_time(15)) for _ in range(count)]
        finally:
            sender.join(wait_time(30))
        elapsed = time.monotonic() - started
    assert not sender.is_alive()
    assert received == [str(index) for index in range(count)]
    assert 9 <= elapsed < wait_time(30)


def test_a_rate_below_one_message_lets_one_through_every_interval(cap_server: Server) -> None:
    """(0.5, 1.0): one message every 2 s (the bucket holds one token)."""
    with _connect(cap_server, "/rate/below-one") as ws:
        started = time.monotonic()
        ws.send("first")
        ws.send("second")
        assert ws.recv(timeout=T) == "first"
        assert ws.recv(timeout=T) == "second"
        elapsed = time.monotonic() - started
    assert 1.5 <= elapsed < T


def test_a_reader_paused_for_the_rate_limit_reads_the_peers_close_reply_at_once(
    cap_server: Server,
) -> None:
    """The view returns while the reader waits a minute for the rate limit:
    the closing handshake still ends as soon as the peer answers, not after
    close_timeout (2 s in the capacity app)."""
    with RawClient(cap_server.port) as client:
        client.open("/rate/one-then-return")
        client.send(frame(TEXT, b"first") + frame(TEXT, b"second"))
        assert client.read_frame().text == "first"
        assert client.read_until_close()[-1].close_code == 1000
        client.send(close_frame(1000))
        answered = time.monotonic()
        assert client.read_rest() == b""  # TCP closed by the server
        took = time.monotonic() - answered
    assert took < 1.0  # close_timeout is 2 s
