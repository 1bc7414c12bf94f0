"""The opening handshake (SPEC §4), on both servers, over raw sockets."""

from __future__ import annotations

import pytest

from tests.client import connect
from tests.conftest import Server, wait_time
from tests.wire import TEXT, RawClient, frame


def test_post_is_405_naming_get(server: Server) -> None:
    with RawClient(server.port) as client:
        status, headers, _ = client.handshake("/echo", method="POST")
    assert status == 405
    assert "GET" in headers["allow"]


def test_head_is_405_with_allow_get(server: Server) -> None:
    with RawClient(server.port) as client:
        status, headers, _ = client.handshake("/echo", method="HEAD")
    assert status == 405
    assert headers["allow"] == "GET"


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({"Sec-WebSocket-Key": None}, b"Sec-WebSocket-Key"),
        ({"Sec-WebSocket-Key": "dG9vIHNob3J0"}, b"Sec-WebSocket-Key"),
        ({"Sec-WebSocket-Key": "not base64 at all!!!!!!!"}, b"Sec-WebSocket-Key"),
    ],
)
def test_bad_key_is_400_with_one_line_reason(
    server: Server, headers: dict[str, str], reason: bytes
) -> None:
    with RawClient(server.port) as client:
        status, fields, body = client.handshake("/echo", headers)
    assert status == 400
    assert reason in body
    assert body.count(b"\n") == 1
    assert fields["content-type"].startswith("text/plain")


def test_plain_get_to_socket_route_is_400_with_reason(server: Server) -> None:
    status, body = server.get("/echo")
    assert status == 400
    assert "WebSocket" in body
    assert body.count("\n") == 1


def test_upgrade_to_plain_route_is_400(server: Server) -> None:
    with RawClient(server.port) as client:
        status, _, body = client.handshake("/")
    assert status == 400
    assert b"does not accept WebSocket upgrades" in body


@pytest.mark.parametrize("version", ["8", "12", "", "14"])
def test_wrong_version_is_426_naming_13(server: Server, version: str) -> None:
    with RawClient(server.port) as client:
        status, headers, body = client.handshake("/echo", {"Sec-WebSocket-Version": version})
    assert status == 426
    assert headers["sec-websocket-version"] == "13"
    assert body.count(b"\n") == 1


def test_405_comes_before_400(server: Server) -> None:
    with RawClient(server.port) as client:
        status, _, _ = client.handshake("/echo", {"Sec-WebSocket-Key": None}, method="HEAD")
    assert status == 405


def test_400_comes_before_426(server: Server) -> None:
    with RawClient(server.port) as client:
        status, _, _ = client.handshake(
            "/echo", {"Sec-WebSocket-Key": None, "Sec-WebSocket-Version": "8"}
        )
    assert status == 400


def test_426_comes_before_403(server: Server) -> None:
    with RawClient(server.port) as client:
        status, _, _ = client.handshake(
            "/echo", {"Sec-WebSocket-Version": "8", "Origin": "http://evil.test"}
        )
    assert status == 426


@pytest.mark.parametrize(
    "origin",
    [
        "http://127a0b0c1:{port}",  # unescaped dots in the seed's regex
        "xhttp://127.0.0.1:{port}",  # unanchored start
        "http://127.0.0.1:{port}.evil.com",  # unanchored end
        "null",
        "http://evil.test",
        "ws://127.0.0.1:{port}",
    ],
)
def test_foreign_origin_is_403(server: Server, origin: str) -> None:
    origin = origin.format(port=server.port)
    with RawClient(server.port) as client:
        status, _, body = client.handshake("/echo", {"Origin": origin})
    assert status == 403
    assert origin.encode() in body
    assert repr(origin) in server.wait_log(f"Origin {origin!r} not allowed")


@pytest.mark.parametrize("origin", ["http://127.0.0.1:{port}", "HTTPS://127.0.0.1:{port}", None])
def test_own_origin_or_none_is_101(server: Server, origin: str | None) -> None:
    headers = {"Origin": origin.format(port=server.port)} if origin else {}
    with connect(f"{server.ws}/echo", additional_headers=headers, open_timeout=wait_time(5)) as ws:
        ws.send("hi")
        assert ws.recv(timeout=wait_time(5)) == "hi"


def test_origin_check_disabled_with_none(server: Server) -> None:
    with RawClient(server.port) as client:
        status, _, _ = client.handshake("/any-origin", {"Origin": "http://evil.test"})
    assert status == 101


@pytest.mark.parametrize(
    ("origin", "status"),
    [
        ("https://example.com", 101),
        ("https://chat.example.com", 101),
        ("https://example.com.evil.test", 403),
        ("http://example.com", 403),
    ],
)
def test_origin_pattern_list(server: Server, origin: str, status: int) -> None:
    with RawClient(server.port) as client:
        assert client.handshake("/origin-list", {"Origin": origin})[0] == status


@pytest.mark.parametrize(
    ("origin", "status"), [("https://a.trusted.test", 101), ("https://a.test", 403)]
)
def test_origin_callable(server: Server, origin: str, status: int) -> None:
    with RawClient(server.port) as client:
        assert client.handshake("/origin-callable", {"Origin": origin})[0] == status


@pytest.mark.parametrize(
    ("offered", "chosen"),
    [
        (["chat.v1", "chat.v2"], "chat.v1"),
        (["other", "chat.v2"], "chat.v2"),
        (["other"], None),
        (None, None),
    ],
)
def test_subprotocol_first_client_match_is_echoed(
    server: Server, offered: list[str] | None, chosen: str | None
) -> None:
    headers = {"Sec-WebSocket-Protocol": ", ".join(offered)} if offered else {}
    with RawClient(server.port) as client:
        status, fields, _ = client.handshake("/subprotocols", headers)
        assert status == 101
        assert fields.get("sec-websocket-protocol") == chosen
        assert client.read_frame().text == str(chosen)


def test_bytes_sent_with_the_handshake_are_delivered(server: Server) -> None:
    with RawClient(server.port) as client:
        status, _, _ = client.handshake("/echo", extra=frame(TEXT, b"early bird"))
        assert status == 101
        assert client.read_frame().text == "early bird"


def test_compression_not_accepted_by_default(server: Server) -> None:
    with RawClient(server.port) as client:
        status, fields, _ = client.handshake(
            "/echo", {"Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits"}
        )
    assert status == 101
    assert "sec-websocket-extensions" not in fields


def test_server_keeps_serving_after_refusals(server: Server) -> None:
    for headers in (
        {"Sec-WebSocket-Version": "7"},
        {"Origin": "http://evil.test"},
        {"Upgrade": None},
    ):
        with RawClient(server.port) as client:
            assert client.handshake("/echo", headers)[0] in (400, 403, 426)
    with connect(f"{server.ws}/echo", open_timeout=wait_time(5)) as ws:
        ws.send("still here")
        assert ws.recv(timeout=wait_time(5)) == "still here"
