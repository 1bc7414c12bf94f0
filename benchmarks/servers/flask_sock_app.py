"""flask-sock 0.7 (simple-websocket) under load: the peer app of benchmarks/run.py.

werkzeug: ``python benchmarks/servers/flask_sock_app.py PORT``
gunicorn: ``gunicorn -k gthread --threads 1100 --pythonpath benchmarks/servers flask_sock_app:app``

The same endpoints as ours_app.py. flask-sock always accepts
permessage-deflate when the client offers it, so ``/echo/deflate`` is the
same view as ``/echo``; the load client offers it only in the deflate
scenario. The fan-out is the hand-written broadcast a flask-sock user writes:
a set of ``ws`` objects, and a loop of ``ws.send`` in the publisher's thread.

Settings that match ours: no keepalive pings, an inbound limit above 1 MiB,
TCP_NODELAY (simple-websocket leaves Nagle on; set in each view), and a
64 KiB receive buffer (simple-websocket's default is 4 KiB; ours reads
64 KiB: ``FLASK_SOCK_RECEIVE_BYTES`` overrides it).
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading

from flask import Flask
from flask_sock import ConnectionClosed, Sock

MAX_MESSAGE_SIZE = 4 << 20

app = Flask(__name__)

if "BENCH_SWITCH_INTERVAL" in os.environ:  # benchmarks/hold.py --switch-interval
    sys.setswitchinterval(float(os.environ["BENCH_SWITCH_INTERVAL"]))
app.config["SOCK_SERVER_OPTIONS"] = {
    # BENCH_PING_PERIOD: pings on, as in ours_app.py (benchmarks/soak.py)
    "ping_interval": float(os.environ["BENCH_PING_PERIOD"])
    if "BENCH_PING_PERIOD" in os.environ
    else None,
    "max_message_size": MAX_MESSAGE_SIZE,
    "receive_bytes": int(os.environ.get("FLASK_SOCK_RECEIVE_BYTES", 1 << 16)),
}
sock = Sock(app)

members: set = set()  # type: ignore[type-arg]
members_lock = threading.Lock()


def nodelay(ws) -> None:  # type: ignore[no-untyped-def]
    with contextlib.suppress(OSError):
        ws.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


@app.route("/")
def index() -> str:
    return "flask-sock\n"


def echo(ws) -> None:  # type: ignore[no-untyped-def]
    nodelay(ws)
    while True:
        ws.send(ws.receive())


# (Sock.route's decorator returns None: register the one function twice.)
sock.route("/echo")(echo)
sock.route("/echo/deflate", endpoint="echo_deflate")(echo)


@sock.route("/fanout/sub")
def fanout_sub(ws) -> None:  # type: ignore[no-untyped-def]
    nodelay(ws)
    with members_lock:
        members.add(ws)
    try:
        while True:
            ws.receive()
    finally:
        with members_lock:
            members.discard(ws)


@sock.route("/fanout/pub")
def fanout_pub(ws) -> None:  # type: ignore[no-untyped-def]
    nodelay(ws)
    while True:
        message = ws.receive()
        with members_lock:
            targets = list(members)
        for target in targets:
            try:
                target.send(message)
            except ConnectionClosed:
                with members_lock:
                    members.discard(target)


if __name__ == "__main__":
    app.run("127.0.0.1", int(sys.argv[1]), threaded=True)
