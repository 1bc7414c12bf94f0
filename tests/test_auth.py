"""Access control with Flask's own tools, before the handshake: a
before_request hook, login_required (Flask-Login) and a decorator of our
own above the socket decorator, tokens in the query string and in
Sec-WebSocket-Protocol. A refusal is a real HTTP response, body included."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask
from websockets.exceptions import InvalidStatus

from flask_sockets_channels.testing import HandshakeRejected, WebSocketTestClient
from tests.auth_app import create_app
from tests.client import connect
from tests.conftest import Server, gunicorn_server, serve_app, wait_time

T = wait_time(5)


@pytest.fixture
def app() -> Flask:
    return create_app()


@pytest.fixture
def client(app: Flask) -> WebSocketTestClient:
    return WebSocketTestClient(app)


def session_cookie(app: Flask, user: str) -> dict[str, str]:
    """The Cookie header of a browser that logged in as ``user``."""
    http = app.test_client()
    assert http.post(f"/login/{user}").status_code == 200
    cookie = http.get_cookie("session")
    assert cookie is not None
    return {"Cookie": f"session={cookie.value}"}


def rejection(client: WebSocketTestClient, path: str, **kwargs: object) -> HandshakeRejected:
    with pytest.raises(HandshakeRejected) as rejected:
        client.connect(path, **kwargs)  # type: ignore[arg-type]
    return rejected.value


def test_before_request_abort_401_refuses_the_handshake_with_its_body(
    client: WebSocketTestClient,
) -> None:
    refused = rejection(client, "/members/lobby")
    assert refused.status == 401
    assert "members only" in refused.body


def test_before_request_sees_the_session_and_g_reaches_the_view(
    app: Flask, client: WebSocketTestClient
) -> None:
    with client.connect("/members/lobby", headers=session_cookie(app, "alice")) as ws:
        assert ws.receive() == "hello alice"


def test_login_required_above_the_socket_decorator_answers_401(
    client: WebSocketTestClient,
) -> None:
    refused = rejection(client, "/me")
    assert refused.status == 401
    assert refused.body == "log in first\n"


def test_current_user_of_the_session_cookie_in_the_view(
    app: Flask, client: WebSocketTestClient
) -> None:
    with client.connect("/me", headers=session_cookie(app, "alice")) as ws:
        assert ws.receive() == "alice None"


def test_token_in_the_query_string(client: WebSocketTestClient) -> None:
    with client.connect("/me", query_string={"token": "s3cret"}) as ws:
        assert ws.receive() == "alice None"
    assert rejection(client, "/me", query_string={"token": "wrong"}).status == 401


def test_token_in_sec_websocket_protocol_and_a_real_subprotocol_echoed(
    client: WebSocketTestClient,
) -> None:
    # A browser: new WebSocket(url, ["chat", "bearer." + token]). The server
    # must answer with one of the offered subprotocols, or the browser
    # fails the connection: it picks "chat", never the token.
    with client.connect("/me", subprotocols=["chat", "bearer.t0ken"]) as ws:
        assert ws.subprotocol == "chat"
        assert ws.receive() == "bob chat"
    refused = rejection(client, "/me", subprotocols=["chat", "bearer.wrong"])
    assert (refused.status, refused.body) == (401, "log in first\n")


def test_a_decorator_of_our_own_above_the_socket_decorator(client: WebSocketTestClient) -> None:
    with client.connect("/feed", query_string={"token": "s3cret"}) as ws:
        assert ws.receive() == "feed of alice"
    refused = rejection(client, "/feed")
    assert refused.status == 401
    assert "a valid token is required" in refused.body


def test_nothing_of_the_view_runs_and_the_refusal_is_counted(
    app: Flask, client: WebSocketTestClient
) -> None:
    for path in ("/me", "/feed", "/members/lobby"):
        rejection(client, path)
    figures = app.extensions["sockets_channels"].stats()
    assert figures["opened"] == 0
    assert figures["rejected"] == {401: 3}


@pytest.fixture(scope="module", params=["werkzeug", "gunicorn"])
def auth_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    log_path = tmp_path_factory.mktemp("auth-" + request.param) / "server.log"
    if request.param == "werkzeug":
        server = serve_app(create_app(), log_path)
    else:
        server = gunicorn_server(log_path, app_spec="tests.auth_app:create_app()")
    with server as running:
        yield running


def test_a_real_client_gets_the_401_and_its_body(auth_server: Server) -> None:
    url = f"{auth_server.ws}/me"
    with pytest.raises(InvalidStatus) as refused, connect(url, open_timeout=T):
        pass
    assert refused.value.response.status_code == 401
    assert refused.value.response.body == b"log in first\n"


def test_a_real_client_authenticates_with_a_subprotocol_token(auth_server: Server) -> None:
    with connect(
        f"{auth_server.ws}/me",
        subprotocols=["chat", "bearer.s3cret"],  # type: ignore[list-item]
        open_timeout=T,
    ) as ws:
        assert ws.subprotocol == "chat"
        assert ws.recv(timeout=T) == "alice chat"
