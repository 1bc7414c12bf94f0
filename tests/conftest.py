"""Real servers on loopback: werkzeug in-process and gunicorn gthread.

Every server is started on an ephemeral port and stopped (and, for
gunicorn, waited for by PID) when its fixture ends. ``FSC_TIMEOUT_SCALE``
scales every wait; ``FSC_STRICT_SKIPS=1`` (set in CI) turns a skip for a
missing external program into a failure.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

from flask_sockets_channels.channels import Channel
from tests.server_app import create_app

ROOT = Path(__file__).resolve().parent.parent
SCALE = float(os.environ.get("FSC_TIMEOUT_SCALE", "1"))
STRICT = os.environ.get("FSC_STRICT_SKIPS") == "1"


def wait_time(seconds: float) -> float:
    """``seconds`` scaled for slow machines."""
    return seconds * SCALE


def require(condition: bool, reason: str) -> None:
    """Skip (or, in CI, fail) when an external component is missing."""
    if not condition:
        if STRICT:
            pytest.fail(f"required for CI: {reason}")
        pytest.skip(reason)


def die_with_parent() -> None:
    """In a child process: get SIGTERM if the test process dies, so that a
    killed test run leaves no server behind (Linux PR_SET_PDEATHSIG)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


class Server:
    """A running server: its base URLs, journal and log."""

    def __init__(self, kind: str, port: int, log_path: Path, address: str = "127.0.0.1") -> None:
        self.kind = kind
        self.port = port
        self.log_path = log_path
        self.address = address
        self.http = f"http://{address}:{port}"
        self.ws = f"ws://{address}:{port}"
        self.host = f"{address}:{port}"

    def get(self, path: str, timeout: float = 10) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.http + path, timeout=wait_time(timeout)) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def journal(self, key: str, timeout: float = 10) -> dict[str, Any]:
        """The entry a view recorded under ``key``; fails if none in time."""
        status, body = self.get(f"/_journal/{key}?timeout={wait_time(timeout)}", timeout + 5)
        assert status == 200, f"no journal entry {key!r} within {timeout} s"
        return json.loads(body)  # type: ignore[no-any-return]

    def threads(self) -> list[str]:
        return json.loads(self.get("/_threads")[1])  # type: ignore[no-any-return]

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def wait_log(self, text: str, timeout: float = 5) -> str:
        """Wait until ``text`` appears in the log; return the log."""
        deadline = time.monotonic() + wait_time(timeout)
        while text not in self.log():
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not logged; log:\n{self.log()[-3000:]}")
            time.sleep(0.02)  # polling a file: there is no event to wait on
        return self.log()


@contextlib.contextmanager
def werkzeug_server(
    log_path: Path, extension: bool = True, address: str = "127.0.0.1"
) -> Iterator[Server]:
    """The werkzeug development server, threaded, in this process."""
    os.environ["FSC_TEST_LOG"] = str(log_path)
    with serve_app(create_app(extension=extension), log_path, address) as server:
        yield server


@contextlib.contextmanager
def serve_app(app: Any, log_path: Path, address: str = "127.0.0.1") -> Iterator[Server]:
    """Any app on a threaded werkzeug server in this process."""
    server = make_server(address, 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="werkzeug-test-server")
    thread.start()
    try:
        yield Server("werkzeug", server.server_port, log_path, address)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(wait_time(10))


@contextlib.contextmanager
def gunicorn_server(
    log_path: Path,
    extension: bool = True,
    threads: int = 64,
    extra: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    app_spec: str = "tests.server_app:app_from_env()",
    ready_path: str = "/",
    port: int = 0,
    address: str = "127.0.0.1",
) -> Iterator[Server]:
    """gunicorn with one gthread worker, as a subprocess bound to a socket
    we opened on an ephemeral port (so no port race and no polling), or on
    ``port`` (a server that takes over from another)."""

    def command(fd: int) -> list[str]:
        return [
            sys.executable, "-m", "gunicorn",
            "-k", "gthread", "-w", "1", "--threads", str(threads),
            "--bind", f"fd://{fd}",
            "--graceful-timeout", "10",
            "--error-logfile", str(log_path.with_suffix(".gunicorn.log")),
            "--log-level", "debug",
            *extra,
            app_spec,
        ]  # fmt: skip

    with _server_process(
        "gunicorn", command, log_path, extension, env, ready_path, port, address
    ) as server:
        yield server


@contextlib.contextmanager
def werkzeug_process_server(
    log_path: Path, extension: bool = True, env: dict[str, str] | None = None
) -> Iterator[Server]:
    """The werkzeug development server as a process of its own."""

    def command(fd: int) -> list[str]:
        return [sys.executable, "-m", "tests.serve_werkzeug", str(fd)]

    with _server_process("werkzeug", command, log_path, extension, env, "/") as server:
        yield server


@contextlib.contextmanager
def _server_process(
    kind: str,
    command: Callable[[int], list[str]],
    log_path: Path,
    extension: bool,
    env: dict[str, str] | None,
    ready_path: str,
    port: int = 0,
    address: str = "127.0.0.1",
) -> Iterator[Server]:
    """Start ``command(fd)`` with a listening socket on a free loopback port
    (or ``port``) passed as ``fd``; stop it by its PID at the end."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((address, port))
    listener.listen(128)
    port = listener.getsockname()[1]
    env = dict(
        os.environ,
        FSC_TEST_LOG=str(log_path),
        FSC_TEST_EXTENSION="1" if extension else "0",
        **(env or {}),
    )
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    process = subprocess.Popen(
        command(listener.fileno()),
        env=env,
        pass_fds=(listener.fileno(),),
        cwd=ROOT,
        preexec_fn=die_with_parent,
    )
    listener.close()
    try:
        server = Server(kind, port, log_path, address)
        server.process = process  # type: ignore[attr-defined]
        status, _ = server.get(ready_path, timeout=30)
        assert status == 200
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(wait_time(20))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextlib.contextmanager
def capacity_server(
    kind: str, log_path: Path, max_total: int | None = None, metrics: bool = False
) -> Iterator[Server]:
    """tests/capacity_app.py on ``kind``: werkzeug in this process, or
    gunicorn (its settings passed as ``FSC_CAP_*`` variables)."""
    if kind == "werkzeug":
        from tests.capacity_app import create_app as create_capacity_app

        app = create_capacity_app(max_total=max_total, metrics=metrics, log_path=str(log_path))
        with serve_app(app, log_path) as running:
            yield running
        return
    env = {"FSC_CAP_METRICS": "1" if metrics else "0"}
    if max_total is not None:
        env["FSC_CAP_MAX_TOTAL"] = str(max_total)
    app_spec = "tests.capacity_app:create_app()"
    with gunicorn_server(log_path, app_spec=app_spec, env=env) as running:
        yield running


SERVERS = {"werkzeug": werkzeug_server, "gunicorn": gunicorn_server}
#: Servers in a process of their own (fresh figures: peak memory, objects).
PROCESS_SERVERS = {"werkzeug": werkzeug_process_server, "gunicorn": gunicorn_server}


def until(condition: Callable[[], bool], what: str, timeout: float, interval: float = 0.02) -> None:
    """Poll ``condition`` until it is true; AssertionError after ``timeout``.
    For states the server offers no event for (a socket parked, taken back)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        time.sleep(interval)


def free_port() -> int:
    """A port free now (for servers that cannot take a bound socket)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisExited(AssertionError):
    """A redis-server exited before it answered."""


class RedisServer:
    """A redis-server process on loopback, persistence off; or on
    ``address`` (and its loopback) with its command after ``prefix`` (in
    another network namespace: tests/netns.py)."""

    def __init__(self, port: int, address: str = "127.0.0.1", prefix: tuple[str, ...] = ()) -> None:
        self.port = port
        self.url = f"redis://{address}:{port}/0"
        self.bind = " ".join(dict.fromkeys([address, "127.0.0.1"]))
        self.prefix = prefix
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the server and wait until it answers PING; AssertionError
        if it exits first (as when its port was taken after it was found free)."""
        require(have("redis-server"), "redis-server is missing (apt-get install redis-server)")
        self.process = subprocess.Popen(
            [*self.prefix, "redis-server", "--port", str(self.port), "--bind", self.bind,
             "--save", "", "--appendonly", "no", "--protected-mode", "no",
             "--loglevel", "warning"],
            stdout=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
        )  # fmt: skip
        address = self.url.split("//")[1].rsplit(":", 1)[0]
        deadline = time.monotonic() + wait_time(10)
        while not _pings(address, self.port):
            if self.process.poll() is not None:
                raise RedisExited(f"redis-server on {self.port} exited")
            if time.monotonic() > deadline:
                raise AssertionError("redis-server did not start")
            time.sleep(0.02)  # redis-server offers no readiness signal but PING

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(wait_time(10))
        self.process = None


def _pings(address: str, port: int) -> bool:
    """A Redis answers PING at ``address``. A raw socket, so that a port
    another server took (which may never answer) costs one short timeout."""
    try:
        with socket.create_connection((address, port), timeout=1) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(7).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def redis_server() -> Iterator[RedisServer]:
    """A started redis-server on loopback, stopped on leaving. A port found
    free can be taken (by another test's connection) before the server
    binds it: then another is tried."""
    for attempt in range(5):
        server = RedisServer(free_port())
        try:
            server.start()
            break
        except RedisExited:
            server.stop()
            if attempt == 4:
                raise
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session", params=["werkzeug", "gunicorn"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """The test app on each server (started once per session)."""
    log_path = tmp_path_factory.mktemp(request.param) / "server.log"
    with SERVERS[request.param](log_path) as running:
        yield running


@pytest.fixture(scope="session", params=["werkzeug", "gunicorn"])
def bare_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """The test app without the Sockets extension (routes say websocket=True)."""
    log_path = tmp_path_factory.mktemp(request.param + "-bare") / "server.log"
    with SERVERS[request.param](log_path, extension=False) as running:
        yield running


@pytest.fixture(autouse=True)
def no_connection_threads_left() -> Iterator[None]:
    """Every connection a test opened in this process has ended its threads."""
    yield
    deadline = time.monotonic() + wait_time(10)
    while True:
        left = [t.name for t in threading.enumerate() if t.name.startswith("ws-")]
        if not left:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"connection threads left running: {left}")
        time.sleep(0.01)  # threads have no join-all; poll the list


def released(ext: Any, connection: Any, timeout: float) -> bool:
    """Whether ``connection`` is done and its view has returned (it has left
    the registry of the ``Sockets`` object ``ext``) within ``timeout``."""
    deadline = time.monotonic() + timeout
    if not connection.wait_closed(timeout):
        return False
    # The view returns just after `done`: no event says when.
    while connection in ext.connections:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def have(program: str) -> bool:
    return shutil.which(program) is not None


class Inbox(Channel[object]):
    """A hub member without a socket: what the hub offers lands here."""

    def offer(self, frame: object, max_backlog: int) -> bool:
        return self._put_past_limit((frame,), self.capacity + max_backlog)
