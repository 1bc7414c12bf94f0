"""WebSocketTestClient and the ws_client fixture (SPEC §8)."""

from __future__ import annotations

import base64
import hashlib
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Blueprint, Flask, Response, request

import flask_sockets_channels as sockets
from flask_sockets_channels import ConnectionClosed, ConnectionClosedError

# The fixture under test. Where the package is installed, pytest has also
# registered it through the pytest11 entry point; this module-level name then
# overrides that one for this module only (same function, nearer scope), so
# the import is harmless either way.
from flask_sockets_channels.pytest_plugin import ws_client  # noqa: F401
from flask_sockets_channels.testing import HandshakeRejected, WebSocketTestClient
from tests.conftest import wait_time

T = wait_time(5)
TIMERS_THREAD = "flask-sockets-channels timers"


def make_blueprint(websocket: bool) -> Blueprint:
    """Socket views on a blueprint; ``websocket`` marks their rules (needed
    without the extension)."""
    bp = Blueprint("ws", __name__)
    route: Any = {"websocket": True} if websocket else {}

    @bp.route("/echo", **route)
    @sockets.messages()
    def echo(receiver: sockets.Channel[str], sender: sockets.Channel[str]) -> None:
        for message in receiver:
            sender.put(message)

    @bp.route("/echo/bytes", **route)
    @sockets.byte_messages()
    def echo_bytes(receiver: sockets.Channel[bytes], sender: sockets.Channel[bytes]) -> None:
        for message in receiver:
            sender.put(message)

    @bp.route("/echo/json", **route)
    @sockets.json_messages(object)
    def echo_json(receiver: sockets.Channel[Any], sender: sockets.Channel[Any]) -> None:
        for message in receiver:
            sender.put(message)

    @bp.route("/echo/mixed", **route)
    @sockets.mixed_messages()
    def echo_mixed(receiver: sockets.Channel[Any], sender: sockets.Channel[Any]) -> None:
        for message in receiver:
            sender.put(message)

    @bp.route("/subprotocol", **route)
    @sockets.messages(subprotocols=("chat.v2", "chat.v1"))
    def subprotocol(sender: sockets.Channel[str], connection: sockets.Connection) -> None:
        sender.put(str(connection.subprotocol))

    @bp.route("/close/<int:code>", **route)
    @sockets.messages()
    def close(code: int, receiver: sockets.Channel[str], disconnect: sockets.Channel[Any]) -> None:
        disconnect.put((code, "bye"))
        for _ in receiver:
            pass

    @bp.route("/goodbye", **route)
    @sockets.messages()
    def goodbye(sender: sockets.Channel[str]) -> None:
        sender.put("goodbye")

    @bp.route("/raise", **route)
    @sockets.messages()
    def raises() -> None:
        raise RuntimeError("boom in the view")

    @bp.route("/request", **route)
    @sockets.json_messages(object)
    def request_info(sender: sockets.Channel[Any]) -> None:
        sender.put(
            {
                "args": request.args.to_dict(),
                "token": request.headers.get("X-Token"),
                "remote_addr": request.remote_addr,
            }
        )

    @bp.route("/record", **route)
    @sockets.messages()
    def record(receiver: sockets.Channel[str], connection: sockets.Connection) -> None:
        for _ in receiver:
            pass
        connection.wait_closed(T)
        bp_records.append((connection.close_code, connection.close_reason))

    @bp.route("/keepalive", **route)
    @sockets.messages(ping_period=0.01, pong_wait=wait_time(0.5))
    def keepalive(receiver: sockets.Channel[str], sender: sockets.Channel[str]) -> None:
        for message in receiver:
            sender.put(message)

    @bp.route("/abort", **route)
    @sockets.messages()
    def abort(connection: sockets.Connection) -> None:
        connection.abort()

    @bp.route("/stuck", **route)
    @sockets.messages()
    def stuck() -> None:
        release.wait(T)

    return bp


def raw_server_app(frames: bytes) -> Flask:
    """An app whose one route accepts the handshake by hand and writes
    ``frames`` after its 101, as a server that breaks the protocol would."""
    app = Flask(__name__)

    @app.route("/raw", websocket=True)
    def raw() -> Response:
        key = request.headers["Sec-WebSocket-Key"] + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
        accept = base64.b64encode(hashlib.sha1(key.encode()).digest())
        request.environ["werkzeug.socket"].sendall(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n" + frames
        )
        return Response(status=101)

    return app


bp_records: list[tuple[int | None, str]] = []
release = threading.Event()
extension = sockets.Sockets()


def create_app(use_extension: bool = True) -> Flask:
    """An app factory: the blueprint's plain rules become WebSocket rules
    through ``init_app``, or are declared ``websocket=True`` without it."""
    app = Flask(__name__)
    app.config["TESTING"] = True
    if use_extension:
        extension.init_app(app)
    app.register_blueprint(make_blueprint(websocket=not use_extension), url_prefix="/ws")
    return app


@pytest.fixture
def app() -> Flask:
    return create_app()


@pytest.fixture
def client(app: Flask) -> WebSocketTestClient:
    return WebSocketTestClient(app, timeout=T)


@pytest.fixture
def records() -> Iterator[list[tuple[int | None, str]]]:
    bp_records.clear()
    yield bp_records
    bp_records.clear()


# -- the four modes -----------------------------------------------------------


def test_text_mode_echoes_text(client: WebSocketTestClient) -> None:
    with client.connect("/ws/echo") as ws:
        for message in ["hello", "", "ünïcödé ✓", "x" * 60_000]:
            ws.send(message)
            assert ws.receive() == message


def test_bytes_mode_echoes_bytes(client: WebSocketTestClient) -> None:
    with client.connect("/ws/echo/bytes") as ws:
        ws.send(b"\x00\xff\x10")
        assert ws.receive() == b"\x00\xff\x10"


def test_json_mode_echoes_json(client: WebSocketTestClient) -> None:
    with client.connect("/ws/echo/json") as ws:
        ws.send_json({"a": [1, 2], "b": "é"})
        assert ws.receive_json() == {"a": [1, 2], "b": "é"}


def test_mixed_mode_keeps_each_frame_type(client: WebSocketTestClient) -> None:
    with client.connect("/ws/echo/mixed") as ws:
        ws.send("text")
        ws.send(bytearray(b"\x01\x02"))
        assert ws.receive() == "text"
        assert ws.receive() == b"\x01\x02"


def test_send_json_and_receive_json_go_as_text_frames(client: WebSocketTestClient) -> None:
    with client.connect("/ws/echo") as ws:
        ws.send_json([1, {"x": None}])
        assert ws.receive() == '[1, {"x": null}]'
        ws.send('{"y": true}')
        assert ws.receive_json() == {"y": True}


# -- handshake refusals -------------------------------------------------------


def test_foreign_origin_is_rejected_with_403(client: WebSocketTestClient) -> None:
    with pytest.raises(HandshakeRejected) as rejected:
        client.connect("/ws/echo", headers={"Origin": "http://evil.example"})
    assert rejected.value.status == 403
    assert "'http://evil.example' is not allowed" in rejected.value.body


def test_origin_of_the_host_is_accepted(client: WebSocketTestClient) -> None:
    with client.connect("/ws/echo", headers={"Origin": "http://localhost"}) as ws:
        ws.send("ok")
        assert ws.receive() == "ok"


def test_post_is_rejected_with_405(client: WebSocketTestClient) -> None:
    with pytest.raises(HandshakeRejected) as rejected:
        client.connect("/ws/echo", method="POST")
    assert rejected.value.status == 405
    assert "GET" in rejected.value.headers["Allow"]


def test_invalid_key_is_rejected_with_400(client: WebSocketTestClient) -> None:
    with pytest.raises(HandshakeRejected) as rejected:
        client.connect("/ws/echo", headers={"Sec-WebSocket-Key": "too short"})
    assert rejected.value.status == 400
    assert "Sec-WebSocket-Key" in rejected.value.body


def test_wrong_version_is_rejected_with_426(client: WebSocketTestClient) -> None:
    with pytest.raises(HandshakeRejected) as rejected:
        client.connect("/ws/echo", headers={"Sec-WebSocket-Version": "8"})
    assert rejected.value.status == 426
    assert rejected.value.headers["Sec-WebSocket-Version"] == "13"


def test_plain_rule_without_extension_is_rejected_with_400() -> None:
    app = Flask(__name__)

    @app.route("/echo")
    @sockets.messages()
    def echo(receiver: sockets.Channel[str], sender: sockets.Channel[str]) -> None:
        for message in receiver:  # pragma: no cover - never runs
            sender.put(message)

    with pytest.raises(HandshakeRejected) as rejected:
        WebSocketTestClient(app, timeout=T).connect("/echo")
    assert rejected.value.status == 400


def test_exception_propagated_by_flask_is_raised_in_the_test() -> None:
    app = Flask(__name__)
    app.config["TESTING"] = True

    @app.route("/broken", websocket=True)
    def broken() -> str:
        raise KeyError("not a socket view")

    with pytest.raises(KeyError, match="not a socket view"):
        WebSocketTestClient(app, timeout=T).connect("/broken")


# -- subprotocols, request data -----------------------------------------------


def test_first_offered_subprotocol_the_server_supports_is_chosen(
    client: WebSocketTestClient,
) -> None:
    with client.connect("/ws/subprotocol", subprotocols=["chat.v3", "chat.v1", "chat.v2"]) as ws:
        assert ws.subprotocol == "chat.v1"
        assert ws.receive() == "chat.v1"


def test_no_subprotocol_when_none_is_shared(client: WebSocketTestClient) -> None:
    with client.connect("/ws/subprotocol", subprotocols=["mqtt"]) as ws:
        assert ws.subprotocol is None
        assert ws.receive() == "None"


def test_headers_and_query_string_dict_reach_the_view(client: WebSocketTestClient) -> None:
    query = {"room": "a b", "n": "1"}
    with client.connect("/ws/request", headers={"X-Token": "t0k"}, query_string=query) as ws:
        assert ws.receive_json() == {"args": query, "token": "t0k", "remote_addr": "127.0.0.1"}


def test_query_string_str_and_in_path_reach_the_view(client: WebSocketTestClient) -> None:
    with client.connect("/ws/request", query_string="a=1&b=%C3%A9") as ws:
        assert ws.receive_json()["args"] == {"a": "1", "b": "é"}
    with client.connect("/ws/request?c=3") as ws:
        assert ws.receive_json()["args"] == {"c": "3"}


# -- closing --------------------------------------------------------------------


def test_server_close_code_and_reason_reach_receive(client: WebSocketTestClient) -> None:
    with client.connect("/ws/close/4001") as ws:
        with pytest.raises(ConnectionClosedError) as closed:
            ws.receive()
        assert (closed.value.code, closed.value.reason) == (4001, "bye")
        assert (ws.close_code, ws.close_reason) == (4001, "bye")


def test_view_return_closes_with_1000_after_its_messages(client: WebSocketTestClient) -> None:
    with client.connect("/ws/goodbye") as ws:
        assert ws.receive() == "goodbye"
        with pytest.raises(ConnectionClosed) as closed:
            ws.receive()
    assert type(closed.value) is ConnectionClosed
    assert closed.value.code == ws.close_code == 1000


def test_view_raising_closes_with_1011(
    client: WebSocketTestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="flask_sockets_channels")
    with client.connect("/ws/raise") as ws, pytest.raises(ConnectionClosedError) as closed:
        ws.receive()
    assert closed.value.code == 1011
    assert "view raised; closing with 1011" in caplog.text
    assert "boom in the view" in caplog.text


def test_send_after_server_closed_raises_connection_closed(client: WebSocketTestClient) -> None:
    with client.connect("/ws/close/4002") as ws:
        with pytest.raises(ConnectionClosedError):
            ws.receive()
        with pytest.raises(ConnectionClosedError) as closed:
            ws.send("too late")
    assert closed.value.code == 4002


def test_client_close_code_reaches_the_view_before_close_returns(
    client: WebSocketTestClient, records: list[tuple[int | None, str]]
) -> None:
    with client.connect("/ws/record") as ws:
        ws.close(4003, "client done")
        assert records == [(4003, "client done")]
        assert ws.close_code == 4003  # the server echoes the client's code
        with pytest.raises(ConnectionClosedError):
            ws.receive()
    # Leaving the block closes again: a no-op.


def test_send_after_client_close_raises_connection_closed(client: WebSocketTestClient) -> None:
    with client.connect("/ws/echo") as ws:
        ws.close()
        with pytest.raises(ConnectionClosed) as closed:
            ws.send("too late")
    assert closed.value.code == 1000


def test_connection_lost_without_close_frame_raises_1006(client: WebSocketTestClient) -> None:
    with client.connect("/ws/abort") as ws, pytest.raises(ConnectionClosedError) as closed:
        ws.receive()
    assert closed.value.code == ws.close_code == 1006


def test_receive_times_out_with_timeout_error(client: WebSocketTestClient) -> None:
    with client.connect("/ws/echo") as ws:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            ws.receive(timeout=0.05)
        assert time.monotonic() - started < T
        ws.send("still open")
        assert ws.receive() == "still open"


def test_server_pings_are_answered_while_receiving(client: WebSocketTestClient) -> None:
    # The server pings every 10 ms and closes with 1011 if no pong comes
    # within 0.5 s; a longer receive must see pings answered, not a close.
    with client.connect("/ws/keepalive") as ws:
        with pytest.raises(TimeoutError):
            ws.receive(timeout=wait_time(1))
        ws.send("alive")
        assert ws.receive() == "alive"


def test_send_rejects_other_types_with_type_error(client: WebSocketTestClient) -> None:
    with client.connect("/ws/echo") as ws, pytest.raises(TypeError):
        ws.send(42)  # type: ignore[arg-type]


def test_bad_accept_token_fails_the_handshake_with_1002() -> None:
    app = Flask(__name__)

    @app.route("/fake", websocket=True)
    def fake() -> Response:
        request.environ["werkzeug.socket"].sendall(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: d3Jvbmc=\r\n\r\n"
        )
        return Response(status=101)

    with pytest.raises(ConnectionClosedError, match="accept token") as closed:
        WebSocketTestClient(app, timeout=T).connect("/fake")
    assert closed.value.code == 1002


def test_101_without_upgrade_headers_fails_the_handshake_with_1002() -> None:
    app = Flask(__name__)

    @app.route("/fake", websocket=True)
    def fake() -> Response:
        request.environ["werkzeug.socket"].sendall(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
        return Response(status=101)

    missing = "bad 101 response: missing Connection header"
    with pytest.raises(ConnectionClosedError, match=missing) as closed:
        WebSocketTestClient(app, timeout=T).connect("/fake")
    assert closed.value.code == 1002


def test_101_status_without_a_response_on_the_socket_fails_with_1006() -> None:
    app = Flask(__name__)

    @app.route("/silent", websocket=True)
    def silent() -> Response:
        return Response(status=101)

    with pytest.raises(ConnectionClosedError, match="socket closed during the handshake") as closed:
        WebSocketTestClient(app, timeout=T).connect("/silent")
    assert closed.value.code == 1006


def test_handshake_request_headers_reach_the_view() -> None:
    app = Flask(__name__)

    @app.route("/headers", websocket=True)
    @sockets.json_messages(object, subprotocols=("chat",))
    def headers(sender: sockets.Channel[Any]) -> None:
        sender.put(dict(request.headers))

    with WebSocketTestClient(app, timeout=T).connect("/headers", subprotocols=["chat"]) as ws:
        received = ws.receive_json()
    assert received["Upgrade"] == "websocket"
    assert received["Connection"] == "Upgrade"
    assert received["Sec-Websocket-Version"] == "13"
    assert len(base64.b64decode(received["Sec-Websocket-Key"])) == 16
    assert received["Sec-Websocket-Protocol"] == "chat"
    assert received["Host"] == "localhost"


def test_message_in_fragments_is_received_whole() -> None:
    frames = b"\x01\x03abc\x00\x01d\x80\x02ef" + b"\x02\x01\x00\x80\x01\xff"
    with WebSocketTestClient(raw_server_app(frames), timeout=T).connect("/raw") as ws:
        assert ws.receive() == "abcdef"
        assert ws.receive() == b"\x00\xff"


def test_invalid_utf8_from_the_server_fails_with_1007() -> None:
    client = WebSocketTestClient(raw_server_app(b"\x81\x02\xff\xfe"), timeout=T)
    with client.connect("/raw") as ws, pytest.raises(ConnectionClosedError) as closed:
        ws.receive()
    assert closed.value.code == ws.close_code == 1007
    assert "invalid UTF-8" in closed.value.reason


def test_frame_that_breaks_the_protocol_fails_with_1002() -> None:
    reserved_opcode = b"\x83\x00"
    client = WebSocketTestClient(raw_server_app(reserved_opcode), timeout=T)
    with client.connect("/raw") as ws, pytest.raises(ConnectionClosedError) as closed:
        ws.receive()
    assert closed.value.code == ws.close_code == 1002


def test_close_with_a_code_that_cannot_be_sent_raises_value_error(
    client: WebSocketTestClient,
) -> None:
    with client.connect("/ws/echo") as ws:
        with pytest.raises(ValueError, match="1006"):
            ws.close(1006)
        ws.send("still open")
        assert ws.receive() == "still open"
    assert ws.close_code == 1000


def test_app_that_does_not_answer_the_handshake_times_out() -> None:
    app = create_app()
    gate = threading.Event()

    @app.before_request
    def hold() -> None:
        gate.wait(T)

    with pytest.raises(TimeoutError, match="did not answer the handshake"):
        WebSocketTestClient(app, timeout=wait_time(0.3)).connect("/ws/echo")
    gate.set()
    (request_thread,) = [
        t for t in threading.enumerate() if t.name == "websocket test request /ws/echo"
    ]
    request_thread.join(T)
    assert not request_thread.is_alive()


def test_view_that_does_not_return_fails_the_test_with_assertion_error() -> None:
    release.clear()
    client = WebSocketTestClient(create_app(), timeout=wait_time(0.5))
    with pytest.raises(AssertionError, match="did not end"), client.connect("/ws/stuck"):
        pass
    release.set()
    (request_thread,) = [
        t for t in threading.enumerate() if t.name == "websocket test request /ws/stuck"
    ]
    request_thread.join(T)
    assert not request_thread.is_alive()


# -- apps, blueprints, extension ------------------------------------------------


def test_websocket_rules_work_without_extension() -> None:
    client = WebSocketTestClient(create_app(use_extension=False), timeout=T)
    with client.connect("/ws/echo") as ws:
        ws.send("bare")
        assert ws.receive() == "bare"


def test_blueprint_registered_after_init_app_works_in_an_app_factory() -> None:
    def factory() -> Flask:
        app = Flask(__name__)
        ext = sockets.Sockets()
        ext.init_app(app)
        bp = Blueprint("late", __name__)

        @bp.route("/late")
        @sockets.messages()
        def late(receiver: sockets.Channel[str], sender: sockets.Channel[str]) -> None:
            for message in receiver:
                sender.put(message.upper())

        app.register_blueprint(bp, url_prefix="/bp")
        return app

    for _ in range(2):  # two apps from one factory, independent of each other
        with WebSocketTestClient(factory(), timeout=T).connect("/bp/late") as ws:
            ws.send("late")
            assert ws.receive() == "LATE"


def test_no_thread_left_after_the_with_block(client: WebSocketTestClient) -> None:
    before = set(threading.enumerate())
    with client.connect("/ws/echo") as ws:
        ws.send("x")
        assert ws.receive() == "x"
    left = [t for t in threading.enumerate() if t not in before]
    # The process-wide timer thread (keepalive) ends by itself once no connection
    # is registered; it is not a thread of the session.
    for thread in left:
        if thread.name == TIMERS_THREAD:
            thread.join(T)
    assert [t.name for t in left if t.is_alive()] == []


def test_ws_client_fixture_uses_the_app_fixture(ws_client: WebSocketTestClient, app: Flask) -> None:  # noqa: F811
    assert ws_client.app is app
    with ws_client.connect("/ws/echo") as ws:
        ws.send("from the fixture")
        assert ws.receive() == "from the fixture"


def test_timing_of_100_connections(
    client: WebSocketTestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    count = 100
    started = time.perf_counter()
    for _ in range(count):
        with client.connect("/ws/echo") as ws:
            ws.send("ping")
            assert ws.receive() == "ping"
    per_connection_ms = (time.perf_counter() - started) * 1000 / count
    with capsys.disabled():
        print(f"\nWebSocketTestClient: {per_connection_ms:.1f} ms per connection (target < 50)")
