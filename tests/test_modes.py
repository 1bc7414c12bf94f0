"""The four modes, keyword injection, URL variables and blueprints (SPEC §2)."""

from __future__ import annotations

import json
import uuid

import pytest
import websocket  # websocket-client

from tests.client import connect
from tests.conftest import Server, wait_time
from tests.wire import BINARY, TEXT, RawClient, frame

T = wait_time(5)


def test_text_mode_echoes_text(server: Server) -> None:
    with connect(f"{server.ws}/echo", open_timeout=T) as ws:
        for message in ["hello", "", "ünïcödé ✓", "x" * 60000]:
            ws.send(message)
            assert ws.recv(timeout=T) == message


def test_text_mode_turns_utf8_binary_into_text(server: Server) -> None:
    with connect(f"{server.ws}/echo", open_timeout=T) as ws:
        ws.send("é".encode())
        assert ws.recv(timeout=T) == "é"


def test_bytes_mode_echoes_binary_and_text_as_bytes(server: Server) -> None:
    with connect(f"{server.ws}/echo/bytes", open_timeout=T) as ws:
        ws.send(b"\x00\xff\x10")
        assert ws.recv(timeout=T) == b"\x00\xff\x10"
        ws.send("text")
        assert ws.recv(timeout=T) == b"text"


def test_mixed_mode_keeps_each_frame_type(server: Server) -> None:
    with RawClient(server.port) as client:
        client.open("/echo/mixed")
        client.send(frame(TEXT, b"a text") + frame(BINARY, b"\x01\x02"))
        first, second = client.read_frame(), client.read_frame()
    assert (first.opcode, first.payload) == (TEXT, b"a text")
    assert (second.opcode, second.payload) == (BINARY, b"\x01\x02")


def test_json_mode_round_trips_dicts(server: Server) -> None:
    with connect(f"{server.ws}/echo/json", open_timeout=T) as ws:
        ws.send(json.dumps({"a": [1, 2], "b": "é"}))
        assert json.loads(ws.recv(timeout=T)) == {"a": [1, 2], "b": "é"}


def test_json_mode_accepts_binary_frames(server: Server) -> None:
    with connect(f"{server.ws}/echo/json", open_timeout=T) as ws:
        ws.send(b'{"binary": true}')
        assert json.loads(ws.recv(timeout=T)) == {"binary": True}


def test_json_decode_error_goes_to_errors_and_connection_stays_open(server: Server) -> None:
    with connect(f"{server.ws}/echo/json", open_timeout=T) as ws:
        ws.send("not json {")
        ws.send("[1, 2]")  # valid JSON, but not an object for model=dict
        ws.send('{"after": 1}')
        assert json.loads(ws.recv(timeout=T)) == {"after": 1}
        errors = [json.loads(ws.recv(timeout=T)) for _ in range(2)]
    assert errors == [
        {"error": "DecodeError", "raw": "not json {"},
        {"error": "DecodeError", "raw": "[1, 2]"},
    ]


def test_json_mode_builds_dataclasses_and_validates_fields(server: Server) -> None:
    with connect(f"{server.ws}/echo/chat", open_timeout=T) as ws:
        ws.send(json.dumps({"user": "ann", "text": "hi"}))
        assert json.loads(ws.recv(timeout=T)) == {"user": "ANN", "text": "hi"}
        ws.send(json.dumps({"user": 5, "text": "wrong type"}))
        ws.send(json.dumps({"user": "bob"}))  # missing field
        ws.send(json.dumps({"user": "cid", "text": "ok"}))
        errors = [json.loads(ws.recv(timeout=T))["error"] for _ in range(2)]
        assert json.loads(ws.recv(timeout=T)) == {"user": "CID", "text": "ok"}
    assert errors == ["DecodeError", "DecodeError"]


def test_wrong_type_on_sender_raises_type_error_at_put(server: Server) -> None:
    with connect(f"{server.ws}/wrong-type-text", open_timeout=T) as ws:
        assert [ws.recv(timeout=T) for _ in range(3)] == ["TypeError"] * 3


def test_mixed_mode_rejects_non_bytes_non_str(server: Server) -> None:
    with connect(f"{server.ws}/wrong-type/mixed", open_timeout=T) as ws:
        assert ws.recv(timeout=T).startswith("TypeError: mixed_messages() sends str or bytes-like")


def test_url_variables_and_all_kwargs_with_var_keyword(server: Server) -> None:
    with connect(f"{server.ws}/kwargs/ann/42", open_timeout=T) as ws:
        reply = json.loads(ws.recv(timeout=T))
        ws.send("bye")
    assert reply == {
        "name": "ann",
        "number": 42,
        "kwargs": ["connection", "disconnect", "done", "errors", "receiver", "sender"],
    }


def test_view_naming_only_sender_gets_only_sender(server: Server) -> None:
    with connect(f"{server.ws}/only-sender", open_timeout=T) as ws:
        assert ws.recv(timeout=T) == "hello"


def test_blueprint_route_with_url_variable(server: Server) -> None:
    with connect(f"{server.ws}/bp/echo/pre", open_timeout=T) as ws:
        ws.send("x")
        assert ws.recv(timeout=T) == "pre:x"


def test_websocket_client_package_interoperates(server: Server) -> None:
    ws = websocket.create_connection(f"{server.ws}/echo/bytes", timeout=T)
    try:
        ws.send_binary(b"\x00abc")
        assert ws.recv() == b"\x00abc"
    finally:
        ws.close()


def test_same_url_serves_a_page_and_a_socket(server: Server) -> None:
    assert server.get("/page") == (200, "a page\n")
    with connect(f"{server.ws}/page", open_timeout=T) as ws:
        assert ws.recv(timeout=T) == "socket at /page"


@pytest.mark.parametrize("path", ["/probe/json"])
def test_json_decode_errors_carry_raw_text(server: Server, path: str) -> None:
    key = uuid.uuid4().hex
    with connect(f"{server.ws}{path}?id={key}", open_timeout=T) as ws:
        ws.send('{"user": "a", "text": "one"}')
        ws.send("{broken")
        ws.send('{"user": "a", "text": "two"}')
    entry = server.journal(key)
    assert entry["received"] == ["one", "two"]
    assert entry["errors"] == [{"type": "DecodeError", "code": None, "raw": "{broken"}]
