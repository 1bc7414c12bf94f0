"""The Sockets extension: routing, registry, app isolation; flask run."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from flask import Blueprint, Flask, url_for

import flask_sockets_channels as sockets
from tests.client import connect
from tests.conftest import ROOT, Server, released, serve_app, wait_time
from tests.wire import RawClient

T = wait_time(5)


def test_extension_is_stored_in_app_extensions() -> None:
    app = Flask(__name__)
    ext = sockets.Sockets()
    ext.init_app(app)
    assert app.extensions["sockets_channels"] is ext
    assert ext.connections == frozenset()


def test_websocket_true_works_without_extension(bare_server: Server) -> None:
    with connect(f"{bare_server.ws}/echo", open_timeout=T) as ws:
        ws.send("no extension")
        assert ws.recv(timeout=T) == "no extension"


def test_plain_rule_without_extension_is_400_with_a_log_line_naming_the_fix(
    bare_server: Server,
) -> None:
    with RawClient(bare_server.port) as client:
        status, _, _ = client.handshake("/misrouted")
    assert status == 400
    log = bare_server.wait_log("is on a plain (non-WebSocket) rule")
    assert "websocket=True" in log and "Sockets(app)" in log and "'misrouted'" in log


def test_plain_rule_with_extension_works(server: Server) -> None:
    with connect(f"{server.ws}/misrouted", open_timeout=T) as ws:
        assert ws.recv(timeout=T) == "routed"


def _app_with_routes_before_init(tmp_path: Path) -> tuple[Flask, sockets.Sockets]:
    app = Flask(__name__)

    @app.route("/before")
    @sockets.messages()
    def before(sender):  # type: ignore[no-untyped-def]
        sender.put("before init_app")

    ext = sockets.Sockets()
    ext.init_app(app)
    blueprint = Blueprint("late", __name__)

    @blueprint.route("/late")
    @sockets.messages()
    def late(sender):  # type: ignore[no-untyped-def]
        sender.put("blueprint after init_app")

    app.register_blueprint(blueprint)
    return app, ext


def test_rules_before_init_app_and_blueprints_after_are_websocket_rules(tmp_path: Path) -> None:
    app, _ = _app_with_routes_before_init(tmp_path)
    with serve_app(app, tmp_path / "log") as server:
        for path, expected in [
            ("/before", "before init_app"),
            ("/late", "blueprint after init_app"),
        ]:
            with connect(f"{server.ws}{path}", open_timeout=T) as ws:
                assert ws.recv(timeout=T) == expected


def test_extension_changes_only_its_own_app() -> None:
    with_ext, without_ext = Flask("with"), Flask("without")
    sockets.Sockets(with_ext)
    for app in (with_ext, without_ext):
        app.add_url_rule("/s", "s", sockets.messages()(lambda sender: None))
    assert [r.websocket for r in with_ext.url_map.iter_rules() if r.rule == "/s"] == [True]
    assert [r.websocket for r in without_ext.url_map.iter_rules() if r.rule == "/s"] == [False]
    assert Flask.url_rule_class is without_ext.url_rule_class


def test_registry_tracks_open_connections(tmp_path: Path) -> None:
    app, ext = _app_with_routes_before_init(tmp_path)

    @app.route("/hold")
    @sockets.messages()
    def hold(receiver, sender):  # type: ignore[no-untyped-def]
        sender.put("held")
        receiver.get()

    with serve_app(app, tmp_path / "log") as server:
        with connect(f"{server.ws}/hold", open_timeout=T) as ws:
            assert ws.recv(timeout=T) == "held"
            (connection,) = ext.connections
            assert connection.path == "/hold"
            assert connection.remote_addr == "127.0.0.1"
            ws.send("bye")
            assert released(ext, connection, T)
        assert ext.connections == frozenset()


def test_close_all_with_timeout_waits_for_every_connection(tmp_path: Path) -> None:
    app, ext = _app_with_routes_before_init(tmp_path)

    @app.route("/hold")
    @sockets.messages()
    def hold(receiver, sender):  # type: ignore[no-untyped-def]
        sender.put("held")
        for _ in receiver:
            pass

    with serve_app(app, tmp_path / "log") as server, connect(f"{server.ws}/hold") as ws:
        assert ws.recv(timeout=T) == "held"
        (connection,) = ext.connections
        assert ext.close_all(timeout=T) is True
        assert connection.done.is_set()
        assert released(ext, connection, T)  # its view returned just after


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    """Poll until the server accepts connections: it signals readiness no
    other way."""
    deadline = time.monotonic() + wait_time(20)
    while time.monotonic() < deadline and process.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("flask run did not start listening")


@pytest.mark.parametrize("debug", [False, True])
def test_flask_run_serves_websockets(tmp_path: Path, debug: bool) -> None:
    port = _free_port()
    debug_flag = ["--debug"] if debug else []
    command = [
        sys.executable, "-m", "flask", "--app", "examples/echo/app.py", *debug_flag,
        "run", "--port", str(port), "--no-reload",
    ]  # fmt: skip
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_listening(port, process)
        with connect(f"ws://127.0.0.1:{port}/echo", open_timeout=T) as ws:
            ws.send("via flask run")
            assert ws.recv(timeout=T) == "via flask run"
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=wait_time(10))
    assert b"Traceback" not in stderr


def test_the_extension_serves_the_browser_client_from_the_installed_package() -> None:
    app = Flask(__name__)
    sockets.Sockets(app)
    with app.test_request_context():
        script = url_for("sockets_channels.static", filename="client.js")
        module = url_for("sockets_channels.static", filename="client.mjs")
    assert script == "/_sockets_channels/client.js"
    client = app.test_client()
    expected = {script: b"FlaskSocketsChannels", module: b"export const { Socket, after }"}
    for url, text in expected.items():
        with client.get(url) as response:
            assert response.status_code == 200
            assert response.mimetype == "text/javascript"
            assert text in response.data
