"""Flask's ``TRUSTED_HOSTS`` refuses a handshake for another Host (400)
before the origin check: the defence against DNS rebinding of the default
``{{host}}`` origin rule, whose Host an attacker's page chooses."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from tests.conftest import Server, gunicorn_server, serve_app
from tests.server_app import trusted_hosts_app
from tests.wire import RawClient


@pytest.fixture(scope="module", params=["werkzeug", "gunicorn"])
def trusted(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("trusted") / "server.log"
    if request.param == "werkzeug":
        server = serve_app(trusted_hosts_app(), log)
    else:
        server = gunicorn_server(log, app_spec="tests.server_app:trusted_hosts_app()")
    with server as running:
        yield running


def test_a_handshake_for_an_untrusted_host_is_refused_before_the_origin_check(
    trusted: Server,
) -> None:
    # DNS rebinding: the attacker's name now points at us; its page's Origin
    # matches its Host, so the {{host}} rule alone would let it in.
    with RawClient(trusted.port) as client:
        status, _, body = client.handshake(
            "/echo",
            {"Host": "evil.example:8000", "Origin": "http://evil.example:8000"},
        )
    assert status == 400
    assert b"evil.example" in body


def test_a_handshake_for_a_trusted_host_is_served(trusted: Server) -> None:
    with RawClient(trusted.port) as client:
        client.open("/echo", {"Origin": f"http://127.0.0.1:{trusted.port}"})


def test_without_trusted_hosts_the_origin_rule_decides(server: Server) -> None:
    with contextlib.ExitStack() as stack:
        client = stack.enter_context(RawClient(server.port))
        status, _, _ = client.handshake(
            "/echo", {"Host": "evil.example:8000", "Origin": "http://evil.example:8000"}
        )
    assert status == 101
