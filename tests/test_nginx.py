"""Behind nginx: the reverse-proxy configuration of docs/deploying.md, in
front of gunicorn gthread, passes messages and close codes through."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.client import connect
from tests.conftest import Server, free_port, gunicorn_server, require, wait_time

T = wait_time(5)

# The location block of docs/deploying.md; HOST is the Host header sent upstream.
LOCATION = """
        location / {
            proxy_pass http://127.0.0.1:%(upstream)d;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_set_header Host %(host)s;
            proxy_read_timeout 3600s;
        }
"""

CONFIG = """
daemon off;
pid %(dir)s/nginx.pid;
error_log %(dir)s/error.log info;
worker_processes 1;
%(user)s
events { worker_connections 256; }
http {
    access_log %(dir)s/access.log;
    client_body_temp_path %(dir)s/client_body;
    proxy_temp_path %(dir)s/proxy;
    fastcgi_temp_path %(dir)s/fastcgi;
    uwsgi_temp_path %(dir)s/uwsgi;
    scgi_temp_path %(dir)s/scgi;
    server {
        listen 127.0.0.1:%(port)d;
        %(location_host)s
    }
    server {
        listen 127.0.0.1:%(port_http_host)d;
        %(location_http_host)s
    }
}
"""


class Nginx:
    """A running nginx: ``port`` forwards ``Host: $host`` (the host name
    without the port), ``port_http_host`` forwards the client's Host header
    as it came (``$http_host``)."""

    def __init__(self, port: int, port_http_host: int) -> None:
        self.port = port
        self.port_http_host = port_http_host


@contextlib.contextmanager
def nginx(tmp_path: Path, upstream: int) -> Iterator[Nginx]:
    """nginx in the foreground on loopback in front of ``upstream``; stopped
    by PID at the end."""
    binary = nginx_binary()
    assert binary is not None
    running = Nginx(free_port(), free_port())
    config = CONFIG % {
        "dir": tmp_path,
        # As root, the worker would switch to "nobody", who cannot enter
        # pytest's private tmp_path; keep it root.
        "user": "user root;" if os.geteuid() == 0 else "",
        "port": running.port,
        "port_http_host": running.port_http_host,
        "location_host": LOCATION % {"upstream": upstream, "host": "$host"},
        "location_http_host": LOCATION % {"upstream": upstream, "host": "$http_host"},
    }
    path = tmp_path / "nginx.conf"
    path.write_text(config)
    command = [binary, "-p", str(tmp_path), "-c", str(path), "-e", str(tmp_path / "error.log")]
    check = subprocess.run([*command, "-t"], capture_output=True, text=True, timeout=T)
    assert check.returncode == 0, check.stderr
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + wait_time(10)
        for port in (running.port, running.port_http_host):
            while True:
                if process.poll() is not None:
                    log = (tmp_path / "error.log").read_text()
                    raise AssertionError(f"nginx exited with {process.returncode}:\n{log}")
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise AssertionError("nginx is not listening") from None
                    time.sleep(0.02)  # nginx gives no readiness signal
        yield running
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)  # fast shutdown of master and worker
            try:
                process.wait(wait_time(10))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def nginx_binary() -> str | None:
    """nginx on PATH, or where Debian puts it (/usr/sbin is not on every
    user's PATH)."""
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with gunicorn_server(tmp_path_factory.mktemp("nginx-upstream") / "server.log") as server:
        yield server


@pytest.fixture
def proxy(tmp_path: Path, upstream: Server) -> Iterator[Nginx]:
    require(nginx_binary() is not None, "nginx is not installed (apt-get install nginx)")
    with nginx(tmp_path, upstream.port) as running:
        yield running


def test_echo_through_nginx(proxy: Nginx) -> None:
    with connect(f"ws://127.0.0.1:{proxy.port}/echo", open_timeout=T) as ws:
        for message in ("hello", "é" * 1000, "x" * 60000):
            ws.send(message)
            assert ws.recv(timeout=T) == message


def test_server_close_code_and_reason_pass_through_nginx(proxy: Nginx) -> None:
    with connect(f"ws://127.0.0.1:{proxy.port}/close/4002", open_timeout=T) as ws:
        ws.send("close now")
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=T)
    received = closed.value.rcvd
    assert received is not None
    assert (received.code, received.reason) == (4002, "closing on purpose")


def test_browser_origin_needs_the_port_in_the_forwarded_host(proxy: Nginx) -> None:
    """A browser sends ``Origin: http://host:port``; the default
    ``allowed_origin`` compares it with the Host the app sees. ``$host``
    drops the port (403 on a non-default port); ``$http_host`` keeps it."""
    origin = {"origin": f"http://127.0.0.1:{proxy.port}"}
    with pytest.raises(InvalidStatus) as refused:
        connect(f"ws://127.0.0.1:{proxy.port}/echo", open_timeout=T, **origin).close()
    assert refused.value.response.status_code == 403

    origin = {"origin": f"http://127.0.0.1:{proxy.port_http_host}"}
    with connect(f"ws://127.0.0.1:{proxy.port_http_host}/echo", open_timeout=T, **origin) as ws:
        ws.send("from a browser page")
        assert ws.recv(timeout=T) == "from a browser page"
