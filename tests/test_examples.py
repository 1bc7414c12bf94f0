"""The examples work as their docstrings say.

Each endpoint is tested in process with ``WebSocketTestClient``; then each
example is started once with the command its docstring documents, as a
subprocess on a free port, and spoken to over the network. The Python code
blocks of docs/ are checked too: they must at least compile.
"""

from __future__ import annotations

import ast
import contextlib
import inspect
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from websockets.exceptions import ConnectionClosed

# The fixture under test (see tests/test_testing.py for why it is imported).
from flask_sockets_channels.pytest_plugin import ws_client  # noqa: F401
from flask_sockets_channels.testing import WebSocketTestClient
from tests.client import connect
from tests.conftest import ROOT, free_port, wait_time

T = wait_time(5)


# -- in process -------------------------------------------------------------


@pytest.fixture
def echo_client() -> WebSocketTestClient:
    from examples.echo.app import app

    return WebSocketTestClient(app, timeout=T)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/echo", "héllo"),
        ("/echo/bytes", b"\x00\xffbytes"),
        ("/echo/mixed", "text stays text"),
        ("/echo/mixed", b"bytes stay bytes"),
    ],
)
def test_echo_example_echoes_in_each_mode(
    echo_client: WebSocketTestClient, path: str, message: str | bytes
) -> None:
    with echo_client.connect(path) as ws:
        ws.send(message)
        assert ws.receive() == message
    assert ws.close_code == 1000


def test_echo_example_bytes_mode_answers_a_text_frame_with_its_utf8_bytes(
    echo_client: WebSocketTestClient,
) -> None:
    with echo_client.connect("/echo/bytes") as ws:
        ws.send("é")
        assert ws.receive() == "é".encode()


def test_echo_example_json_mode_echoes_objects(echo_client: WebSocketTestClient) -> None:
    with echo_client.connect("/echo/json") as ws:
        ws.send_json({"a": [1, 2.5, None, True], "b": "é"})
        assert ws.receive_json() == {"a": [1, 2.5, None, True], "b": "é"}


def test_echo_example_json_mode_drops_what_is_not_an_object(
    echo_client: WebSocketTestClient,
) -> None:
    with echo_client.connect("/echo/json") as ws:
        ws.send("not json")
        ws.send_json([1, 2])  # json_messages(dict) takes objects only
        ws.send_json({"next": "one"})
        assert ws.receive_json() == {"next": "one"}


@pytest.fixture
def ticker_client() -> WebSocketTestClient:
    from examples.ticker.app import app

    return WebSocketTestClient(app, timeout=T)


def test_ticker_example_ticks_until_the_client_closes(
    ticker_client: WebSocketTestClient,
) -> None:
    with ticker_client.connect("/ticker?period=10") as ws:
        assert [ws.receive() for _ in range(3)] == ["tick 1", "tick 2", "tick 3"]
    # Leaving the block joined the view's thread: the view returned.
    assert ws.close_code == 1000


def test_ticker_example_takes_a_new_period_and_done_cuts_its_sleep(
    ticker_client: WebSocketTestClient,
) -> None:
    with ticker_client.connect("/ticker?period=10") as ws:
        assert ws.receive() == "tick 1"
        ws.send("600000")  # ten minutes
        with pytest.raises(TimeoutError):
            for _ in range(10000):  # the ticks sent before the view read it
                ws.receive(timeout=wait_time(0.5))
    # The view was in a ten-minute done.wait(); leaving the block joined its
    # thread within T seconds, so closing woke it.
    assert ws.close_code == 1000


def test_ticker_example_ignores_a_period_that_is_not_a_number(
    ticker_client: WebSocketTestClient,
) -> None:
    with ticker_client.connect("/ticker?period=soon") as ws:
        ws.send("later")
        assert ws.receive() == "tick 1"


@pytest.fixture
def app() -> Flask:
    """The blueprint_factory app, for the ``ws_client`` fixture."""
    from examples.blueprint_factory import create_app

    return create_app({"TESTING": True})


def test_blueprint_factory_echo_prefixes_the_url_variable(
    ws_client: WebSocketTestClient,  # noqa: F811
) -> None:
    with ws_client.connect("/live/echo/ann") as ws:
        ws.send("hello")
        assert ws.receive() == "ann: hello"


def test_blueprint_factory_sum_answers_and_drops_invalid_messages(
    ws_client: WebSocketTestClient,  # noqa: F811
) -> None:
    with ws_client.connect("/live/sum") as ws:
        ws.send_json({"numbers": [1, 2.5]})
        assert ws.receive_json() == {"sum": 3.5}
        for bad in ({"numbers": ["x"]}, {"numbers": 3}, {"total": [1]}, [1, 2]):
            ws.send_json(bad)  # each dropped, with a DecodeError on `errors`
        ws.send("not json")
        ws.send_json({"numbers": []})
        assert ws.receive_json() == {"sum": 0}


def test_blueprint_factory_status_counts_open_connections(
    app: Flask,
    ws_client: WebSocketTestClient,  # noqa: F811
) -> None:
    http = app.test_client()
    with ws_client.connect("/live/echo/a") as ws:
        ws.send("x")
        ws.receive()
        assert http.get("/live/status").json == {"open_connections": 1}
    assert http.get("/live/status").json == {"open_connections": 0}


def test_blueprint_factory_config_sets_app_wide_options(app: Flask) -> None:
    options = app.view_functions["live.echo"].__sockets_channels__.options_for(app)
    assert (options.ping_period, options.pong_wait) == (20.0, 30.0)
    sum_options = app.view_functions["live.add"].__sockets_channels__.options_for(app)
    assert sum_options.max_message_size == 4096


# -- each example once on a real server ----------------------------------------


@contextlib.contextmanager
def run_example(
    command: list[str], port: int, log: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``command`` from the repository root, wait until ``port``
    accepts connections, and stop it (SIGTERM, then SIGKILL) at the end."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("FLASK_")}
    environ.update(env or {})
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), environ.get("PYTHONPATH")]))
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, cwd=ROOT, env=environ, stdout=output, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + wait_time(20)
        while True:
            if process.poll() is not None:
                raise AssertionError(
                    f"{command} exited with {process.returncode}:\n{log.read_text()}"
                )
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"{command} not listening:\n{log.read_text()}") from None
                time.sleep(0.05)  # a starting server gives no other signal
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(wait_time(15))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


PYTHON = sys.executable


def test_echo_example_runs_with_python(tmp_path: Path) -> None:
    port = free_port()
    with run_example([PYTHON, "examples/echo/app.py", str(port)], port, tmp_path / "log"):
        for path in ("/echo", "/echo/mixed"):
            with connect(f"ws://127.0.0.1:{port}{path}", open_timeout=T) as ws:
                ws.send("over the network")
                assert ws.recv(timeout=T) == "over the network"


def test_ticker_example_runs_with_python(tmp_path: Path) -> None:
    port = free_port()
    command = [PYTHON, "-m", "examples.ticker.app", str(port)]
    url = f"ws://127.0.0.1:{port}/ticker?period=10"
    with run_example(command, port, tmp_path / "log"), connect(url, open_timeout=T) as ws:
        assert [ws.recv(timeout=T) for _ in range(2)] == ["tick 1", "tick 2"]


@pytest.mark.parametrize(
    "command",
    [
        ["-m", "flask", "--app", "examples.blueprint_factory:create_app", "run", "--port"],
        ["-m", "examples.blueprint_factory"],
    ],
    ids=["flask-run", "python-m"],
)
def test_blueprint_factory_example_runs_with_its_commands(
    tmp_path: Path, command: list[str]
) -> None:
    port = free_port()
    url, log = f"ws://127.0.0.1:{port}/live/echo/net", tmp_path / "log"
    with run_example([PYTHON, *command, str(port)], port, log), connect(url, open_timeout=T) as ws:
        ws.send("hi")
        assert ws.recv(timeout=T) == "net: hi"


def test_gunicorn_conf_closes_sockets_with_1001_on_sigterm(tmp_path: Path) -> None:
    """examples/gunicorn.conf.py's hook: SIGTERM closes the sockets at once,
    not after the graceful timeout (10 s there)."""
    port = free_port()
    command = [PYTHON, "-m", "gunicorn", "-c", "examples/gunicorn.conf.py", "examples.echo.app:app"]
    env = {"BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": "1", "GUNICORN_THREADS": "8"}
    with run_example(command, port, tmp_path / "log", env) as process:
        with connect(f"ws://127.0.0.1:{port}/echo", open_timeout=T) as ws:
            ws.send("before")
            assert ws.recv(timeout=T) == "before"
            started = time.monotonic()
            process.send_signal(signal.SIGTERM)
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=wait_time(8))
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
        assert time.monotonic() - started < wait_time(8)
        process.wait(wait_time(15))


# -- the docs -----------------------------------------------------------------

DOCS = sorted((ROOT / "docs").glob("*.md"))
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


@pytest.mark.parametrize("page", DOCS, ids=[page.name for page in DOCS])
def test_docs_python_blocks_compile(page: Path) -> None:
    for block in PYTHON_BLOCK.findall(page.read_text(encoding="utf-8")):
        ast.parse(block, filename=str(page))


def test_docs_quickstart_app_runs_as_written() -> None:
    """The first code block of quickstart.md is a whole app."""
    block = PYTHON_BLOCK.findall((ROOT / "docs" / "quickstart.md").read_text(encoding="utf-8"))[0]
    namespace: dict[str, object] = {"__name__": "quickstart"}
    exec(compile(block, "quickstart.md", "exec"), namespace)
    app = namespace["app"]
    assert isinstance(app, Flask)
    with WebSocketTestClient(app, timeout=T).connect("/echo") as ws:
        ws.send("hello")
        assert ws.receive() == "hello"


def test_docs_testing_examples_pass() -> None:
    """The self-contained tests of testing.md pass (those taking fixtures
    are in this module above)."""
    blocks = PYTHON_BLOCK.findall((ROOT / "docs" / "testing.md").read_text(encoding="utf-8"))
    ran = []
    for index, block in enumerate(blocks):
        namespace: dict[str, Any] = {"__name__": f"testing_md_{index}"}
        exec(compile(block, "testing.md", "exec"), namespace)
        for name, function in namespace.items():
            if name.startswith("test_") and not inspect.signature(function).parameters:
                function()
                ran.append(name)
    assert len(ran) >= 4, ran
